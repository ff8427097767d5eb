import UnsegLinAlg

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
@inline(__always) func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
@inline(__always) func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// Bilinear tables of a `BilinearResampler` as raw pointers, so the per-pixel loops
/// need no closures. Owns its memory.
final class ResampleTable {
    let h: Int, w: Int, H: Int, W: Int
    let r0: UnsafeMutablePointer<Int>, r1: UnsafeMutablePointer<Int>
    let rw0: UnsafeMutablePointer<Float>, rw1: UnsafeMutablePointer<Float>
    let c0: UnsafeMutablePointer<Int>, c1: UnsafeMutablePointer<Int>
    let cw0: UnsafeMutablePointer<Float>, cw1: UnsafeMutablePointer<Float>

    init(_ r: BilinearResampler) {
        h = r.sourceHeight; w = r.sourceWidth; H = r.targetHeight; W = r.targetWidth
        r0 = .allocate(capacity: H); r1 = .allocate(capacity: H)
        rw0 = .allocate(capacity: H); rw1 = .allocate(capacity: H)
        c0 = .allocate(capacity: W); c1 = .allocate(capacity: W)
        cw0 = .allocate(capacity: W); cw1 = .allocate(capacity: W)
        for y in 0..<H {
            r0[y] = Int(r.rowsAxis.i0[y]); r1[y] = Int(r.rowsAxis.i1[y])
            rw0[y] = r.rowsAxis.w0[y]; rw1[y] = r.rowsAxis.w1[y]
        }
        for x in 0..<W {
            c0[x] = Int(r.colsAxis.i0[x]); c1[x] = Int(r.colsAxis.i1[x])
            cw0[x] = r.colsAxis.w0[x]; cw1[x] = r.colsAxis.w1[x]
        }
    }
    deinit {
        r0.deallocate(); r1.deallocate(); rw0.deallocate(); rw1.deallocate()
        c0.deallocate(); c1.deallocate(); cw0.deallocate(); cw1.deallocate()
    }

    /// Interpolates output row `y` along the rows axis: `out [w, kp] = rw0 low[r0] + rw1 low[r1]`.
    @inline(__always)
    func interpolateRow(_ y: Int, low: UnsafePointer<Float>, kp: Int, out: UnsafeMutablePointer<Float>) {
        let len = w * kp
        let a = low + r0[y] * len, b = low + r1[y] * len
        let p = SIMD8<Float>(repeating: rw0[y]), q = SIMD8<Float>(repeating: rw1[y])
        var j = 0
        while j < len {
            store8(p * load8(a + j) + q * load8(b + j), out + j)
            j += 8
        }
    }

    /// Column interpolation of pixel `x` of an interpolated row into `pixel [kp]`; returns the lane-wise max.
    @inline(__always)
    func interpolatePixel(_ x: Int, row: UnsafePointer<Float>, kp: Int, pixel: UnsafeMutablePointer<Float>) -> Float {
        let a = row + c0[x] * kp, b = row + c1[x] * kp
        let p = SIMD8<Float>(repeating: cw0[x]), q = SIMD8<Float>(repeating: cw1[x])
        var vmax = SIMD8<Float>(repeating: -Float.infinity)
        var j = 0
        while j < kp {
            let z = p * load8(a + j) + q * load8(b + j)
            store8(z, pixel + j)
            vmax = pointwiseMax(vmax, z)
            j += 8
        }
        return vmax.max()
    }
}

/// The fused per-pixel kernels of prototype fitting. All buffers are row-major with the
/// class axis padded to `kp` (a multiple of 8, see `PaddedLogits`).
enum EMKernels {
    /// First index `j` with `pixel[j] == m` (scanning 8 lanes at a time); 0 if none (NaN).
    @inline(__always)
    static func firstIndex(of m: Float, in pixel: UnsafePointer<Float>, kp: Int) -> Int {
        var j = 0
        let mv = SIMD8<Float>(repeating: m)
        while j < kp {
            let hit = load8(pixel + j) .== mv
            if any(hit) {
                for l in 0..<8 where hit[l] { return j + l }
            }
            j += 8
        }
        return 0
    }

    /// Argmax (first on ties) of bilinearly upsampled logits, without materialising them.
    /// `low [h*w, kp]`, `rowScratch [w*kp]`, `pixel [kp]`, `out [H*W]`. O(H w kp + H W kp).
    static func argmaxUpsampled(low: UnsafePointer<Float>, resampler: BilinearResampler, paddedWidth kp: Int,
                                rowScratch: UnsafeMutablePointer<Float>, pixel: UnsafeMutablePointer<Float>,
                                out: UnsafeMutablePointer<UInt8>) {
        let t = ResampleTable(resampler)
        argmaxUpsampled(low: low, table: t, kp: kp, rowScratch: rowScratch, pixel: pixel, out: out)
    }

