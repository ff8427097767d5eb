import UnsegLinAlg
import UnsegCore

/// K class prototypes with scales: `logit_k(x) = g_k * (v_k . x) / |v_k|` (PyTorch's
/// `weight_norm` parametrisation of a 1x1 convolution without bias, as in PriMaPs).
///
/// `directions` is `[K, C]` (row k is `v_k`, any non-zero norm), `gains` is `[K]`.
/// The effective weight row is `W'_k = g_k v_k / max(|v_k|, 1e-12)`.
///
/// Logits at label resolution are computed at feature resolution and upsampled:
/// bilinear upsampling `U` is linear and the logits are linear in the features, so
/// `U(F) W'^T == U(F W'^T)` exactly in real arithmetic (Float results differ only by
/// rounding, tested to 1e-5 relative); upsampling K channels instead of C is 14x
/// cheaper at C = 384, K = 27.
public struct PrototypeModel: Sendable, Equatable {
    /// `[K, C]`, row k is the unnormalised direction `v_k`.
    public var directions: Matrix
    /// `[K]`, the scales `g_k`.
    public var gains: [Float]

    public var classCount: Int { directions.rows }
    public var channelCount: Int { directions.cols }

    /// Wraps directions `[K, C]` and gains `[K]` (defaults to all ones).
    public init(directions: Matrix, gains: [Float]? = nil) {
        let g = gains ?? [Float](repeating: 1, count: directions.rows)
        precondition(g.count == directions.rows,
                     "PrototypeModel: \(directions.rows) directions but \(g.count) gains")
        self.directions = directions
        self.gains = g
    }

    /// Effective weights `W'` `[K, C]`: row k is `g_k v_k / |v_k|`. O(K C).
    public func effectiveWeights() -> Matrix {
        var w = directions
        let norms = directions.rowNorms()
        let c = channelCount
        w.data.withUnsafeMutableBufferPointer { p in
            for k in 0..<classCount {
                let s = gains[k] / max(norms[k], 1e-12)
                for j in 0..<c { p[k * c + j] *= s }
            }
        }
        return w
    }

    /// Number of trainable parameters (`K C + K`), the length of `flatParameters`.
    public var parameterCount: Int { classCount * channelCount + classCount }

    /// Parameters flattened as `[v_0 .. v_{K-1}, g_0 .. g_{K-1}]` (the order Adam's state follows).
    public var flatParameters: [Float] {
        get { directions.data + gains }
        set {
            precondition(newValue.count == parameterCount,
                         "flatParameters: got \(newValue.count) values, model has \(parameterCount)")
            let kc = classCount * channelCount
            directions.data = Array(newValue[0..<kc])
            gains = Array(newValue[kc...])
        }
    }

    /// Logits at feature resolution, `[h*w, K]` = `F W'^T` (one sgemm). O(h w C K).
    public func lowResolutionLogits(features: Matrix) -> Matrix {
        precondition(features.cols == channelCount,
                     "logits: features have \(features.cols) channels, prototypes \(channelCount)")
        return BLAS.matmul(features, effectiveWeights(), transB: true)
    }

