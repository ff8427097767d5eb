import Foundation
import UnsegCore
import UnsegLinAlg

// The held-out corpus ("mosaic", `unseg synth --scene mosaic`): a second generator written to
// other statistics than the street corpus, so that a method tuned on one is checked on the other
// (issue 27). Nothing here is shared with SyntheticScene / SyntheticRender.
//
// - Class frequencies: Zipf-like (weight 1 / rank^1.2 over a seeded permutation of the classes);
//   the `rareShare` least frequent classes appear only as small objects and thin bars.
// - Layout: a power diagram of 3-9 regions (additively weighted nearest seed), so region sizes
//   run from a few cells to more than half the image; then 0-8 small ellipses (radii 3-14 px, so
//   often less than two cells) and 0-3 thin bars (4-10 px wide) of the rare classes, which rarely
//   get a mask proposal of their own; sometimes an unlabelled (255) blob.
// - Features: per class a unit mean (0.6 common + 0.4 own direction as squared shares, no semantic groups), a
//   norm factor, and a texture drift along two class-specific directions whose amplitude
//   (0.3-0.9 of the mean) follows a plane wave of class-specific frequency with a per-region
//   phase: features drift within a class, across an image and between images. A cell mixes the
//   classes of its pixels by area; plus a per-image illumination shift along a shared direction
//   and isotropic noise. RGB: class colour, the same wave as texture, pixel noise.

/// The class-level structure of a mosaic corpus: a function of (seed, classes, channels).
struct MosaicStructure: Sendable {
    let means: Matrix            // [K, C] unit
    let driftA: Matrix           // [K, C] unit
    let driftB: Matrix           // [K, C] unit
    let amplitude: [Float]       // [K]
    let frequency: [SIMD2<Float>]   // [K] cycles per image side, for the wave
    let norm: [Float]            // [K]
    let weight: [Float]          // [K] region-class frequency (0 for the rare classes)
    let rare: [Int]              // classes that only appear as small objects
    let illumination: [Float]    // [C] unit
    let void: [Float]            // [C] unit
    let color: [SIMD3<Float>]    // [K]

    static let rareShare: Float = 0.25
    /// Squared share of the direction common to all classes in a class mean: cosine 0.6 between
    /// class means, so PriMaPs masks often span several classes (as on real DINO features).
    static let commonShare: Float = 0.6

    init(config: SyntheticConfig) {
        let c = config.channels, k = config.classes
        var rng = SeededRandom(seed: SyntheticCorpus.mix(config.seed ^ 0x4D4F_5341_4943_0001))   // "MOSAIC"
        func unit() -> [Float] {
            var v = (0..<c).map { _ in rng.gaussian() }
            let n = max(Reduce.dot(v, v).squareRoot(), 1e-12)
            for i in 0..<c { v[i] /= n }
            return v
        }
        let common = unit()
        var means = Matrix(rows: k, cols: c), a = Matrix(rows: k, cols: c), b = Matrix(rows: k, cols: c)
        for cls in 0..<k {
            let own = unit()
            let wc: Float = MosaicStructure.commonShare.squareRoot(), wo: Float = (1 - MosaicStructure.commonShare).squareRoot()
            var m = [Float](repeating: 0, count: c)
            for i in 0..<c { m[i] = wc * common[i] + wo * own[i] }
            let n = Reduce.dot(m, m).squareRoot()
            for i in 0..<c { m[i] /= n }
            means.setRow(cls, m)
            a.setRow(cls, unit())
            b.setRow(cls, unit())
        }
        self.means = means
        driftA = a
        driftB = b
        amplitude = (0..<k).map { _ in rng.float(in: 0.3..<0.9) }
        frequency = (0..<k).map { _ in SIMD2(rng.float(in: 0.5..<3), rng.float(in: -2..<2)) }
        norm = (0..<k).map { _ in Float(exp(Double(rng.float(in: -0.3..<0.3)))) }
        var order = Array(0..<k)
        rng.shuffle(&order)
        let rareCount = max(1, Int((Float(k) * Self.rareShare).rounded()))
        rare = Array(order.suffix(rareCount))
        var w = [Float](repeating: 0, count: k)
        for (rank, cls) in order.prefix(k - rareCount).enumerated() { w[cls] = 1 / Float(pow(Double(rank + 1), 1.2)) }
        weight = w
        illumination = unit()
        void = unit()
        color = (0..<k).map { _ in SIMD3(rng.float(in: 25..<230), rng.float(in: 25..<230), rng.float(in: 25..<230)) }
    }

