import Foundation
import UnsegEvaluation
import UnsegLinAlg
import UnsegPipeline
import UnsegStore

/// A plain pass over `n` bytes at each of two buffers (sum with wide accumulators): the
/// memory-bandwidth floor for anything that reads predictions and labels once.
func plainPass(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
    var acc = SIMD16<UInt32>()
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 16 <= n {
        acc &+= SIMD16<UInt32>(truncatingIfNeeded: ra.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
        acc &+= SIMD16<UInt32>(truncatingIfNeeded: rb.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
        i += 16
    }
    var s = UInt64(acc.wrappedSum())
    while i < n { s += UInt64(a[i]) + UInt64(b[i]); i += 1 }
    return s
}

func evaluateBench(quick: Bool) throws {
    let n = quick ? 100 : 500, side = 320, classes = 27
    let per = side * side
    var rng = SeededRandom(seed: 4)
    var labels = [UInt8](repeating: 0, count: n * per)
    var preds = [UInt8](repeating: 0, count: n * per)
    for i in 0..<(n * per) {
        let y = UInt8(rng.int(below: 28))
        labels[i] = y == 27 ? 255 : y
        preds[i] = rng.int(below: 4) == 0 ? UInt8(rng.int(below: classes)) : (y == 27 ? 0 : y)
    }
    let pixels = Double(n * per)
    let repeats = quick ? 3 : 7
    print("  \(n) images of \(side)x\(side), \(classes) classes; medians of \(repeats)")
    var sink: UInt64 = 0
    let tPlain = labels.withUnsafeBufferPointer { l in preds.withUnsafeBufferPointer { p in
        medianTime(repeats) { sink &+= plainPass(p.baseAddress!, l.baseAddress!, n * per) }
    } }
    print(String(format: "  plain pass over predictions + labels (1 thread): %.0f Mpx/s", pixels / tPlain / 1e6))
    for threads in [1, 2] {
        var result: EvaluationResult?
        let t = try medianTime(repeats) {
            let c = try ConfusionMatrix.accumulate(predictions: preds, labels: labels, imageCount: n, clusterCount: classes,
                                                   classCount: classes, threads: threads)
            result = try Evaluation.evaluate(c)
        }
        print(String(format: "  confusion + Hungarian, %d thread%@: %.0f Mpx/s (%.2f of the plain pass), mIoU %.2f",
                     threads, threads == 1 ? "" : "s", pixels / t / 1e6, tPlain / t, result?.miou ?? 0))
    }
    // End to end from files: labels in a store, predictions in a predictions file (both deflated).
    let dir = benchDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let store = dir + "/eval-store.h5", predPath = dir + "/eval-preds.h5"
    let meta = StoreMetadata(backbone: "bench", patchSize: 8, dataset: "bench", split: "val", labelProtocol: "cityscapes27")
    let w = try FeatureStoreWriter(path: store, metadata: meta, count: n, gridHeight: side / 8, gridWidth: side / 8, channels: 1,
                                   options: StoreWriteOptions(featureType: .float16, deflate: 4, writeImages: false, writeLabels: true))
    let emptyFeatures = Matrix(rows: (side / 8) * (side / 8), cols: 1)
    for i in 0..<n { try w.write(i, features: emptyFeatures, image: nil, labels: Array(labels[(i * per)..<((i + 1) * per)]), name: nil) }
    try w.commit()
    let s = try FeatureStore(path: store)
    let pw = try LabelMapsWriter.predictions(path: predPath, store: s, ids: .clusters, count: classes)
    for i in 0..<n { try pw.write("predictions", index: i, Array(preds[(i * per)..<((i + 1) * per)])) }
    try pw.commit()
    for threads in [1, 2] {
        let t = try medianTime(quick ? 2 : 3) {
            _ = try EvaluateJob.run(storePath: store, predictionsPath: predPath, threads: threads)
        }
        print(String(format: "  evaluate from files (deflated HDF5), %d thread%@: %.0f Mpx/s, %.0f images/s",
                     threads, threads == 1 ? "" : "s", pixels / t / 1e6, Double(n) / t))
    }
    if sink == 42 { print("") }
}