    /// Logits at label resolution `[H*W, K]`: low-resolution logits upsampled bilinearly
    /// (PyTorch `align_corners=False`). Exact by linearity (see the type's note).
    public func logits(features: Matrix, h: Int, w: Int, H: Int, W: Int) -> Matrix {
        precondition(features.rows == h * w, "logits: features have \(features.rows) rows, grid is \(h)x\(w)")
        let r = BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: H, targetWidth: W)
        return r.upsample(lowResolutionLogits(features: features))
    }

    /// Cosine scores of the cosine k-means head at label resolution, `[H*W, K]`: the features
    /// upsampled bilinearly (PyTorch `align_corners=False`), each pixel's feature L2-normalised
    /// (eps 1e-12), dotted with the unit prototype directions (gains ignored, g = 1), as the
    /// reference's `ConvClusterProbe` on interpolated features. Exact without materialising the
    /// `[H*W, C]` upsampled features: the numerator is the upsampled `F U^T` (linearity), the
    /// norm of a pixel's feature comes from the dot products of its (at most) four source cells.
    /// O(h w C K + h w C + H W K).
    public func cosineScores(features: Matrix, h: Int, w: Int, H: Int, W: Int) -> Matrix {
        precondition(features.rows == h * w && features.cols == channelCount,
                     "cosineScores: features [\(features.rows), \(features.cols)] for a \(h)x\(w) grid of \(channelCount) channels")
        let c = channelCount
        let r = BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: H, targetWidth: W)
        var num = r.upsample(BLAS.matmul(features, directions.rowNormalized(), transB: true))
        // Dot products of each cell with itself and its right, lower, lower-right neighbours, and
        // of its right neighbour with its lower neighbour (clamped at the borders).
        var self2 = [Double](repeating: 0, count: h * w), right = self2, down = self2, diag = self2, anti = self2
        features.data.withUnsafeBufferPointer { f in
            func dot(_ a: Int, _ b: Int) -> Double { Double(Reduce.dot(f.baseAddress! + a * c, f.baseAddress! + b * c, c)) }
            for y in 0..<h {
                let y1 = min(y + 1, h - 1)
                for x in 0..<w {
                    let x1 = min(x + 1, w - 1), i = y * w + x
                    self2[i] = dot(i, i)
                    right[i] = dot(i, y * w + x1)
                    down[i] = dot(i, y1 * w + x)
                    diag[i] = dot(i, y1 * w + x1)
                    anti[i] = dot(y * w + x1, y1 * w + x)
                }
            }
        }
        let k = classCount
        let ra = r.rowsAxis, ca = r.colsAxis
        num.data.withUnsafeMutableBufferPointer { out in
            for Y in 0..<H {
                let r0 = Int(ra.i0[Y]), r1 = Int(ra.i1[Y])
                let p = Double(ra.w0[Y]), q = Double(ra.w1[Y])
                for X in 0..<W {
                    let c0 = Int(ca.i0[X]), c1 = Int(ca.i1[X])
                    let pp = Double(ca.w0[X]), qq = Double(ca.w1[X])
                    let a00 = p * pp, a01 = p * qq, a10 = q * pp, a11 = q * qq
                    let i00 = r0 * w + c0, i01 = r0 * w + c1, i10 = r1 * w + c0, i11 = r1 * w + c1
                    let sameR = r1 == r0, sameC = c1 == c0
                    let d0001 = sameC ? self2[i00] : right[i00]
                    let d0010 = sameR ? self2[i00] : down[i00]
                    let d0011 = sameR ? (sameC ? self2[i00] : right[i00]) : (sameC ? down[i00] : diag[i00])
                    let d0110 = sameR ? (sameC ? self2[i00] : right[i00]) : (sameC ? down[i00] : anti[i00])
                    let d0111 = sameR ? self2[i01] : down[i01]
                    let d1011 = sameC ? self2[i10] : right[i10]
                    var n2 = a00 * a00 * self2[i00] + a01 * a01 * self2[i01] + a10 * a10 * self2[i10] + a11 * a11 * self2[i11]
                    n2 += 2 * (a00 * a01 * d0001 + a00 * a10 * d0010 + a00 * a11 * d0011
                               + a01 * a10 * d0110 + a01 * a11 * d0111 + a10 * a11 * d1011)
                    let inv = Float(1 / max(max(n2, 0).squareRoot(), 1e-12))   // rounding can make n2 slightly negative
                    let row = out.baseAddress! + (Y * W + X) * k
                    for j in 0..<k { row[j] *= inv }
                }
            }
        }
        return num
    }

    /// Per-pixel class (argmax of the label-resolution logits, first index on ties), `[H*W]`.
    /// Fused: upsampling and argmax in one pass without materialising `[H*W, K]`. O(h w C K + H W K).
    /// Needs K <= 256.
    public func predict(features: Matrix, h: Int, w: Int, H: Int, W: Int) -> [UInt8] {
        precondition(classCount <= 256, "predict: \(classCount) classes do not fit UInt8 labels")
        precondition(features.rows == h * w, "predict: features have \(features.rows) rows, grid is \(h)x\(w)")
        let kp = PaddedLogits.paddedWidth(classCount)
        var low = PaddedLogits.compute(features: features, weights: effectiveWeights(), paddedWidth: kp)
        var out = [UInt8](repeating: 0, count: H * W)
        let r = BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: H, targetWidth: W)
        var rowScratch = [Float](repeating: 0, count: w * kp)
        var pixel = [Float](repeating: 0, count: kp)
        low.withUnsafeMutableBufferPointer { lp in
            rowScratch.withUnsafeMutableBufferPointer { rs in
                pixel.withUnsafeMutableBufferPointer { px in
                    out.withUnsafeMutableBufferPointer { o in
                        EMKernels.argmaxUpsampled(low: lp.baseAddress!, resampler: r, paddedWidth: kp,
                                                  rowScratch: rs.baseAddress!, pixel: px.baseAddress!,
                                                  out: o.baseAddress!)
                    }
                }
            }
        }
        return out
    }

    /// Gradients w.r.t. `v` and `g` from the gradient `G` `[K, C]` w.r.t. the effective
    /// weights: `dL/dg_k = G_k . u_k`, `dL/dv_k = (g_k / |v_k|) (G_k - (G_k . u_k) u_k)`,
    /// `u_k = v_k / |v_k|`. Returned flattened in `flatParameters` order. O(K C).
    public func chainGradient(effectiveGradient g: Matrix) -> [Float] {
        precondition(g.rows == classCount && g.cols == channelCount,
                     "chainGradient: G is [\(g.rows), \(g.cols)], model is [\(classCount), \(channelCount)]")
        let c = channelCount, kc = classCount * c
        var out = [Float](repeating: 0, count: parameterCount)
        directions.data.withUnsafeBufferPointer { v in
            g.data.withUnsafeBufferPointer { gp in
                out.withUnsafeMutableBufferPointer { o in
                    for k in 0..<classCount {
                        let vk = v.baseAddress! + k * c, gk = gp.baseAddress! + k * c
                        let norm = max(Reduce.dot(vk, vk, c).squareRoot(), 1e-12)
                        let gu = Reduce.dot(gk, vk, c) / norm
                        o[kc + k] = gu
                        let s = gains[k] / norm
                        for j in 0..<c { o[k * c + j] = s * (gk[j] - gu * vk[j] / norm) }
                    }
                }
            }
        }
        return out
    }
}

