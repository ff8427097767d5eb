import Foundation
import UnsegLinAlg
import UnsegStore

func scratch(_ name: String) -> String {
    let d = NSTemporaryDirectory() + "unseg-pipeline-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d + "/" + name
}

/// A small labelled store: `n` images of `size`x`size` pixels, labels drawn from `classes` ids
/// in blocks (plus a band of ignore), random features. Returns the labels written.
@discardableResult
func writeLabelledStore(_ path: String, n: Int = 6, size: Int = 16, patch: Int = 4, classes: Int = 5,
                        protocolName: String? = nil, seed: UInt64 = 1) throws -> [[UInt8]] {
    let g = size / patch
    let meta = StoreMetadata(backbone: "test", patchSize: patch, dataset: "unit", split: "val", labelProtocol: protocolName)
    let w = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: g, gridWidth: g, channels: 8)
    var rng = SeededRandom(seed: seed)
    var all: [[UInt8]] = []
    for i in 0..<n {
        var lab = [UInt8](repeating: 0, count: size * size)
        for y in 0..<size { for x in 0..<size {
            lab[y * size + x] = y == 0 ? 255 : UInt8((x / 4 + y / 4 + i) % classes)
        } }
        all.append(lab)
        let f = Matrix(rows: g * g, cols: 8, data: (0..<(g * g * 8)).map { _ in rng.gaussian() })
        try w.write(i, features: f, image: [UInt8](repeating: 100, count: size * size * 3), labels: lab, name: "im\(i)")
    }
    try w.commit()
    return all
}

/// Writes a predictions file for `store` with `maps[i]` per image.
func writePredictions(_ path: String, store: String, maps: [[UInt8]], count: Int) throws {
    let s = try FeatureStore(path: store)
    let w = try LabelMapsWriter.predictions(path: path, store: s, ids: .clusters, count: count)
    for (i, m) in maps.enumerated() { try w.write("predictions", index: i, m) }
    try w.commit()
}
