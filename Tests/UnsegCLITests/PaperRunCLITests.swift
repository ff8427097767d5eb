import Foundation
import Testing

/// The pipeline `Tools/bench paper-run --quick` times (Sources/UnsegBench/PaperRun.swift), at its
/// size: a tenth of Cityscapes-27 (298 train + 50 val synthetic images, 40x40x384 float16,
/// 320x320) through the binary: propose --refine crf, fit with the paper recipe, test, predict,
/// export. On 1 and 2 threads every output must be the same bytes (the test table the same). Not
/// timed. The recipe is the paper's with PriMaPs-EM capped at 2 epochs (of 50) and the warm-up at
/// 1 (of 2), so that the test costs about 3 minutes of CI instead of 10; every stage still runs.
@Suite struct PaperRunCLITests {
    @Test func quickPaperRunGivesTheSameBytesOnOneAndTwoThreads() throws {
        let dir = scratchDir("paper-run")
        let train = dir + "/train.h5", val = dir + "/val.h5"
        for (path, n, split) in [(train, 298, "train"), (val, 50, "val")] {
            try? FileManager.default.removeItem(atPath: path)
            let r = try runUnseg(["synth", "--out", path, "--images", "\(n)", "--split", split, "--seed", "0"])
            try #require(r.status == 0, "\(r.stderr)")
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let paper = try String(contentsOf: root.appendingPathComponent("Recipes/cityscapes27-dino_vits8.yaml"), encoding: .utf8)
        let recipe = dir + "/recipe.yaml"
        let capped = paper.replacingOccurrences(of: "  epochs: 50\n", with: "  epochs: 2\n")
            .replacingOccurrences(of: "  epochs: 2             # cosine k-means warm-up", with: "  epochs: 1             # cosine k-means warm-up")
        try #require(capped != paper && capped.contains("epochs: 1 ") && capped.contains("proposals: primaps-crf"), "the paper recipe changed shape")
        try capped.write(toFile: recipe, atomically: true, encoding: .utf8)

        var tables: [String] = []
        for threads in [1, 2] {
            // The same output paths on both runs (files and tables name them), moved aside after.
            let out = dir + "/run", kept = dir + "/t\(threads)"
            try? FileManager.default.removeItem(atPath: out)
            try? FileManager.default.removeItem(atPath: kept)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let t = "\(threads)"
            let steps: [[String]] = [
                ["propose", "--store", train, "--out", out + "/props.h5", "--refine", "crf", "--threads", t],
                ["fit", "--recipe", recipe, "--store", train, "--proposals", out + "/props.h5", "--checkpoint", out + "/ck.h5", "--threads", t],
                ["test", "--checkpoint", out + "/ck.h5", "--store", val, "--json", out + "/test.json", "--threads", t],
                ["predict", "--checkpoint", out + "/ck.h5", "--store", train, "--out", out + "/pred.h5", "--threads", t],
                ["export", "--predictions", out + "/pred.h5", "--store", train, "--out", out + "/export", "--threads", t],
            ]
            for s in steps {
                let r = try runUnseg(s)
                try #require(r.status == 0, "unseg \(s.joined(separator: " ")): \(r.stderr)")
                if s[0] == "test" { tables.append(r.stdout) }
            }
            try FileManager.default.moveItem(atPath: out, toPath: kept)
        }
        for f in ["props.h5", "ck.h5", "test.json", "pred.h5", "export/manifest.json", "export/labels/\(try firstLabelPNG(dir + "/t1/export/labels"))"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/t1/" + f)), b = try Data(contentsOf: URL(fileURLWithPath: dir + "/t2/" + f))
            #expect(a == b, "\(f) differs between 1 and 2 threads")
        }
        #expect(tables.count == 2 && tables[0] == tables[1], "test tables differ:\n\(tables.joined(separator: "\n"))")
        #expect(tables[0].contains("momentum (theta_m) + CRF") && tables[0].contains("running (theta_r)"), "the four rows:\n\(tables[0])")
        // Every pseudo-label PNG is the same file too.
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/t1/export/labels").sorted()
        #expect(names.count == 298)
        for n in names {
            #expect(FileManager.default.contents(atPath: dir + "/t1/export/labels/" + n) == FileManager.default.contents(atPath: dir + "/t2/export/labels/" + n), "\(n)")
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    func firstLabelPNG(_ dir: String) throws -> String {
        try #require(try FileManager.default.contentsOfDirectory(atPath: dir).sorted().first)
    }
}
