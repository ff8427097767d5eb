import Foundation
import UnsegLinAlg
import UnsegProposals
import UnsegStore
import UnsegSynthetic

/// `unseg demo --task saliency`: object-centric synthetic images -> the Fiedler foreground, with
/// and without the guided filter -> saliency (Acc, IoU, max F-beta) and CorLoc.
public enum SaliencyDemo {
    public struct Row: Sendable {
        public var method: String
        public var result: ForegroundEvaluation.Report
    }

    public struct Summary: Sendable {
        public var rows: [Row]
        public var corloc: ForegroundEvaluation.Report
        public var files: [(String, String)]
        public var seconds: Double

        public func table() -> String {
            var s = "method                      Acc     IoU     max F-beta\n"
            s += "--------------------------  ------  ------  ----------\n"
            for r in rows {
                let x = r.result.saliency!
                s += r.method.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "  %6.1f  %6.1f  %10.1f\n", x.accuracy, x.iou, x.maxFBeta)
            }
            s += String(format: "CorLoc (Fiedler): %.1f (%d of %d images)\n", corloc.corloc, corloc.corlocCorrect, corloc.corlocImages)
            return s
        }
    }

    public static func run(workdir: String, images: Int = 60, seed: UInt64 = 0, threads: Int = Parallel.coreCount,
                           log: (String) -> Void = { _ in }) throws -> Summary {
        let start = Date()
        do { try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true) } catch {
            throw OutputPathError("--workdir \(workdir): cannot create the folder (\(AtomicDirectory.reason(error))); choose a writable path")
        }
        func path(_ n: String) -> String { workdir + "/" + n }
        let store = path("objects.h5")
        try Synthesize.writeObjectStore(config: ObjectSceneConfig(imageCount: images, seed: seed, split: "val"), path: store, threads: threads)
        log("synth: \(images) object-centric images -> \(store)")
        var rows: [Row] = []
        var files: [(String, String)] = [("object store", store)]
        var plain: String = ""
        for (name, refine, file) in [("Fiedler", RefinementMethod.none, "fiedler.h5"), ("Fiedler + guided filter", .guided, "fiedler-guided.h5")] {
            let out = path(file)
            _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(method: .fiedler, refine: refine, threads: threads))
            let r = try ForegroundEvaluation.run(task: .saliency, storePath: store, proposalsPath: out, threads: threads)
            log(String(format: "%@: IoU %.1f, max F-beta %.1f -> %@", name, r.saliency!.iou, r.saliency!.maxFBeta, out))
            rows.append(Row(method: name, result: r))
            files.append(("\(name) maps", out))
            if refine == .none { plain = out }
        }
        let c = try ForegroundEvaluation.run(task: .corloc, storePath: store, proposalsPath: plain, threads: threads)
        let rep = path("saliency-report")
        _ = try ForegroundEvaluation.write(rows[1].result, storePath: store, proposalsPath: path("fiedler-guided.h5"), json: nil, report: rep)
        files.append(("report (PR curve)", rep + "/report.md"))
        return Summary(rows: rows, corloc: c, files: files, seconds: Date().timeIntervalSince(start))
    }
}
