import Foundation

/// Exact (truncated) spatial Gaussian filter over an `H x W` pixel grid, separable:
/// `out(y, x) = sum_{|dy|,|dx| <= R, in image} k(dy) k(dx) v(y+dy, x+dx)` with
/// `k(d) = exp(-d^2 / (2 sxy^2))` (so `k(0) = 1`: the pixel's own value is included, as in the
/// lattice) and `R = ceil(3 sxy)`. Pixels outside the image contribute nothing (truncation), so
/// filtering a field of ones gives the in-image kernel sum the CRF's normalisation needs.
///
/// This is the dense CRF's appearance-free kernel on features `(x/sxy, y/sxy)` computed without
/// the permutohedral lattice's approximation; truncation at 3 sigma drops a relative
/// `~2 sum_{d>3 sxy} k(d) / sum_d k(d) < 3e-4` of the kernel mass per axis.
/// Values are `[H*W, blocks]` SIMD4 (all label channels of a pixel contiguous); every pass is
/// a contiguous multiply-add over a whole row, O(H W blocks (2R+1)) per filter. Deterministic.
struct SeparableGaussian {
    let height: Int
    let width: Int
    let radius: Int
    /// `[2R+1]`: `taps[R + d] = exp(-d^2 / (2 sxy^2))`.
    let taps: [Float]

    /// Largest radius for which `DenseCRF` uses this filter instead of a lattice (cost grows as `R`).
    static let maxRadius = 8

    /// Truncation radius `ceil(3 sxy)` (at least 1).
    static func radius(sxy: Float) -> Int { max(1, Int((3 * Double(sxy)).rounded(.up))) }

    init(height: Int, width: Int, sxy: Float) {
        self.height = height
        self.width = width
        radius = SeparableGaussian.radius(sxy: sxy)
        let r = radius
        let s2 = 2 * Double(sxy) * Double(sxy)
        taps = (-r...r).map { d in Float(exp(-Double(d * d) / s2)) }
    }

    /// Scratch floats (SIMD4 blocks) `blurRow` needs: one padded row.
    func scratchCount(blocks c: Int) -> Int { (width + 2 * radius) * c }

    /// Allocates a row scratch with its zero pads (caller deallocates).
    func makeScratch(blocks c: Int) -> UnsafeMutablePointer<SIMD4<Float>> {
        let s = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: scratchCount(blocks: c))
        s.initialize(repeating: .zero, count: scratchCount(blocks: c))
        return s
    }

    /// Filtered row `y` of `src` `[H*W, c]` into `dst` `[W, c]`: vertical pass into the padded
    /// `scratch` (from `makeScratch`; its `R c` pads on each side must be zero and stay zero),
    /// then horizontal pass with symmetric tap pairs. `dst` must not alias `src` or `scratch`.
    @inline(__always)
    func blurRow(_ y: Int, _ src: UnsafePointer<SIMD4<Float>>, blocks c: Int,
                 into dst: UnsafeMutablePointer<SIMD4<Float>>, scratch: UnsafeMutablePointer<SIMD4<Float>>) {
        let r = radius, rowLen = width * c
        taps.withUnsafeBufferPointer { tb in
            let t = tb.baseAddress! + r   // t[d] for d in -R...R
            let v = scratch + r * c
            // Vertical: rows y-R...y+R clipped to the image.
            let y0 = Swift.max(y - r, 0), y1 = Swift.min(y + r, height - 1)
            do {
                let w0 = SIMD4<Float>(repeating: t[y0 - y]), s0 = src + y0 * rowLen
                for j in 0..<rowLen { v[j] = w0 * s0[j] }
            }
            if y1 > y0 {
                for yy in (y0 + 1)...y1 {
                    let wt = SIMD4<Float>(repeating: t[yy - y]), s = src + yy * rowLen
                    for j in 0..<rowLen { v[j] += wt * s[j] }
                }
            }
            // Horizontal: the zero pads make out-of-image columns contribute nothing.
            let w0 = SIMD4<Float>(repeating: t[0])
            for j in 0..<rowLen { dst[j] = w0 * v[j] }
            for d in 1...r {
                let wt = SIMD4<Float>(repeating: t[d]), o = d * c
                for j in 0..<rowLen { dst[j] += wt * (v[j - o] + v[j + o]) }
            }
        }
    }

    /// Filters the whole field `src` `[H*W, c]` into `dst` `[H*W, c]` (no aliasing).
    func filter(_ src: UnsafePointer<SIMD4<Float>>, blocks c: Int, into dst: UnsafeMutablePointer<SIMD4<Float>>) {
        let scratch = makeScratch(blocks: c)
        defer { scratch.deallocate() }
        for y in 0..<height { blurRow(y, src, blocks: c, into: dst + y * width * c, scratch: scratch) }
    }

    /// Convenience: filters `values` `[H*W, channels]` (row-major Float) and returns `[H*W, channels]`.
    func filter(_ values: [Float], channels: Int) -> [Float] {
        let n = height * width
        precondition(values.count == n * channels,
                     "separable Gaussian: values has \(values.count) elements, expected \(height)x\(width)x\(channels)")
        let blocks = (channels + 3) / 4, lp = blocks * 4
        let inp = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: max(n * blocks, 1))
        let outp = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: max(n * blocks, 1))
        defer { inp.deallocate(); outp.deallocate() }
        inp.initialize(repeating: .zero, count: n * blocks)
        outp.initialize(repeating: .zero, count: n * blocks)
        let fi = UnsafeMutableRawPointer(inp).assumingMemoryBound(to: Float.self)
        let fo = UnsafeMutableRawPointer(outp).assumingMemoryBound(to: Float.self)
        for i in 0..<n { for k in 0..<channels { fi[i * lp + k] = values[i * channels + k] } }
        filter(inp, blocks: blocks, into: outp)
        var out = [Float](repeating: 0, count: values.count)
        for i in 0..<n { for k in 0..<channels { out[i * channels + k] = fo[i * lp + k] } }
        return out
    }
}