    static func argmaxUpsampled(low: UnsafePointer<Float>, table t: ResampleTable, kp: Int,
                                rowScratch: UnsafeMutablePointer<Float>, pixel: UnsafeMutablePointer<Float>,
                                out: UnsafeMutablePointer<UInt8>) {
        let W = t.W
        for y in 0..<t.H {
            t.interpolateRow(y, low: low, kp: kp, out: rowScratch)
            let o = out + y * W
            for x in 0..<W {
                let m = t.interpolatePixel(x, row: rowScratch, kp: kp, pixel: pixel)
                o[x] = UInt8(truncatingIfNeeded: firstIndex(of: m, in: pixel, kp: kp))
            }
        }
    }

    /// Majority vote of `classMap` inside each mask: returns per-pixel pseudo-labels (255 = ignore).
    ///
    /// `masks [H*W]`: 0 = background (ignored), 1...255 = mask index. Each mask takes its most
    /// frequent class (ties: lowest class id); pixels outside every mask get 255. O(H W + M K).
    static func majorityVote(classMap: UnsafePointer<UInt8>, masks: UnsafePointer<UInt8>, count n: Int,
                             classCount k: Int, out: UnsafeMutablePointer<UInt8>) {
        var counts = [Int32](repeating: 0, count: 256 * k)
        var maxMask = 0
        counts.withUnsafeMutableBufferPointer { c in
            for i in 0..<n {
                let m = Int(masks[i])
                if m == 0 { continue }
                if m > maxMask { maxMask = m }
                c[m * k + Int(classMap[i])] += 1
            }
            var label = [UInt8](repeating: 255, count: 256)
            if maxMask > 0 {
                for m in 1...maxMask {
                    var best = -1, bestCount: Int32 = 0
                    for j in 0..<k where c[m * k + j] > bestCount { bestCount = c[m * k + j]; best = j }
                    if best >= 0 { label[m] = UInt8(best) }
                }
            }
            for i in 0..<n { out[i] = label[Int(masks[i])] }
        }
    }

    /// Per-image results of the M-step forward/backward pass, before the batch-wide class
    /// weights are known. The gradient w.r.t. the low-resolution logits is kept split by
    /// pseudo-label ("slots"), so the weights `w_k` can be applied afterwards:
    /// `dL/dlogits_low = (1/N) sum_s w_{label(s)} slots[s]`.
    struct ImagePass {
        /// Labels present (one per slot), ascending.
        var slotLabels: [Int] = []
        /// `[slots, h*w, kp]`: `upsample^T` of `(softmax - onehot)` over the pixels of each label.
        var slots: [Float] = []
        /// Sum over all `H*W` pixels of the softmax, `[kp]` (Double).
        var softmaxSum: [Double] = []
        /// Per slot: sum of `-log p_label` over its pixels.
        var nllSum: [Double] = []
        var labelled: Int = 0
        var pixels: Int = 0
    }

