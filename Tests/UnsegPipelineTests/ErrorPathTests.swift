import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegPipeline
import UnsegStore
import UnsegTestSupport

/// Bad inputs to evaluation and to the label-map outputs: each gives an error that names
/// the file (and dataset) and says what is wrong.
@Suite struct ErrorPathTests {
    /// Writes a predictions-like file with h5py, as a user's script might, with `attrs` and `dtype`.
    func writeUserPredictions(_ path: String, like store: String, attrs: String, dtype: String = "np.uint8",
                              dataset: String = "predictions") throws {
        _ = try runPython("""
        import sys, h5py, numpy as np
        y = h5py.File(sys.argv[1], 'r')['labels'][()]
        with h5py.File(sys.argv[2], 'w') as f:
            f.attrs['format'] = 'unseg.predictions'
            \(attrs)
            f.create_dataset('\(dataset)', data=np.where(y == 255, 0, y).astype(\(dtype)))
        """, args: [store, path])
    }

    @Test func predictionsFileProblemsAreNamed() throws {
        let store = scratch("err-store.h5")
        try writeLabelledStore(store, classes: 5)
        let noCount = scratch("err-nocount.h5")
        try writeUserPredictions(noCount, like: store, attrs: "pass")
        let e1 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: noCount, classCount: 5) }
        #expect(e1?.description.contains("\(noCount): missing root attribute 'count'") == true, "\(String(describing: e1))")

        let badCount = scratch("err-badcount.h5")
        try writeUserPredictions(badCount, like: store, attrs: "f.attrs['count'] = 300")
        let e2 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: badCount, classCount: 5) }
        #expect(e2?.description.contains("attribute 'count' is 300") == true, "\(String(describing: e2))")

        let wrongType = scratch("err-dtype.h5")
        try writeUserPredictions(wrongType, like: store, attrs: "f.attrs['count'] = 5", dtype: "np.int32")
        let e3 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: wrongType, classCount: 5) }
        #expect(e3?.description.contains("\(wrongType):/predictions: is int32") == true, "\(String(describing: e3))")

        let noData = scratch("err-nodata.h5")
        try writeUserPredictions(noData, like: store, attrs: "f.attrs['count'] = 5", dataset: "other")
        let e4 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: noData, classCount: 5) }
        #expect(e4?.description.contains("\(noData):/predictions: missing") == true, "\(String(describing: e4))")
    }

    @Test func storeProblemsAreNamed() throws {
        // Labels are needed.
        let bare = scratch("err-nolabels.h5")
        let meta = StoreMetadata(backbone: "t", patchSize: 4, dataset: "d", split: "s", labelProtocol: "potsdam3")
        let w = try FeatureStoreWriter(path: bare, metadata: meta, count: 2, gridHeight: 2, gridWidth: 2, channels: 3,
                                       options: StoreWriteOptions(writeImages: false, writeLabels: false))
        for i in 0..<2 { try w.write(i, features: Matrix(rows: 4, cols: 3), image: nil, labels: nil, name: nil) }
        try w.commit()
        let e1 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: bare, predictionsPath: bare) }
        #expect(e1?.description.contains("\(bare):/labels: missing") == true, "\(String(describing: e1))")

        // A known protocol and a contradicting --classes.
        let store = scratch("err-proto.h5"), preds = scratch("err-proto-preds.h5")
        let labels = try writeLabelledStore(store, classes: 3, protocolName: "potsdam3")
        try writePredictions(preds, store: store, maps: labels, count: 3)
        let e2 = #expect(throws: StoreError.self) { _ = try EvaluateJob.run(storePath: store, predictionsPath: preds, classCount: 5) }
        #expect(e2?.description.contains("protocol 'potsdam3' has 3 classes but --classes says 5") == true, "\(String(describing: e2))")
        #expect(try EvaluateJob.run(storePath: store, predictionsPath: preds).result.miou == 100)
    }

    @Test func labelMapsWriterRejectsWrongSizesAndNames() throws {
        let store = scratch("err-w-store.h5"), out = scratch("err-w.h5")
        try writeLabelledStore(store, n: 2, size: 16)
        let w = try LabelMapsWriter.predictions(path: out, store: try FeatureStore(path: store), ids: .clusters, count: 5)
        let e1 = #expect(throws: StoreError.self) { try w.write("predictions", index: 0, [UInt8](repeating: 0, count: 10)) }
        #expect(e1?.description.contains("shape mismatch when writing: memory = [10], destination = [16, 16]") == true)
        let e2 = #expect(throws: StoreError.self) { try w.write("masks", index: 0, [UInt8](repeating: 0, count: 256)) }
        #expect(e2?.description.contains(":/masks: no such output dataset") == true)
        w.discard()
        #expect(!FileManager.default.fileExists(atPath: out), "discarded output leaves no file")
    }
}
