import Foundation
import UnsegCore
import UnsegEvaluation
import UnsegImaging
import UnsegLinAlg
import UnsegStore

/// What `unseg evaluate` scores.
public enum EvaluationTask: String, Sendable, CaseIterable, Equatable {
    /// Hungarian-matched mIoU / accuracy of cluster or class ids (`--predictions` from `unseg predict`).
    case classes
    /// Saliency of soft foreground maps (`--predictions` a proposals file with `/foreground`, from
    /// `unseg propose --method fiedler`) against binary labels (1 foreground, 0 background, 255 ignore).
    case saliency
    /// CorLoc of the foreground maps against the store's `/boxes`.
    case corloc
}

/// Saliency or CorLoc of a proposals file's `/foreground` maps on a store (see `Saliency`, `CorLoc`
/// for the conventions). Images in parallel, reduced in image order.
public enum ForegroundEvaluation {
    public struct Report: Sendable {
        public var task: EvaluationTask
        /// Where the maps came from (unseg's proposals, a PNG folder, a plain HDF5 dataset).
        public var source: PredictionSource
        public var saliency: Saliency.Result?
        /// CorLoc: images with boxes, images whose predicted box hits one, the percentage.
        public var corlocImages: Int = 0
        public var corlocCorrect: Int = 0
        /// The first images with boxes (up to 8): predicted box, ground-truth boxes, hit or miss.
        public var corlocSamples: [(index: Int, predicted: CorLoc.Box?, truth: [CorLoc.Box], correct: Bool)] = []
        public var corloc: Double { corlocImages > 0 ? 100 * Double(corlocCorrect) / Double(corlocImages) : 0 }

        public func table() -> String {
            if let s = saliency {
                return String(format: "saliency of %d images (threshold 0.5 for Acc / IoU; beta^2 = 0.3):\n  Acc %.2f   IoU %.2f   max F-beta %.2f (foreground: value > %d)",
                              s.images, s.accuracy, s.iou, s.maxFBeta, s.bestThreshold)
            }
            return String(format: "CorLoc %.2f (%d of %d images with boxes; largest-box 8-connected component, IoU >= 0.5)",
                          corloc, corlocCorrect, corlocImages)
        }

        public func json() throws -> Data {
            var o: [String: Any] = ["task": task.rawValue, "predictions": source.json]
            if let s = saliency {
                o.merge(["images": s.images, "accuracy": s.accuracy, "iou": s.iou, "max_fbeta": s.maxFBeta,
                         "best_threshold": s.bestThreshold, "precision": s.precision, "recall": s.recall]) { $1 }
            } else {
                o.merge(["images": corlocImages, "correct": corlocCorrect, "corloc": corloc]) { $1 }
            }
            return try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        }
    }

    /// Scores the foreground maps of `proposalsPath`: a proposals file with `/foreground`, or
    /// (see `PredictionInputs`) a folder of grey PNGs or a plain HDF5 dataset (`foreign.dataset`).
    public static func run(task: EvaluationTask, storePath: String, proposalsPath: String,
                           foreign: ForeignMapsOptions = .init(), threads: Int = Parallel.coreCount) throws -> Report {
        precondition(task != .classes, "ForegroundEvaluation: task classes is EvaluateJob's")
        BLASPolicy.imagesInParallel.apply()
        let store = try FeatureStore(path: storePath)
        let props = try PredictionInputs.foreground(path: proposalsPath, store: store, task: task, options: foreign, threads: threads)
        let l = store.layout
        var report = Report(task: task, source: props.source)
        switch task {
        case .saliency:
            guard l.hasLabels else {
                throw StoreError(file: storePath, dataset: "/labels", "missing; --task saliency needs binary labels (1 foreground, 0 background, 255 ignore)")
            }
            // Chunks of 16 images on all threads (one map and label image at a time each: bounded
            // memory), merged in chunk order: the same sums in the same order for any thread count.
            let n = l.imageCount, per = 16, chunks = (n + per - 1) / per
            let parts = try Parallel.tryMap(chunks, threads: threads) { c -> Saliency.Accumulator in
                var acc = Saliency.Accumulator()
                for i in (c * per)..<min(n, (c + 1) * per) {
                    do { try acc.add(soft: try props.foreground(i), labels: try store.labels(i)) } catch let e as EvaluationError {
                        throw StoreError(file: storePath, dataset: "/labels", "image \(i): \(e)")
                    }
                }
                return acc
            }
            var acc = Saliency.Accumulator()
            for p in parts { acc.merge(p) }
            do { report.saliency = try acc.result() } catch { throw StoreError(file: storePath, dataset: "/labels", "\(error)") }
        case .corloc:
            let boxes = try store.boxList()
            guard !boxes.isEmpty else {
                throw StoreError(file: storePath, dataset: "/boxes", "missing or empty; --task corloc needs object boxes [M, 5] (image, x0, y0, x1, y1); write them with unseg-extract folder --boxes")
            }
            var byImage = [[CorLoc.Box]](repeating: [], count: l.imageCount)
            for b in boxes { byImage[b.image].append(CorLoc.Box(x0: Double(b.x0), y0: Double(b.y0), x1: Double(b.x1), y1: Double(b.y1))) }
            let withBoxes = (0..<l.imageCount).filter { !byImage[$0].isEmpty }
            let (H, W, truth) = (l.imageHeight, l.imageWidth, byImage)
            let found = try Parallel.tryMap(withBoxes.count, threads: threads) { j -> CorLoc.Box? in
                CorLoc.predictedBox(soft: try props.foreground(withBoxes[j]), height: H, width: W)
            }
            let hits = withBoxes.indices.map { CorLoc.isCorrect(predicted: found[$0], truth: truth[withBoxes[$0]]) }
            report.corlocImages = withBoxes.count
            report.corlocCorrect = hits.filter { $0 }.count
            report.corlocSamples = withBoxes.indices.prefix(8).map { (withBoxes[$0], found[$0], truth[withBoxes[$0]], hits[$0]) }
        case .classes:
            break
        }
        return report
    }

