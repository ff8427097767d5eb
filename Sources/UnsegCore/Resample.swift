import UnsegLinAlg

// The project's resampling kernels: one nearest-neighbour (label and mask maps) and one bilinear
// (score maps, images) with its exact adjoint. Every module resizes through these.

/// How nearest-neighbour resizing picks the source pixel.
public enum NearestMode: Sendable {
    /// floor((d + 0.5) * in / out): pixel centres aligned (PyTorch "nearest-exact", PIL NEAREST).
    case halfPixel
    /// floor(d * in / out): PyTorch's default "nearest" (and OpenCV INTER_NEAREST); the mode of
    /// every mask upsampling in the pipeline (pixel `(y, x)` takes cell `(y h / H, x w / W)`, i.e.
    /// its patch when `H = h * patch`).
    case legacyFloor
}

/// Nearest-neighbour resampling of id maps (ids are copied, never mixed), in exact integer arithmetic.
public enum NearestResampler {
    /// Source index of each of `output` samples along an axis of `input` samples.
    public static func indices(input: Int, output: Int, mode: NearestMode) -> [Int] {
        (0..<output).map { d in
            let s: Int
            switch mode {
            case .halfPixel: s = ((2 * d + 1) * input) / (2 * output)
            case .legacyFloor: s = (d * input) / output
            }
            return min(s, input - 1)
        }
    }

    /// Resamples a row-major `[h*w]` map of `bytesPerPixel`-byte pixels to `[H*W]`. O(H W).
    public static func resample(_ m: [UInt8], height h: Int, width w: Int, toHeight bigH: Int, toWidth bigW: Int,
                                bytesPerPixel b: Int = 1, mode: NearestMode = .legacyFloor) -> [UInt8] {
        precondition(h > 0 && w > 0 && bigH > 0 && bigW > 0 && b > 0 && m.count == h * w * b,
                     "nearest resample: \(m.count) values for a \(h)x\(w)x\(b) map -> \(bigH)x\(bigW)")
        let xs = indices(input: w, output: bigW, mode: mode)
        let ys = indices(input: h, output: bigH, mode: mode)
        var out = [UInt8](repeating: 0, count: bigH * bigW * b)
        m.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<bigH {
                    let row = src.baseAddress! + ys[y] * w * b
                    let o = dst.baseAddress! + y * bigW * b
                    if b == 1 {
                        for x in 0..<bigW { o[x] = row[xs[x]] }
                    } else {
                        for x in 0..<bigW { for c in 0..<b { o[x * b + c] = row[xs[x] * b + c] } }
                    }
                }
            }
        }
        return out
    }
}

/// Bilinear resampling of channel-last maps, and its exact adjoint.
///
/// Convention: PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`:
/// output pixel `x` samples source coordinate `(x + 0.5) * (w / W) - 0.5`,
/// clamped below at 0; the right/bottom neighbour is clamped to the last index.
/// The operator is separable and linear, so the adjoint (`upsampleAdjoint`) is
/// the transpose of the same weights: PriMaPs-EM uses it to compute gradients at
/// feature resolution (`F^T upsample^T(dL/dlogits)`), which is exact.
public struct BilinearAxis: Sendable, Equatable {
    /// Per output index: the two source indices and their weights (`w0 + w1 == 1`).
    public let i0: [Int32], i1: [Int32]
    public let w0: [Float], w1: [Float]
    public let sourceCount: Int, targetCount: Int

    /// Weights mapping `sourceCount` samples to `targetCount` samples.
    public init(source: Int, target: Int) {
        precondition(source > 0 && target > 0, "bilinear axis needs positive sizes, got \(source) -> \(target)")
        let scale = Double(source) / Double(target)
        self.init(source: source, target: target) { x in max((Double(x) + 0.5) * scale - 0.5, 0) }
    }

