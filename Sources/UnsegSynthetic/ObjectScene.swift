import Foundation
import UnsegCore
import UnsegLinAlg
import UnsegStore

/// Settings of the object-centric synthetic corpus (`unseg synth --scene object`).
public struct ObjectSceneConfig: Sendable, Equatable {
    public var imageCount: Int = 60
    public var imageSize: Int = 160
    public var patchSize: Int = 8
    public var channels: Int = 64
    public var seed: UInt64 = 0
    public var split: String = "train"
    /// Objects per image: 1...maxObjects.
    public var maxObjects: Int = 2
    /// Standard deviation of the per-cell feature noise, relative to the class means' norm.
    public var noise: Float = 0.35
    public init(imageCount: Int = 60, imageSize: Int = 160, patchSize: Int = 8, channels: Int = 64, seed: UInt64 = 0,
                split: String = "train", maxObjects: Int = 2, noise: Float = 0.35) {
        self.imageCount = imageCount; self.imageSize = imageSize; self.patchSize = patchSize; self.channels = channels
        self.seed = seed; self.split = split; self.maxObjects = maxObjects; self.noise = noise
    }
    public var gridSize: Int { imageSize / patchSize }
}

/// Object-centric synthetic images for saliency and localisation: one or a few salient objects
/// (ellipses of a bright colour, features of an object class) on a textured background (striped,
/// noisy RGB; background features), binary labels (1 object, 0 background) and one box per object.
///
/// A cell's feature mixes the background and object means by the fraction of its pixels the object
/// covers, plus Gaussian noise, as patch tokens straddling a boundary do; so the feature grid is
/// coarse at object edges and the image's colours are sharp: what a guide image helps with.
/// Deterministic per (seed, split, index). Objects cover less than half of an image.
public struct ObjectScene: Sendable {
    public let config: ObjectSceneConfig
    let backgroundMean: [Float]
    let objectMeans: [[Float]]

    public init(config: ObjectSceneConfig) throws {
        guard config.imageCount >= 1, config.patchSize >= 1, config.imageSize % config.patchSize == 0,
              config.gridSize >= 4, config.channels >= 4, (1...4).contains(config.maxObjects) else {
            throw KernelError("object scenes: images \(config.imageCount) of \(config.imageSize) px with patch \(config.patchSize) (the size must be a multiple of the patch and give at least 4 cells per side), \(config.channels) channels (>= 4), 1...4 objects")
        }
        self.config = config
        var r = SeededRandom.stream(seed: config.seed, index: 0xB0B)
        func unit() -> [Float] {
            let v = (0..<config.channels).map { _ in r.gaussian() }
            let n = v.map { $0 * $0 }.reduce(0, +).squareRoot()
            return v.map { $0 / n * 10 }
        }
        backgroundMean = unit()
        objectMeans = (0..<4).map { _ in unit() }
    }

    public struct Image: Sendable {
        public var features: Matrix
        public var image: [UInt8]
        public var labels: [UInt8]
        public var boxes: [[Float]]
        public var name: String
    }

    /// Image `index`.
    public func image(_ index: Int) -> Image {
        let c = config, S = c.imageSize, g = c.gridSize, p = c.patchSize
        var r = SeededRandom.stream(seed: c.seed ^ FileNames.fnv1a(c.split), index: UInt64(index))
        let count = 1 + r.int(below: c.maxObjects)
        struct Ellipse { var cx, cy, rx, ry: Float; var color: (Float, Float, Float); var cls: Int }
        var objects: [Ellipse] = []
        var area: Float = 0
        for _ in 0..<count {
            let rx = Float(S) * (0.12 + 0.14 * r.float()), ry = Float(S) * (0.12 + 0.14 * r.float())
            if area + Float.pi * rx * ry > 0.45 * Float(S * S) { break }
            let cx = rx + r.float() * (Float(S) - 2 * rx), cy = ry + r.float() * (Float(S) - 2 * ry)
            let color = (120 + 135 * r.float(), 60 + 195 * r.float(), 40 * r.float())
            objects.append(Ellipse(cx: cx, cy: cy, rx: rx, ry: ry, color: color, cls: r.int(below: objectMeans.count)))
            area += Float.pi * rx * ry
        }
        let bg = (40 + 60 * r.float(), 50 + 60 * r.float(), 90 + 80 * r.float())
        let stripe = 6 + r.float() * 10, phase = r.float() * 6
        var labels = [UInt8](repeating: 0, count: S * S)
        var owner = [Int](repeating: -1, count: S * S)
        var rgb = [UInt8](repeating: 0, count: S * S * 3)
        for y in 0..<S {
            for x in 0..<S {
                let i = y * S + x
                var col = bg
                let t = 18 * sin((Float(x) + 0.5 * Float(y)) / stripe + phase)
                col = (col.0 + t, col.1 + t, col.2 + t)
                for (k, o) in objects.enumerated() {
                    let dx = (Float(x) + 0.5 - o.cx) / o.rx, dy = (Float(y) + 0.5 - o.cy) / o.ry
                    if dx * dx + dy * dy <= 1 { labels[i] = 1; owner[i] = k; col = o.color }
                }
                let nz = 10 * r.gaussian()
                rgb[3 * i] = UInt8(max(0, min(255, col.0 + nz)))
                rgb[3 * i + 1] = UInt8(max(0, min(255, col.1 + nz)))
                rgb[3 * i + 2] = UInt8(max(0, min(255, col.2 + nz)))
            }
        }
        var f = Matrix(rows: g * g, cols: c.channels)
        let scale = c.noise * 10 / Float(c.channels).squareRoot()
        for cy in 0..<g {
            for cx in 0..<g {
                // Coverage of the cell by each object.
                var cover = [Float](repeating: 0, count: objects.count)
                for y in (cy * p)..<((cy + 1) * p) { for x in (cx * p)..<((cx + 1) * p) where owner[y * S + x] >= 0 { cover[owner[y * S + x]] += 1 } }
                let total = Float(p * p)
                let cell = cy * g + cx
                for j in 0..<c.channels {
                    var v = backgroundMean[j] * (1 - cover.reduce(0, +) / total)
                    for (k, o) in objects.enumerated() { v += objectMeans[o.cls][j] * cover[k] / total }
                    f.data[cell * c.channels + j] = v + scale * r.gaussian()
                }
            }
        }
        let boxes = objects.map { o in
            [Float(index), max(0, o.cx - o.rx), max(0, o.cy - o.ry), min(Float(S), o.cx + o.rx), min(Float(S), o.cy + o.ry)]
        }
        return Image(features: f, image: rgb, labels: labels, boxes: boxes, name: "objects_\(c.split)_\(String(format: "%06d", index))")
    }
}