    /// JSON (`json`) and, for saliency, a folder (`report`) with `report.md` and the PR curve.
    public static func write(_ r: Report, storePath: String, proposalsPath: String, json: String?, report: String?) throws -> [String] {
        guard Distributed.isLead else { return [] }   // under mpirun every rank computes it whole; rank 0 writes
        try OutputGuard.check(outputs: json.map { [("--json", $0)] } ?? [], inputs: [("--store", storePath), ("--predictions", proposalsPath)],
                              folders: report.map { [("--report", $0)] } ?? [])
        var files: [String] = []
        if let j = json { try writeOutputFile(try r.json(), to: j, option: "--json"); files.append(j) }
        if let dir = report {
            let folder = try AtomicDirectory(path: dir, option: "--report")
            var md = "# Foreground evaluation\n\n- store: `\(storePath)`\n- foreground maps: `\(proposalsPath)`: \(r.source.detail)\n\n" + r.table() + "\n"
            if !r.corlocSamples.isEmpty {
                let store = try FeatureStore(path: storePath)
                let l = store.layout
                if l.hasImages {
                    md += "\nSamples: ground-truth boxes in green, the predicted box (largest component) in red, or orange when it misses.\n\n"
                    let stems = FileNames.stems(try store.names())
                    try FileManager.default.createDirectory(atPath: folder.path("samples"), withIntermediateDirectories: true)
                    for s in r.corlocSamples {
                        var boxes = s.truth.map { ($0.x0, $0.y0, $0.x1, $0.y1, RGB(40, 200, 60)) }
                        if let p = s.predicted { boxes.append((p.x0, p.y0, p.x1, p.y1, s.correct ? RGB(230, 30, 30) : RGB(255, 150, 0))) }
                        let img = Composite.boxes(on: RGBImage(width: l.imageWidth, height: l.imageHeight, pixels: try store.image(s.index)), boxes)
                        let name = "samples/\(stems[s.index]).png"
                        try PNG.write(img, to: folder.path(name))
                        md += "![\(stems[s.index]) \(s.correct ? "hit" : "miss")](\(name)) "
                    }
                    md += "\n"
                }
            }
            if let s = r.saliency {
                let pr = Charts.lineChart(series: [LineSeries(name: "precision vs recall", values: s.precision, x: s.recall)],
                                          title: String(format: "Precision-recall, max F-beta %.1f%%", s.maxFBeta),
                                          xLabel: "recall", yLabel: "precision")
                try PNG.write(pr, to: folder.path("precision_recall.png"))
                md += "\n![precision-recall](precision_recall.png)\n"
            }
            try Data(md.utf8).write(to: URL(fileURLWithPath: folder.path("report.md")))
            try folder.commit()
            files.append(dir + "/report.md")
        }
        return files
    }
}
