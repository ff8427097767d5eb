import CUnsegKernels
import UnsegLinAlg
import UnsegCore

/// The vector type of the per-pixel kernels. 4 lanes: the build targets baseline x86-64 (SSE2),
/// where a wider Swift SIMD type is just several SSE registers, and 4-lane padding of the class
/// axis wastes less (27 classes -> 28 lanes, not 32).
typealias Lane = SIMD4<Float>
let laneWidth = 4
@inline(__always) func loadL(_ p: UnsafePointer<Float>) -> Lane { UnsafeRawPointer(p).loadUnaligned(as: Lane.self) }
@inline(__always) func loadL(_ p: UnsafeMutablePointer<Float>) -> Lane { UnsafeRawPointer(p).loadUnaligned(as: Lane.self) }
@inline(__always) func storeL(_ v: Lane, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lane.self)
}
@inline(__always) func hmax(_ v: Lane) -> Float { Swift.max(Swift.max(v[0], v[1]), Swift.max(v[2], v[3])) }
@inline(__always) func hsum(_ v: Lane) -> Float { (v[0] + v[1]) + (v[2] + v[3]) }

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
        let p = Lane(repeating: rw0[y]), q = Lane(repeating: rw1[y])
        var j = 0
        while j < len {
            storeL(p * loadL(a + j) + q * loadL(b + j), out + j)
            j += laneWidth
        }
    }

    /// Column interpolation of pixel `x` of an interpolated row into `pixel [kp]`; returns the lane-wise max.
    @inline(__always)
    func interpolatePixel(_ x: Int, row: UnsafePointer<Float>, kp: Int, pixel: UnsafeMutablePointer<Float>) -> Float {
        let a = row + c0[x] * kp, b = row + c1[x] * kp
        let p = Lane(repeating: cw0[x]), q = Lane(repeating: cw1[x])
        var vmax = Lane(repeating: -Float.infinity)
        var j = 0
        while j < kp {
            let z = p * loadL(a + j) + q * loadL(b + j)
            storeL(z, pixel + j)
            vmax = vmax.replacing(with: z, where: z .> vmax)
            j += laneWidth
        }
        return hmax(vmax)
    }
}

/// The fused per-pixel kernels of prototype fitting. All buffers are row-major with the
/// class axis padded to `kp` (a multiple of 8, see `PaddedLogits`).
enum EMKernels {
    /// First index `j` with `pixel[j] == m` (scanning a vector at a time); 0 if none (NaN).
    @inline(__always)
    static func firstIndex(of m: Float, in pixel: UnsafePointer<Float>, kp: Int) -> Int {
        var j = 0
        let mv = Lane(repeating: m)
        while j < kp {
            let hit = loadL(pixel + j) .== mv
            if any(hit) {
                for l in 0..<laneWidth where hit[l] { return j + l }
            }
            j += laneWidth
        }
        return 0
    }

    /// The CPU runs the C kernels' AVX2 paths.
    static let hasAVX2 = unseg_em_avx2_available() != 0

    /// Argmax (first on ties) of bilinearly upsampled logits, without materialising them.
    /// `low [h*w, kp]`, `rowScratch [w*kp]`, `pixel [kp]`, `out [H*W]`. O(H w kp + H W kp).
    static func argmaxUpsampled(low: UnsafePointer<Float>, resampler: BilinearResampler, paddedWidth kp: Int,
                                rowScratch: UnsafeMutablePointer<Float>, pixel: UnsafeMutablePointer<Float>,
                                out: UnsafeMutablePointer<UInt8>) {
        let t = ResampleTable(resampler)
        argmaxUpsampled(low: low, table: t, kp: kp, rowScratch: rowScratch, pixel: pixel, out: out)
    }