    /// The M-step pass of one image: upsampled logits (fused), softmax, per-class softmax sums,
    /// NLL sums and the split low-resolution gradient.
    ///
    /// `low [h*w, kp]` running-model logits, `labels [H*W]` pseudo-labels (255 ignore).
    /// O(H w kp + H W kp) plus `exp` of `H W kp` values (vectorised) and one scalar `log` per labelled pixel.
    static func mStepPass(low: UnsafePointer<Float>, table t: ResampleTable, kp: Int, classCount k: Int,
                          labels: UnsafePointer<UInt8>) -> ImagePass {
        let hw = t.h * t.w, W = t.W, H = t.H, w = t.w
        // Slots for the labels present.
        var present = [Bool](repeating: false, count: 256)
        for i in 0..<(H * W) { present[Int(labels[i])] = true }
        var slotOf = [Int](repeating: -1, count: 256)
        var pass = ImagePass()
        for j in 0..<k where present[j] { slotOf[j] = pass.slotLabels.count; pass.slotLabels.append(j) }
        pass.slots = [Float](repeating: 0, count: pass.slotLabels.count * hw * kp)
        pass.nllSum = [Double](repeating: 0, count: pass.slotLabels.count)
        pass.softmaxSum = [Double](repeating: 0, count: kp)
        pass.pixels = H * W
        var labelled = 0
        let rowScratch = UnsafeMutablePointer<Float>.allocate(capacity: w * kp)
        let pixel = UnsafeMutablePointer<Float>.allocate(capacity: kp)
        let rowSum = UnsafeMutablePointer<Float>.allocate(capacity: kp)
        defer { rowScratch.deallocate(); pixel.deallocate(); rowSum.deallocate() }
        slotOf.withUnsafeBufferPointer { so in
        pass.slots.withUnsafeMutableBufferPointer { sp in
        pass.nllSum.withUnsafeMutableBufferPointer { nll in
        pass.softmaxSum.withUnsafeMutableBufferPointer { ss in
            let slotBase = sp.baseAddress
            let slotStride = hw * kp
            for y in 0..<H {
                t.interpolateRow(y, low: low, kp: kp, out: rowScratch)
                rowSum.initialize(repeating: 0, count: kp)
                let ry0 = t.r0[y] * w, ry1 = t.r1[y] * w
                let py = SIMD8<Float>(repeating: t.rw0[y]), qy = SIMD8<Float>(repeating: t.rw1[y])
                let lrow = labels + y * W
                for x in 0..<W {
                    let m = t.interpolatePixel(x, row: rowScratch, kp: kp, pixel: pixel)
                    let lab = Int(lrow[x])
                    let zy: Float = lab != 255 ? pixel[lab] - m : 0
                    let mv = SIMD8<Float>(repeating: m)
                    var sacc = SIMD8<Float>()
                    var j = 0
                    while j < kp {
                        let e = FastMath.exp(load8(pixel + j) - mv)
                        store8(e, pixel + j)
                        sacc += e
                        j += 8
                    }
                    let s = sacc.sum()
                    let inv = SIMD8<Float>(repeating: 1 / s)
                    j = 0
                    while j < kp {
                        let p = load8(pixel + j) * inv
                        store8(p, pixel + j)
                        store8(load8(rowSum + j) + p, rowSum + j)
                        j += 8
                    }
                    if lab == 255 { continue }
                    labelled += 1
                    let slot = so[lab]
                    nll[slot] += Double(_logf(s) - zy)
                    pixel[lab] -= 1
                    // Scatter (softmax - onehot) to the 4 bilinear source cells (the adjoint of upsampling).
                    let base = slotBase! + slot * slotStride
                    let cx0 = t.c0[x], cx1 = t.c1[x]
                    let px = SIMD8<Float>(repeating: t.cw0[x]), qx = SIMD8<Float>(repeating: t.cw1[x])
                    let d00 = base + (ry0 + cx0) * kp, d01 = base + (ry0 + cx1) * kp
                    let d10 = base + (ry1 + cx0) * kp, d11 = base + (ry1 + cx1) * kp
                    let w00 = py * px, w01 = py * qx, w10 = qy * px, w11 = qy * qx
                    j = 0
                    while j < kp {
                        let g = load8(pixel + j)
                        store8(load8(d00 + j) + w00 * g, d00 + j)
                        store8(load8(d01 + j) + w01 * g, d01 + j)
                        store8(load8(d10 + j) + w10 * g, d10 + j)
                        store8(load8(d11 + j) + w11 * g, d11 + j)
                        j += 8
                    }
                }
                for j in 0..<kp { ss[j] += Double(rowSum[j]) }
            }
        }}}}
        pass.labelled = labelled
        return pass
    }

    /// Combines the slots of one image with the class weights: `out [h*w, kp] = scale * sum_s w[label_s] slots[s]`.
    static func combineSlots(_ pass: ImagePass, weights: [Float], scale: Float, cells: Int, kp: Int) -> [Float] {
        var out = [Float](repeating: 0, count: cells * kp)
        let len = cells * kp
        out.withUnsafeMutableBufferPointer { o in
            pass.slots.withUnsafeBufferPointer { s in
                for (si, lab) in pass.slotLabels.enumerated() {
                    let a = SIMD8<Float>(repeating: weights[lab] * scale)
                    let src = s.baseAddress! + si * len
                    var j = 0
                    while j < len {
                        store8(load8(o.baseAddress! + j) + a * load8(src + j), o.baseAddress! + j)
                        j += 8
                    }
                }
            }
        }
        return out
    }

    /// Horizontal flip of a `[h*w, c]` channel-last grid (row-major cells).
    static func flipRows(_ src: [Float], h: Int, w: Int, c: Int) -> [Float] {
        var out = [Float](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0..<h {
                    for x in 0..<w {
                        (o.baseAddress! + (y * w + x) * c).update(from: s.baseAddress! + (y * w + (w - 1 - x)) * c, count: c)
                    }
                }
            }
        }
        return out
    }

    /// Horizontal flip of a `[H*W]` byte map.
    static func flipBytes(_ src: [UInt8], h: Int, w: Int) -> [UInt8] {
        var out = src
        for y in 0..<h { for x in 0..<w { out[y * w + x] = src[y * w + (w - 1 - x)] } }
        return out
    }
}