    /// Weights sampling the `source` samples' linear interpolant at the centres of `target` samples
    /// that tile `[start, start + span)` (in source samples): target `x` reads source coordinate
    /// `start + (x + 0.5) span / target - 0.5`, clamped to `[0, source - 1]` (a crop of the source,
    /// resized to `target`; `start 0, span source` is `init(source:target:)` up to rounding).
    public init(source: Int, target: Int, start: Double, span: Double) {
        precondition(source > 0 && target > 0 && span > 0, "bilinear axis needs positive sizes, got \(source) -> \(target), span \(span)")
        self.init(source: source, target: target) { x in
            min(max(start + (Double(x) + 0.5) * span / Double(target) - 0.5, 0), Double(source - 1))
        }
    }

    /// The two neighbours and weights of each target sample from its source coordinate (>= 0).
    private init(source: Int, target: Int, coordinate: (Int) -> Double) {
        sourceCount = source
        targetCount = target
        var a0 = [Int32](repeating: 0, count: target), a1 = a0
        var b0 = [Float](repeating: 0, count: target), b1 = b0
        for x in 0..<target {
            let src = coordinate(x)
            let x0 = min(Int(src), source - 1)
            let x1 = x0 < source - 1 ? x0 + 1 : x0
            let l1 = Float(src - Double(x0))
            a0[x] = Int32(x0); a1[x] = Int32(x1)
            b0[x] = 1 - l1; b1[x] = l1
        }
        i0 = a0; i1 = a1; w0 = b0; w1 = b1
    }
}

/// Bilinear upsampling (or downsampling) of `[h*w, K]` channel-last maps to `[H*W, K]`.
public struct BilinearResampler: Sendable {
    public let rowsAxis: BilinearAxis
    public let colsAxis: BilinearAxis
    public var sourceHeight: Int { rowsAxis.sourceCount }
    public var sourceWidth: Int { colsAxis.sourceCount }
    public var targetHeight: Int { rowsAxis.targetCount }
    public var targetWidth: Int { colsAxis.targetCount }

    public init(sourceHeight: Int, sourceWidth: Int, targetHeight: Int, targetWidth: Int) {
        rowsAxis = BilinearAxis(source: sourceHeight, target: targetHeight)
        colsAxis = BilinearAxis(source: sourceWidth, target: targetWidth)
    }

    /// A resampler of any two axes (e.g. `CropBox.resampler`: a crop resized).
    public init(rows: BilinearAxis, cols: BilinearAxis) {
        rowsAxis = rows
        colsAxis = cols
    }

    /// Resamples `src` `[h*w, K]` into `dst` `[H*W, K]` (row-major, channel-last).
    ///
    /// Separable: rows first (`[H, w, K]` scratch of `H*w*K` floats), then columns.
    /// O(H w K + H W K). `scratch` must hold `H * w * K` floats.
    public func upsample(_ src: UnsafePointer<Float>, channels k: Int, into dst: UnsafeMutablePointer<Float>,
                         scratch: UnsafeMutablePointer<Float>) {
        let w = sourceWidth, bigH = targetHeight, bigW = targetWidth
        rowsAxis.i0.withUnsafeBufferPointer { r0 in rowsAxis.i1.withUnsafeBufferPointer { r1 in
        rowsAxis.w0.withUnsafeBufferPointer { rw0 in rowsAxis.w1.withUnsafeBufferPointer { rw1 in
        colsAxis.i0.withUnsafeBufferPointer { c0 in colsAxis.i1.withUnsafeBufferPointer { c1 in
        colsAxis.w0.withUnsafeBufferPointer { cw0 in colsAxis.w1.withUnsafeBufferPointer { cw1 in
            let rowLen = w * k
            for y in 0..<bigH {
                let a = src + Int(r0[y]) * rowLen, b = src + Int(r1[y]) * rowLen
                let p = rw0[y], q = rw1[y]
                let t = scratch + y * rowLen
                for j in 0..<rowLen { t[j] = p * a[j] + q * b[j] }
            }
            for y in 0..<bigH {
                let t = scratch + y * rowLen
                let o = dst + y * bigW * k
                for x in 0..<bigW {
                    let a = t + Int(c0[x]) * k, b = t + Int(c1[x]) * k
                    let p = cw0[x], q = cw1[x]
                    let ox = o + x * k
                    for c in 0..<k { ox[c] = p * a[c] + q * b[c] }
                }
            }
        }}}}}}}}
    }