    /// With `masks [H*W]`, pixels of mask 0 (background) get class 0 unexamined, and rows without
    /// a mask pixel skip their interpolation: the majority vote ignores them. `vectorised` runs the
    /// C kernel (AVX2, the same classes) where the CPU has it.
    static func argmaxUpsampled(low: UnsafePointer<Float>, table t: ResampleTable, kp: Int,
                                rowScratch: UnsafeMutablePointer<Float>, pixel: UnsafeMutablePointer<Float>,
                                out: UnsafeMutablePointer<UInt8>, masks: UnsafePointer<UInt8>? = nil,
                                vectorised: Bool = EMKernels.hasAVX2) {
        if vectorised {
            var a = unseg_em_argmax_args(
                low: low, h: Int64(t.h), w: Int64(t.w), H: Int64(t.H), W: Int64(t.W), kp: Int64(kp),
                r0: UnsafeRawPointer(t.r0).assumingMemoryBound(to: Int64.self), r1: UnsafeRawPointer(t.r1).assumingMemoryBound(to: Int64.self),
                c0: UnsafeRawPointer(t.c0).assumingMemoryBound(to: Int64.self), c1: UnsafeRawPointer(t.c1).assumingMemoryBound(to: Int64.self),
                rw0: t.rw0, rw1: t.rw1, cw0: t.cw0, cw1: t.cw1, masks: masks, row_scratch: rowScratch, out: out)
            if unseg_em_argmax_upsampled(&a) == 0 { return }
        }
        let W = t.W
        for y in 0..<t.H {
            let o = out + y * W
            if let m = masks, !(0..<W).contains(where: { m[y * W + $0] != 0 }) {
                for x in 0..<W { o[x] = 0 }
                continue
            }
            t.interpolateRow(y, low: low, kp: kp, out: rowScratch)
            for x in 0..<W {
                if let m = masks, m[y * W + x] == 0 { o[x] = 0; continue }
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

    /// What the batch reduction needs of a pass (everything but the gradient slots).
    struct PassStats: Sendable, WireCodable {
        var slotLabels: [Int]
        var softmaxSum: [Double]
        var nllSum: [Double]
        var labelled: Int
        var pixels: Int
        init(_ p: ImagePass) {
            slotLabels = p.slotLabels; softmaxSum = p.softmaxSum; nllSum = p.nllSum; labelled = p.labelled; pixels = p.pixels
        }
        func encode(into w: inout WireWriter) { w.put(slotLabels); w.put(softmaxSum); w.put(nllSum); w.put(labelled); w.put(pixels) }
        init(wire r: inout WireReader) throws {
            slotLabels = try r.ints(); softmaxSum = try r.doubles(); nllSum = try r.doubles(); labelled = try r.int(); pixels = try r.int()
        }
    }

    /// The M-step pass of one image: upsampled logits (fused), softmax, per-class softmax sums,
    /// NLL sums and the split low-resolution gradient.
    ///
    /// `low [h*w, kp]` running-model logits, `labels [H*W]` pseudo-labels (255 ignore).
    /// O(H w kp + H W kp) plus `exp` of `H W kp` values (vectorised) and one scalar `log` per labelled pixel.
    /// The C kernel's 8-lane AVX2 path runs when the CPU has it (same bits as this Swift path, which
    /// `vectorised: false` forces; a test compares them).
    static func mStepPass(low: UnsafePointer<Float>, table t: ResampleTable, kp: Int, classCount k: Int,
                          labels: UnsafePointer<UInt8>, vectorised: Bool = EMKernels.hasAVX2) -> ImagePass {
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
        let slotCount = pass.slotLabels.count
        let rowLen = w * kp
        let rowScratch = UnsafeMutablePointer<Float>.allocate(capacity: rowLen)
        let pixel = UnsafeMutablePointer<Float>.allocate(capacity: kp)
        let rowSum = UnsafeMutablePointer<Float>.allocate(capacity: kp)
        // Column-adjoint accumulators of the current output row, one `[w, kp]` row per slot.
        let rowGrad = UnsafeMutablePointer<Float>.allocate(capacity: max(slotCount, 1) * rowLen)
        rowGrad.initialize(repeating: 0, count: max(slotCount, 1) * rowLen)
        var touched = [Bool](repeating: false, count: max(slotCount, 1))
        defer { rowScratch.deallocate(); pixel.deallocate(); rowSum.deallocate(); rowGrad.deallocate() }
        if vectorised {
            var done = false
            slotOf.withUnsafeBufferPointer { so in
            pass.slots.withUnsafeMutableBufferPointer { sp in
            pass.nllSum.withUnsafeMutableBufferPointer { nll in
            pass.softmaxSum.withUnsafeMutableBufferPointer { ss in
                var flags = [UInt8](repeating: 0, count: max(slotCount, 1))
                flags.withUnsafeMutableBufferPointer { tch in
                    let rowPixels = UnsafeMutablePointer<Float>.allocate(capacity: W * kp + 3 * W)
                    defer { rowPixels.deallocate() }
                    var a = unseg_em_pass_args(
                        low: low, h: Int64(t.h), w: Int64(w), H: Int64(H), W: Int64(W), kp: Int64(kp),
                        r0: UnsafeRawPointer(t.r0).assumingMemoryBound(to: Int64.self), r1: UnsafeRawPointer(t.r1).assumingMemoryBound(to: Int64.self),
                        c0: UnsafeRawPointer(t.c0).assumingMemoryBound(to: Int64.self), c1: UnsafeRawPointer(t.c1).assumingMemoryBound(to: Int64.self),
                        rw0: t.rw0, rw1: t.rw1, cw0: t.cw0, cw1: t.cw1, labels: labels,
                        slot_of: UnsafeRawPointer(so.baseAddress!).assumingMemoryBound(to: Int64.self), slot_count: Int64(slotCount),
                        slots: sp.baseAddress, nll: nll.baseAddress, softmax_sum: ss.baseAddress, row_scratch: rowScratch,
                        row_pixels: rowPixels, row_sum: rowSum, row_grad: rowGrad, touched: tch.baseAddress, labelled: 0)
                    if unseg_em_mstep_pass(&a) == 0 { done = true; labelled = Int(a.labelled) }
                }
            }}}}
            if done {
                pass.labelled = labelled
                return pass
            }
        }
        slotOf.withUnsafeBufferPointer { so in
        pass.slots.withUnsafeMutableBufferPointer { sp in
        pass.nllSum.withUnsafeMutableBufferPointer { nll in
        pass.softmaxSum.withUnsafeMutableBufferPointer { ss in
        touched.withUnsafeMutableBufferPointer { tch in
            let slotBase = sp.baseAddress
            let slotStride = hw * kp
            for y in 0..<H {
                t.interpolateRow(y, low: low, kp: kp, out: rowScratch)
                rowSum.initialize(repeating: 0, count: kp)
                let lrow = labels + y * W
                for x in 0..<W {
                    let m = t.interpolatePixel(x, row: rowScratch, kp: kp, pixel: pixel)
                    let lab = Int(lrow[x])
                    let zy: Float = lab != 255 ? pixel[lab] - m : 0
                    let mv = Lane(repeating: m)
                    var sacc = Lane()
                    var j = 0
                    while j < kp {
                        // Terms below e^-60 (and the padding lanes) are flushed to exactly 0: tiny
                        // softmax values times bilinear weights would otherwise become denormals,
                        // whose arithmetic is ~100x slower on x86 (measured: 10x slower steps).
                        let d = loadL(pixel + j) - mv
                        let e = FastMath.exp(d).replacing(with: 0, where: d .< -60)
                        storeL(e, pixel + j)
                        sacc += e
                        j += laneWidth
                    }
                    let s = hsum(sacc)
                    let inv = Lane(repeating: 1 / s)
                    j = 0
                    while j < kp {
                        let p = loadL(pixel + j) * inv
                        storeL(p, pixel + j)
                        storeL(loadL(rowSum + j) + p, rowSum + j)
                        j += laneWidth
                    }
                    if lab == 255 { continue }
                    labelled += 1
                    let slot = so[lab]
                    nll[slot] += Double(LibM.logf(s) - zy)
                    pixel[lab] -= 1
                    // Column adjoint: (softmax - onehot) to the two source columns of this row.
                    tch[slot] = true
                    let r = rowGrad + slot * rowLen
                    let d0 = r + t.c0[x] * kp, d1 = r + t.c1[x] * kp
                    let px = Lane(repeating: t.cw0[x]), qx = Lane(repeating: t.cw1[x])
                    j = 0
                    while j < kp {
                        let g = loadL(pixel + j)
                        storeL(loadL(d0 + j) + px * g, d0 + j)
                        storeL(loadL(d1 + j) + qx * g, d1 + j)
                        j += laneWidth
                    }
                }
                for j in 0..<kp { ss[j] += Double(rowSum[j]) }
                // Row adjoint of the touched slots: add the row into the two source rows.
                let py = Lane(repeating: t.rw0[y]), qy = Lane(repeating: t.rw1[y])
                for slot in 0..<slotCount where tch[slot] {
                    tch[slot] = false
                    let r = rowGrad + slot * rowLen
                    let base = slotBase! + slot * slotStride
                    let d0 = base + t.r0[y] * rowLen, d1 = base + t.r1[y] * rowLen
                    var j = 0
                    while j < rowLen {
                        let g = loadL(r + j)
                        storeL(loadL(d0 + j) + py * g, d0 + j)
                        storeL(loadL(d1 + j) + qy * g, d1 + j)
                        storeL(Lane(), r + j)
                        j += laneWidth
                    }
                }
            }
        }}}}}
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
                    let a = Lane(repeating: weights[lab] * scale)
                    let src = s.baseAddress! + si * len
                    var j = 0
                    while j < len {
                        storeL(loadL(o.baseAddress! + j) + a * loadL(src + j), o.baseAddress! + j)
                        j += laneWidth
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
