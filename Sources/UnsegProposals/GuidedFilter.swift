import Foundation

/// Parameters of the guided filter (He, Sun, Tang) as used in "Two Tricks to Improve
/// Unsupervised Segmentation Learning" for PriMaPs refinement: radius 9, eps 1e-3.
/// Coding keys are stable (recipe fields / HDF5 attributes); missing keys decode to the defaults.
public struct GuidedFilterConfig: Codable, Equatable, Hashable, Sendable {
    /// Window radius `r`: windows are `(2r+1)^2`, clipped at the borders (>= 0).
    public var radius: Int
    /// Regulariser added to the guide's local variance (> 0).
    public var eps: Float

    public init(radius: Int = 9, eps: Float = 1e-3) {
        self.radius = radius
        self.eps = eps
    }

    enum CodingKeys: String, CodingKey { case radius, eps }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        radius = try c.decodeIfPresent(Int.self, forKey: .radius) ?? 9
        eps = try c.decodeIfPresent(Float.self, forKey: .eps) ?? 1e-3
    }

    /// Checks the values; throws `RefinementError.invalidConfig` naming the bad field.
    public func validate() throws {
        if radius < 0 { throw RefinementError.invalidConfig("guided filter radius=\(radius) should be >= 0") }
        if !(eps > 0) || !eps.isFinite {
            throw RefinementError.invalidConfig("guided filter eps=\(eps) should be > 0 and finite")
        }
    }
}

/// Guided filter with a grayscale guide, reusing the guide statistics across inputs.
///
/// For input `p`: `a = cov(I, p) / (var(I) + eps)`, `b = mean(p) - a mean(I)`,
/// output `mean(a) I + mean(b)`, where `mean` is the box mean over the `(2r+1)^2` window
/// clipped at the image border, divided by the number of pixels actually in the window
/// (the standard implementation's `N = box(ones)`). Box sums use Double integral images,
/// so each filtering costs O(H W) whatever the radius; `mean(I)` and `var(I)` are computed
/// once in `init`. Deterministic.
public struct GuidedFilter: Sendable {
    public let height: Int
    public let width: Int
    public let config: GuidedFilterConfig
    /// `[H*W]` the guide in [0, 1].
    public let guide: [Float]
    /// `[H*W]` box mean of the guide.
    let meanI: [Double]
    /// `[H*W]` `1 / (var(I) + eps)`.
    let invVar: [Double]

    /// Guide = RGB image `[H*W*3]` (uint8) scaled to [0, 1] and averaged over channels.
    public init(image: [UInt8], height: Int, width: Int, config: GuidedFilterConfig = GuidedFilterConfig()) throws {
        guard height > 0, width > 0, image.count == height * width * 3 else {
            throw RefinementError.shapeMismatch(
                "guided filter image has \(image.count) bytes, expected \(height)x\(width)x3 = \(max(height * width * 3, 0))")
        }
        var g = [Float](repeating: 0, count: height * width)
        for i in 0..<(height * width) {
            let s = Float(image[3 * i]) + Float(image[3 * i + 1]) + Float(image[3 * i + 2])
            g[i] = s / (3 * 255)
        }
        try self.init(guide: g, height: height, width: width, config: config)
    }

    /// Guide = any grayscale map `[H*W]`.
    public init(guide: [Float], height: Int, width: Int, config: GuidedFilterConfig = GuidedFilterConfig()) throws {
        try config.validate()
        guard height > 0, width > 0, guide.count == height * width else {
            throw RefinementError.shapeMismatch(
                "guided filter guide has \(guide.count) values, expected \(height)x\(width) = \(max(height * width, 0))")
        }
        self.height = height
        self.width = width
        self.config = config
        self.guide = guide
        let n = height * width
        let box = BoxMean(height: height, width: width, radius: config.radius)
        var mI = [Double](repeating: 0, count: n), mII = mI
        var sq = [Double](repeating: 0, count: n)
        for i in 0..<n { sq[i] = Double(guide[i]) * Double(guide[i]) }
        let gd = guide.map(Double.init)
        box.mean(gd, into: &mI)
        box.mean(sq, into: &mII)
        var iv = [Double](repeating: 0, count: n)
        let e = Double(config.eps)
        for i in 0..<n { iv[i] = 1 / (mII[i] - mI[i] * mI[i] + e) }
        meanI = mI
        invVar = iv
    }