    func pickRegionClass(_ rng: inout SeededRandom) -> Int {
        let total = weight.reduce(0, +)
        var u = rng.float() * total
        for (cls, w) in weight.enumerated() where w > 0 {
            if u < w { return cls }
            u -= w
        }
        return weight.lastIndex { $0 > 0 } ?? 0
    }
}

/// The held-out corpus: same `SyntheticConfig` fields as the street corpus (count, size, patch,
/// channels, classes, seed, split; `noise` and `featureScale` are used, the street corpus' other
/// knobs are not), its own statistics (above). `image(i)` is a pure function of (config, i).
public struct MosaicCorpus: Sendable {
    public let config: SyntheticConfig
    public let classNames: [String]
    let structure: MosaicStructure
    let imageSeed: UInt64

    public init(config: SyntheticConfig) throws {
        try config.validate()
        self.config = config
        classNames = (0..<config.classes).map { String(format: "class_%02d", $0) }
        structure = MosaicStructure(config: config)
        imageSeed = SyntheticCorpus.mix(config.seed ^ 0x4D4F_5341_4943_0002 ^ SyntheticCorpus.fnv1a(config.split))
    }

    /// The classes that appear only as small objects and thin bars.
    public var rareClasses: [Int] { structure.rare.sorted() }

    public func name(_ index: Int) -> String { "mosaic_\(config.split)_" + String(format: "%06d", index) }