    /// The adjoint (transpose) of `upsample`: accumulates `grad` `[H*W, K]` into `out` `[h*w, K]`
    /// (`out` is overwritten). Satisfies `<upsample(x), g> == <x, upsampleAdjoint(g)>`.
    /// `scratch` must hold `H * w * K` floats. O(H W K + H w K).
    public func upsampleAdjoint(_ grad: UnsafePointer<Float>, channels k: Int, into out: UnsafeMutablePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>) {
        let w = sourceWidth, h = sourceHeight, bigH = targetHeight, bigW = targetWidth
        let rowLen = w * k
        scratch.initialize(repeating: 0, count: bigH * rowLen)
        out.initialize(repeating: 0, count: h * rowLen)
        rowsAxis.i0.withUnsafeBufferPointer { r0 in rowsAxis.i1.withUnsafeBufferPointer { r1 in
        rowsAxis.w0.withUnsafeBufferPointer { rw0 in rowsAxis.w1.withUnsafeBufferPointer { rw1 in
        colsAxis.i0.withUnsafeBufferPointer { c0 in colsAxis.i1.withUnsafeBufferPointer { c1 in
        colsAxis.w0.withUnsafeBufferPointer { cw0 in colsAxis.w1.withUnsafeBufferPointer { cw1 in
            for y in 0..<bigH {
                let t = scratch + y * rowLen
                let g = grad + y * bigW * k
                for x in 0..<bigW {
                    let a = t + Int(c0[x]) * k, b = t + Int(c1[x]) * k
                    let p = cw0[x], q = cw1[x]
                    let gx = g + x * k
                    for c in 0..<k { a[c] += p * gx[c]; b[c] += q * gx[c] }
                }
            }
            for y in 0..<bigH {
                let a = out + Int(r0[y]) * rowLen, b = out + Int(r1[y]) * rowLen
                let p = rw0[y], q = rw1[y]
                let t = scratch + y * rowLen
                for j in 0..<rowLen { a[j] += p * t[j]; b[j] += q * t[j] }
            }
        }}}}}}}}
    }

    /// Convenience: resample a `Matrix` `[h*w, K]` to a new `[H*W, K]` matrix.
    public func upsample(_ m: Matrix) -> Matrix {
        precondition(m.rows == sourceHeight * sourceWidth,
                     "upsample: matrix has \(m.rows) rows, source grid is \(sourceHeight)x\(sourceWidth)")
        let k = m.cols
        var out = Matrix(rows: targetHeight * targetWidth, cols: k)
        var scratch = [Float](repeating: 0, count: targetHeight * sourceWidth * k)
        m.data.withUnsafeBufferPointer { s in
            out.data.withUnsafeMutableBufferPointer { d in
                scratch.withUnsafeMutableBufferPointer { t in
                    upsample(s.baseAddress!, channels: k, into: d.baseAddress!, scratch: t.baseAddress!)
                }
            }
        }
        return out
    }

    /// Convenience: the adjoint on a `Matrix` `[H*W, K]`, giving `[h*w, K]`.
    public func upsampleAdjoint(_ g: Matrix) -> Matrix {
        precondition(g.rows == targetHeight * targetWidth,
                     "upsampleAdjoint: matrix has \(g.rows) rows, target grid is \(targetHeight)x\(targetWidth)")
        let k = g.cols
        var out = Matrix(rows: sourceHeight * sourceWidth, cols: k)
        var scratch = [Float](repeating: 0, count: targetHeight * sourceWidth * k)
        g.data.withUnsafeBufferPointer { s in
            out.data.withUnsafeMutableBufferPointer { d in
                scratch.withUnsafeMutableBufferPointer { t in
                    upsampleAdjoint(s.baseAddress!, channels: k, into: d.baseAddress!, scratch: t.baseAddress!)
                }
            }
        }
        return out
    }
}
