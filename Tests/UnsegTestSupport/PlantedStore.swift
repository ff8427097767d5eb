import Foundation
import UnsegLinAlg
import UnsegStore

/// A store with planted class structure: each image is a few axis-aligned rectangles of
/// classes on a background class; a cell's feature is its class's mean direction (seeded,
/// shared by all images of the same `structureSeed`) times a random norm plus Gaussian noise;
/// RGB images are the class colours. `grid` cells of `patch` pixels, `channels` channels.
@discardableResult
public func writePlantedStore(_ path: String, n: Int, grid: Int = 8, patch: Int = 4, channels: Int = 16, classes: Int = 4,
                       noise: Float = 0.6, seed: UInt64 = 1, structureSeed: UInt64 = 99, split: String = "train",
                       protocolName: String? = nil) throws -> [[UInt8]] {
    let size = grid * patch
    var srng = SeededRandom(seed: structureSeed)
    let means = (0..<classes).map { _ in (0..<channels).map { _ in srng.gaussian() } }
    let colors = (0..<classes).map { _ in (UInt8(srng.int(below: 256)), UInt8(srng.int(below: 256)), UInt8(srng.int(below: 256))) }
    let meta = StoreMetadata(backbone: "planted", patchSize: patch, dataset: "planted", split: split,
                             labelProtocol: protocolName ?? "generic\(classes)")
    let w = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: grid, gridWidth: grid, channels: channels,
                                   options: StoreWriteOptions(featureType: .float32))
    var rng = SeededRandom(seed: seed)
    var all: [[UInt8]] = []
    for i in 0..<n {
        var cellClass = [Int](repeating: rng.int(below: classes), count: grid * grid)
        for _ in 0..<3 {
            let c = rng.int(below: classes)
            let y0 = rng.int(below: grid), x0 = rng.int(below: grid)
            let hh = 2 + rng.int(below: grid / 2), ww = 2 + rng.int(below: grid / 2)
            for y in y0..<min(grid, y0 + hh) { for x in x0..<min(grid, x0 + ww) { cellClass[y * grid + x] = c } }
        }
        var f = Matrix(rows: grid * grid, cols: channels)
        for cell in 0..<(grid * grid) {
            let s = 1 + 0.3 * rng.gaussian()
            for j in 0..<channels { f[cell, j] = s * means[cellClass[cell]][j] + noise * rng.gaussian() }
        }
        var lab = [UInt8](repeating: 0, count: size * size)
        var img = [UInt8](repeating: 0, count: size * size * 3)
        for y in 0..<size { for x in 0..<size {
            let c = cellClass[(y / patch) * grid + x / patch]
            lab[y * size + x] = UInt8(c)
            img[3 * (y * size + x)] = colors[c].0; img[3 * (y * size + x) + 1] = colors[c].1; img[3 * (y * size + x) + 2] = colors[c].2
        } }
        all.append(lab)
        try w.write(i, features: f, image: img, labels: lab, name: "\(split)/img_\(i)")
    }
    try w.commit()
    return all
}

/// Adds `/features_views` to a store: three views `x * s + N(0, 0.3)` for s = 0.8, 1.2, 1.0
/// (numpy seed 0), written with h5py as users would.
public func addNoisyViews(to path: String) throws {
    _ = try runPython("""
    import h5py, sys, numpy as np
    with h5py.File(sys.argv[1], 'a') as f:
        x = f['features'][...]
        rng = np.random.default_rng(0)
        v = np.stack([x * s + rng.normal(0, 0.3, x.shape).astype(x.dtype) for s in (0.8, 1.2, 1.0)])
        f.create_dataset('features_views', data=v.astype(x.dtype), chunks=(1, 1) + x.shape[1:])
    """, args: [path])
}