    public func image(_ index: Int) -> SyntheticImage {
        precondition(index >= 0 && index < config.imageCount, "mosaic image index \(index) out of range 0..<\(config.imageCount)")
        var rng = SeededRandom.stream(seed: imageSeed, index: UInt64(index))
        let s = config.imageSize, p = config.patchSize, g = s / p, c = config.channels
        let st = structure
        // Regions: a power diagram of seeds with additive weights (sizes from a few cells to most of the image).
        let regions = 3 + rng.int(below: 7)
        var seeds: [(x: Float, y: Float, w: Float, cls: Int, phase: Float)] = []
        for _ in 0..<regions {
            let w = Float(s * s) * (rng.float() < 0.3 ? rng.float(in: 0.05..<0.35) : rng.float(in: 0..<0.04))
            seeds.append((rng.float() * Float(s), rng.float() * Float(s), w, st.pickRegionClass(&rng), rng.float() * 6.283))
        }
        // region index per pixel, then labels; 255 marks unlabelled pixels.
        var region = [Int](repeating: 0, count: s * s)
        for y in 0..<s {
            for x in 0..<s {
                var best = 0, bestD = Float.infinity
                for (r, sd) in seeds.enumerated() {
                    let dx = Float(x) - sd.x, dy = Float(y) - sd.y
                    let d = dx * dx + dy * dy - sd.w
                    if d < bestD { bestD = d; best = r }
                }
                region[y * s + x] = best
            }
        }
        var labels = region.map { UInt8(seeds[$0].cls) }
        var phase = region.map { seeds[$0].phase }
        // Small objects and thin bars of the rare classes, and sometimes an unlabelled blob.
        func ellipse(_ cls: UInt8, cx: Float, cy: Float, rx: Float, ry: Float, ph: Float) {
            let x0 = max(0, Int(cx - rx)), x1 = min(s - 1, Int(cx + rx)), y0 = max(0, Int(cy - ry)), y1 = min(s - 1, Int(cy + ry))
            guard x0 <= x1, y0 <= y1 else { return }
            for y in y0...y1 {
                for x in x0...x1 {
                    let u = (Float(x) - cx) / rx, v = (Float(y) - cy) / ry
                    if u * u + v * v <= 1 { labels[y * s + x] = cls; phase[y * s + x] = ph }
                }
            }
        }
        for _ in 0..<rng.int(below: 9) {
            let cls = UInt8(st.rare[rng.int(below: st.rare.count)])
            let r = rng.float(in: 3..<14)
            ellipse(cls, cx: rng.float() * Float(s), cy: rng.float() * Float(s), rx: r * rng.float(in: 0.6..<1.6), ry: r, ph: rng.float() * 6.283)
        }
        for _ in 0..<rng.int(below: 4) {
            let cls = UInt8(st.rare[rng.int(below: st.rare.count)])
            let wd = rng.float(in: 4..<10), h = rng.float(in: Float(s) * 0.15..<Float(s) * 0.5)
            let cx = rng.float() * Float(s), cy = rng.float() * Float(s)
            let x0 = max(0, Int(cx - wd / 2)), x1 = min(s - 1, Int(cx + wd / 2)), y0 = max(0, Int(cy - h / 2)), y1 = min(s - 1, Int(cy + h / 2))
            let ph = rng.float() * 6.283
            if x0 <= x1 && y0 <= y1 { for y in y0...y1 { for x in x0...x1 { labels[y * s + x] = cls; phase[y * s + x] = ph } } }
        }
        if rng.float() < 0.4 {
            ellipse(255, cx: rng.float() * Float(s), cy: rng.float() * Float(s), rx: rng.float(in: 8..<30), ry: rng.float(in: 8..<30), ph: 0)
        }
        // Per-pixel texture value of the class wave (the same field drives features and colour).
        func wave(_ cls: Int, _ x: Int, _ y: Int, _ ph: Float) -> (Float, Float) {
            let f = st.frequency[cls]
            let t = 6.283 * (f.x * Float(x) + f.y * Float(y)) / Float(s) + ph
            return (sin(t), cos(0.7 * t + 1.3))
        }
        // Features: area-weighted mixture per cell, drift evaluated per pixel and averaged.
        let scale = config.featureScale
        let illum = rng.float(in: -0.3..<0.3)
        let sigma = config.noise / Float(c).squareRoot()
        var features = Matrix(rows: g * g, cols: c)
        for cy in 0..<g {
            for cx in 0..<g {
                // Per class in the cell: pixel count and summed wave values.
                var acc: [Int: (n: Float, a: Float, b: Float)] = [:]
                var voidPixels: Float = 0
                for y in (cy * p)..<((cy + 1) * p) {
                    for x in (cx * p)..<((cx + 1) * p) {
                        let l = labels[y * s + x]
                        if l == 255 { voidPixels += 1; continue }
                        let (a, b) = wave(Int(l), x, y, phase[y * s + x])
                        let e = acc[Int(l)] ?? (0, 0, 0)
                        acc[Int(l)] = (e.n + 1, e.a + a, e.b + b)
                    }
                }
                let area = Float(p * p)
                var v = [Float](repeating: 0, count: c)
                for (cls, e) in acc.sorted(by: { $0.key < $1.key }) {
                    let share = e.n / area, amp = st.amplitude[cls] * st.norm[cls]
                    let ma = amp * e.a / e.n, mb = amp * e.b / e.n
                    for i in 0..<c {
                        v[i] += share * (st.norm[cls] * st.means[cls, i] + ma * st.driftA[cls, i] + mb * st.driftB[cls, i])
                    }
                }
                let vs = voidPixels / area
                for i in 0..<c { v[i] += vs * st.void[i] + illum * st.illumination[i] + sigma * rng.gaussian() }
                let row = cy * g + cx
                for i in 0..<c { features[row, i] = scale * v[i] }
            }
        }
        // RGB.
        var rgb = [UInt8](repeating: 0, count: s * s * 3)
        for y in 0..<s {
            for x in 0..<s {
                let l = labels[y * s + x]
                var col = SIMD3<Float>(repeating: 128)
                if l != 255 {
                    let (a, _) = wave(Int(l), x, y, phase[y * s + x])
                    col = st.color[Int(l)] + SIMD3(repeating: 28 * a)
                }
                col += SIMD3(rng.float(in: -8..<8), rng.float(in: -8..<8), rng.float(in: -8..<8))
                let o = (y * s + x) * 3
                rgb[o] = UInt8(clamping: Int(col.x.rounded())); rgb[o + 1] = UInt8(clamping: Int(col.y.rounded())); rgb[o + 2] = UInt8(clamping: Int(col.z.rounded()))
            }
        }
        return SyntheticImage(index: index, features: features, image: rgb, labels: labels, name: name(index))
    }
}