    /// Filters one map `p` `[H*W]`, returns `[H*W]`. O(H W).
    public func apply(_ p: [Float]) -> [Float] {
        precondition(p.count == height * width,
                     "GuidedFilter.apply: input has \(p.count) values, image is \(height)x\(width)")
        var out = [Float](repeating: 0, count: p.count)
        var ws = Scratch(count: p.count)
        p.withUnsafeBufferPointer { pb in
            out.withUnsafeMutableBufferPointer { ob in
                apply(pb.baseAddress!, stride: 1, into: ob.baseAddress!, outStride: 1, scratch: &ws)
            }
        }
        return out
    }

    /// Filters each of the `channels` columns of `maps` `[H*W, channels]` (row-major), returns
    /// `[H*W, channels]`. The guide statistics are shared. O(H W channels).
    public func apply(channels maps: [Float], channels k: Int) -> [Float] {
        precondition(maps.count == height * width * k,
                     "GuidedFilter.apply: maps has \(maps.count) values, expected \(height)x\(width)x\(k)")
        var out = [Float](repeating: 0, count: maps.count)
        var ws = Scratch(count: height * width)
        maps.withUnsafeBufferPointer { pb in
            out.withUnsafeMutableBufferPointer { ob in
                for c in 0..<k {
                    apply(pb.baseAddress! + c, stride: k, into: ob.baseAddress! + c, outStride: k, scratch: &ws)
                }
            }
        }
        return out
    }

    struct Scratch {
        var a: [Double], b: [Double], c: [Double], d: [Double]
        init(count: Int) {
            a = [Double](repeating: 0, count: count); b = a; c = a; d = a
        }
    }

    func apply(_ p: UnsafePointer<Float>, stride: Int, into out: UnsafeMutablePointer<Float>, outStride: Int,
               scratch ws: inout Scratch) {
        let n = height * width
        let box = BoxMean(height: height, width: width, radius: config.radius)
        // a <- p, b <- I p
        for i in 0..<n {
            let v = Double(p[i * stride])
            ws.a[i] = v
            ws.b[i] = v * Double(guide[i])
        }
        box.mean(ws.a, into: &ws.c)   // c = mean p
        box.mean(ws.b, into: &ws.d)   // d = mean Ip
        for i in 0..<n {
            let a = (ws.d[i] - meanI[i] * ws.c[i]) * invVar[i]
            ws.a[i] = a
            ws.b[i] = ws.c[i] - a * meanI[i]
        }
        box.mean(ws.a, into: &ws.c)   // c = mean a
        box.mean(ws.b, into: &ws.d)   // d = mean b
        for i in 0..<n {
            out[i * outStride] = Float(ws.c[i] * Double(guide[i]) + ws.d[i])
        }
    }
}

/// Box mean over `(2r+1)^2` windows clipped at the border, divided by the window's pixel count,
/// with a Double integral image: O(H W) for any radius.
struct BoxMean {
    let height: Int, width: Int, radius: Int
    /// Per row / column: clipped window bounds `[lo, hi)`.
    let rowLo: [Int], rowHi: [Int], colLo: [Int], colHi: [Int]

    init(height: Int, width: Int, radius: Int) {
        self.height = height
        self.width = width
        self.radius = radius
        rowLo = (0..<height).map { max(0, $0 - radius) }
        rowHi = (0..<height).map { min(height, $0 + radius + 1) }
        colLo = (0..<width).map { max(0, $0 - radius) }
        colHi = (0..<width).map { min(width, $0 + radius + 1) }
    }

    func mean(_ src: [Double], into dst: inout [Double]) {
        let h = height, w = width, w1 = width + 1
        var integral = [Double](repeating: 0, count: (h + 1) * w1)
        src.withUnsafeBufferPointer { s in
        integral.withUnsafeMutableBufferPointer { ib in
        dst.withUnsafeMutableBufferPointer { db in
        rowLo.withUnsafeBufferPointer { rl in rowHi.withUnsafeBufferPointer { rh in
        colLo.withUnsafeBufferPointer { cl in colHi.withUnsafeBufferPointer { ch in
            let S = ib.baseAddress!
            for y in 0..<h {
                var run = 0.0
                let prev = S + y * w1, cur = S + (y + 1) * w1
                let row = s.baseAddress! + y * w
                for x in 0..<w {
                    run += row[x]
                    cur[x + 1] = prev[x + 1] + run
                }
            }
            for y in 0..<h {
                let y0 = rl[y], y1 = rh[y]
                let top = S + y0 * w1, bot = S + y1 * w1
                let ny = Double(y1 - y0)
                let o = db.baseAddress! + y * w
                for x in 0..<w {
                    let x0 = cl[x], x1 = ch[x]
                    let sum = bot[x1] - bot[x0] - top[x1] + top[x0]
                    o[x] = sum / (ny * Double(x1 - x0))
                }
            }
        }}}}}}}
    }
}