/// Logit buffers with the class axis padded to a multiple of the vector width (`paddedWidth`),
/// so the per-pixel loops run on whole vectors. Padding lanes hold `padValue`
/// (a large negative number: they never win an argmax and their softmax weight is ~1e-38).
enum PaddedLogits {
    static let padValue: Float = -1e30

    static func paddedWidth(_ k: Int) -> Int { (k + laneWidth - 1) / laneWidth * laneWidth }

    /// `[rows, kp]` buffer: `features [rows, C] x weights^T [C, K]` in the first K columns.
    static func compute(features: Matrix, weights: Matrix, paddedWidth kp: Int) -> [Float] {
        var out = [Float](repeating: padValue, count: features.rows * kp)
        computeInto(features: features, weights: weights, paddedWidth: kp, out: &out)
        return out
    }

    /// The logits of two prototype sets from one product: `stacked` is `[A; B]` (`[2K, C]`, see
    /// `stack`). One `[rows, C] x [C, 2K]` sgemm packs the features once instead of twice. The
    /// values equal two separate products' up to rounding (OpenBLAS blocks a 2K-wide product
    /// differently); every call of a run takes this path, so runs stay deterministic.
    static func computePair(features: Matrix, stacked: Matrix, paddedWidth kp: Int) -> (first: [Float], second: [Float]) {
        let n = features.rows, k2 = stacked.rows, c = features.cols, k = k2 / 2
        precondition(stacked.cols == c && k2 % 2 == 0 && k <= kp, "logits: features [\(n), \(c)] vs stacked prototypes [\(k2), \(stacked.cols)]")
        var both = [Float](repeating: 0, count: n * k2)
        features.data.withUnsafeBufferPointer { f in
            stacked.data.withUnsafeBufferPointer { wp in
                both.withUnsafeMutableBufferPointer { o in
                    BLAS.sgemm(transA: false, transB: true, m: n, n: k2, k: c, alpha: 1,
                               a: f.baseAddress!, lda: max(c, 1), b: wp.baseAddress!, ldb: max(c, 1),
                               beta: 0, c: o.baseAddress!, ldc: max(k2, 1))
                }
            }
        }
        var a = [Float](repeating: padValue, count: n * kp), b = [Float](repeating: padValue, count: n * kp)
        both.withUnsafeBufferPointer { src in
            a.withUnsafeMutableBufferPointer { pa in
                b.withUnsafeMutableBufferPointer { pb in
                    for i in 0..<n {
                        let r = src.baseAddress! + i * k2
                        (pa.baseAddress! + i * kp).update(from: r, count: k)
                        (pb.baseAddress! + i * kp).update(from: r + k, count: k)
                    }
                }
            }
        }
        return (a, b)
    }

    /// `[A; B]`: the rows of two `[K, C]` prototype matrices, for `computePair`.
    static func stack(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols, "stack: [\(a.rows), \(a.cols)] vs [\(b.rows), \(b.cols)]")
        return Matrix(rows: 2 * a.rows, cols: a.cols, data: a.data + b.data)
    }

    static func computeInto(features: Matrix, weights: Matrix, paddedWidth kp: Int, out: inout [Float]) {
        let n = features.rows, k = weights.rows, c = features.cols
        precondition(weights.cols == c, "logits: features [\(n), \(c)] vs prototypes [\(k), \(weights.cols)]")
        precondition(out.count == n * kp, "logits buffer has \(out.count) floats, needs \(n * kp)")
        features.data.withUnsafeBufferPointer { f in
            weights.data.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { o in
                    if k < kp { for i in 0..<n { for j in k..<kp { o[i * kp + j] = padValue } } }
                    BLAS.sgemm(transA: false, transB: true, m: n, n: k, k: c, alpha: 1,
                               a: f.baseAddress!, lda: max(c, 1), b: wp.baseAddress!, ldb: max(c, 1),
                               beta: 0, c: o.baseAddress!, ldc: kp)
                }
            }
        }
    }
}
