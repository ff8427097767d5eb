import Foundation
import Testing
import UnsegEvaluation
import UnsegImaging
import UnsegLinAlg
@testable import UnsegPipeline
import UnsegStore

@Suite struct EvaluateJobTests {
    @Test func perfectPredictionUnderRelabellingScores100() throws {
        let store = scratch("eval-store.h5"), preds = scratch("eval-preds.h5")
        let labels = try writeLabelledStore(store, classes: 5)
        // Clusters are a permutation of classes; ignore pixels get an arbitrary cluster (not scored).
        let perm: [UInt8] = [3, 0, 4, 1, 2]
        try writePredictions(preds, store: store, maps: labels.map { $0.map { $0 == 255 ? 0 : perm[Int($0)] } }, count: 5)
        for threads in [1, 2] {
            let r = try EvaluateJob.run(storePath: store, predictionsPath: preds, classCount: 5, threads: threads)
            #expect(abs(r.result.miou - 100) < 1e-12 && abs(r.result.accuracy - 100) < 1e-12, "threads \(threads)")
            #expect(r.result.matching == [1, 3, 4, 0, 2])
            #expect(r.result.pixels == Int64(6 * 15 * 16), "ignore row left out")
        }
    }

    @Test func overClusteringCountsUnmatchedClustersAsErrors() throws {
        let store = scratch("over-store.h5"), preds = scratch("over-preds.h5")
        let labels = try writeLabelledStore(store, classes: 3)
        // Split class 0 into clusters 0 and 3 (alternate columns): cluster 3 stays unmatched.
        let maps = labels.map { lab in lab.enumerated().map { i, v -> UInt8 in v == 0 && i % 2 == 1 ? 3 : (v == 255 ? 0 : v) } }
        try writePredictions(preds, store: store, maps: maps, count: 4)
        let r = try EvaluateJob.run(storePath: store, predictionsPath: preds, classCount: 3, threads: 2)
        #expect(r.result.matching[3] == -1)
        #expect(r.result.accuracy < 100 && r.result.accuracy > 70, "\(r.result.accuracy)")
        let (m, cols) = EvaluationReportWriter.matchedConfusion(r)
        #expect(cols.last == "(unmatched)" && m[0][3] > 0 && m[1][3] == 0)
    }

    @Test func mismatchedFilesGiveClearErrors() throws {
        let store = scratch("mm-store.h5"), other = scratch("mm-other.h5")
        let labels = try writeLabelledStore(store, n: 6, size: 16)
        try writeLabelledStore(other, n: 4, size: 16)
        let fewer = scratch("mm-fewer.h5")
        try writePredictions(fewer, store: other, maps: Array(labels.prefix(4)), count: 5)
        let e1 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: fewer, classCount: 5) }
        #expect(e1?.description.contains("has 4 images but the store \(store) has 6") == true, "\(String(describing: e1))")
        let small = scratch("mm-small-store.h5"), smallPreds = scratch("mm-small.h5")
        let sl = try writeLabelledStore(small, n: 6, size: 8, patch: 4)
        try writePredictions(smallPreds, store: small, maps: sl, count: 5)
        let e2 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: smallPreds, classCount: 5) }
        #expect(e2?.description.contains("maps are 8x8 but the store \(store) needs 16x16") == true, "\(String(describing: e2))")
        let e3 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: store, classCount: 5) }
        #expect(e3?.description.contains("not 'unseg.predictions'") == true, "\(String(describing: e3))")
        let e4 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: fewer) }
        #expect(e4?.description.contains("--classes") == true, "no protocol: ask for the class count")
    }

    @Test func reportWritesMarkdownAndReadablePNGs() throws {
        let store = scratch("rep-store.h5"), preds = scratch("rep-preds.h5")
        let labels = try writeLabelledStore(store, classes: 27, protocolName: "cityscapes27")
        try writePredictions(preds, store: store, maps: labels.map { $0.map { $0 == 255 ? 0 : ($0 + 1) % 27 } }, count: 27)
        let r = try EvaluateJob.run(storePath: store, predictionsPath: preds, threads: 2)
        #expect(r.labelProtocol.name == "cityscapes27")
        let dir = scratch("report")
        let files = try EvaluationReportWriter.write(r, to: dir)
        #expect(files.count == 3)
        let md = try String(contentsOfFile: dir + "/report.md", encoding: .utf8)
        #expect(md.contains("| road |") && md.contains("mIoU") && md.contains("confusion.png"))
        let heat = try PNG.readRGB(dir + "/confusion.png")
        #expect(heat.width > 400 && heat.height > 400)
        let bars = try PNG.readRGB(dir + "/per_class_iou.png")
        #expect(bars.width > 200)
        let json = try JSONSerialization.jsonObject(with: r.result.jsonData()) as! [String: Any]
        for key in ["miou", "accuracy", "per_class_iou", "class_names", "matching", "pixels"] { #expect(json[key] != nil, "\(key)") }
    }
}

@Suite struct InspectTests {
    /// Long attribute names are printed whole and multi-line values stay on one line.
    @Test func longNamesAndMultilineValuesStayReadable() throws {
        let path = scratch("inspect-out.h5")
        let store = scratch("inspect-store.h5")
        try writeLabelledStore(store)
        let s = try FeatureStore(path: store)
        let w = try LabelMapsWriter.predictions(path: path, store: s, ids: .clusters, count: 5,
                                                attributes: [("crf_bilateral_compat", .double(4)), ("crf_bilateral_srgb", .double(3)),
                                                             ("recipe", .string("name: demo\nclasses: 27\nepochs: 8"))])
        for i in 0..<s.count { try w.write("predictions", index: i, try s.labels(i)) }
        try w.commit()
        let text = try Inspect.report(path: path)
        #expect(text.contains("crf_bilateral_compat 4.0") && text.contains("crf_bilateral_srgb   3.0"), "\(text)")
        #expect(text.contains("\"name: demo ... (3 lines)"), "\(text)")
        #expect(text.contains("kind: unseg.predictions"))
    }
}
