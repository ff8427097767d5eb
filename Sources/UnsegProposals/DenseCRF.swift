import Foundation
import UnsegLinAlg
import CUnsegKernels

/// Parameters of the fully connected CRF (Kraehenbuehl and Koltun 2011) used to refine masks.
///
/// Defaults are the PriMaPs / STEGO reference settings: 10 mean-field iterations, Gaussian
/// (smoothness) kernel `sxy = 1`, weight 3, bilateral (appearance) kernel `sxy = 67`,
/// `srgb = 3`, weight 4, Potts compatibility; unary `-log(max(p, 1e-5))` as
/// `pydensecrf.utils.unary_from_softmax`. Coding keys are stable (recipe fields / HDF5 attributes);
/// missing keys decode to the defaults.
public struct DenseCRFConfig: Codable, Equatable, Hashable, Sendable {
    /// Mean-field iterations (>= 0).
    public var iterations: Int
    /// Spatial standard deviation of the Gaussian kernel, pixels (> 0).
    public var gaussianSxy: Float
    /// Potts weight of the Gaussian kernel.
    public var gaussianCompat: Float
    /// Spatial standard deviation of the bilateral kernel, pixels (> 0).
    public var bilateralSxy: Float
    /// Colour standard deviation of the bilateral kernel, RGB units 0...255 (> 0).
    public var bilateralSrgb: Float
    /// Potts weight of the bilateral kernel.
    public var bilateralCompat: Float
    /// Probabilities are clipped below at this value before `-log` (pydensecrf's `clip`).
    public var probabilityClip: Float

    public init(iterations: Int = 10, gaussianSxy: Float = 1, gaussianCompat: Float = 3,
                bilateralSxy: Float = 67, bilateralSrgb: Float = 3, bilateralCompat: Float = 4,
                probabilityClip: Float = 1e-5) {
        self.iterations = iterations
        self.gaussianSxy = gaussianSxy
        self.gaussianCompat = gaussianCompat
        self.bilateralSxy = bilateralSxy
        self.bilateralSrgb = bilateralSrgb
        self.bilateralCompat = bilateralCompat
        self.probabilityClip = probabilityClip
    }

    enum CodingKeys: String, CodingKey {
        case iterations
        case gaussianSxy = "gaussian_sxy"
        case gaussianCompat = "gaussian_compat"
        case bilateralSxy = "bilateral_sxy"
        case bilateralSrgb = "bilateral_srgb"
        case bilateralCompat = "bilateral_compat"
        case probabilityClip = "probability_clip"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DenseCRFConfig()
        iterations = try c.decodeIfPresent(Int.self, forKey: .iterations) ?? d.iterations
        gaussianSxy = try c.decodeIfPresent(Float.self, forKey: .gaussianSxy) ?? d.gaussianSxy
        gaussianCompat = try c.decodeIfPresent(Float.self, forKey: .gaussianCompat) ?? d.gaussianCompat
        bilateralSxy = try c.decodeIfPresent(Float.self, forKey: .bilateralSxy) ?? d.bilateralSxy
        bilateralSrgb = try c.decodeIfPresent(Float.self, forKey: .bilateralSrgb) ?? d.bilateralSrgb
        bilateralCompat = try c.decodeIfPresent(Float.self, forKey: .bilateralCompat) ?? d.bilateralCompat
        probabilityClip = try c.decodeIfPresent(Float.self, forKey: .probabilityClip) ?? d.probabilityClip
    }

    /// Checks the values; throws `RefinementError.invalidConfig` naming the bad field.
    public func validate() throws {
        func bad(_ field: String, _ value: String, _ need: String) -> RefinementError {
            .invalidConfig("dense CRF \(field)=\(value) should be \(need)")
        }
        if iterations < 0 { throw bad("iterations", "\(iterations)", ">= 0") }
        if !(gaussianSxy > 0) || !gaussianSxy.isFinite { throw bad("gaussian_sxy", "\(gaussianSxy)", "> 0") }
        if !(bilateralSxy > 0) || !bilateralSxy.isFinite { throw bad("bilateral_sxy", "\(bilateralSxy)", "> 0") }
        if !(bilateralSrgb > 0) || !bilateralSrgb.isFinite { throw bad("bilateral_srgb", "\(bilateralSrgb)", "> 0") }
        if !gaussianCompat.isFinite { throw bad("gaussian_compat", "\(gaussianCompat)", "finite") }
        if !bilateralCompat.isFinite { throw bad("bilateral_compat", "\(bilateralCompat)", "finite") }
        if !(probabilityClip > 0 && probabilityClip < 1) {
            throw bad("probability_clip", "\(probabilityClip)", "in (0, 1)")
        }
    }
}

/// Dense CRF on one image: Potts model with a Gaussian and a bilateral kernel, mean-field
/// inference; the bilateral kernel is filtered with a permutohedral lattice, the spatial
/// Gaussian kernel exactly with a separable filter (`SeparableGaussian`, truncated at
/// `R = ceil(3 sxy)`) while `R <= 8`, else with a 2-D lattice.
///
/// Matches `pydensecrf` (`DenseCRF2D` + `addPairwiseGaussian` + `addPairwiseBilateral`, default
/// `DIAG_KERNEL` / `NORMALIZE_SYMMETRIC`, `inference(n)`):
/// - features: Gaussian `(x/sxy, y/sxy)`, bilateral `(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)` with
///   `x` the column and `y` the row;
/// - per kernel `norm_i = 1 / sqrt(K1_i + 1e-20)` where `K1 = filter(ones)` with that kernel's
///   filter (lattice, or the exact in-image kernel sum for the separable spatial filter);
/// - `Q_0 = softmax(-U)`; each iteration `Q = softmax(-U + sum_k w_k norm ⊙ lattice(norm ⊙ Q))`
///   (PottsCompatibility applies `-w * filtered` and inference subtracts it);
/// - self-contribution: like the reference, the lattice output at a pixel includes the pixel's
///   own value (`k(f_i, f_i) = 1`); nothing is subtracted. In the energy this only adds a
///   per-pixel term `w norm_i^2 Q_i(l)` that favours keeping the current label.
/// The reference passes the image as BGR (STEGO / PriMaPs flip it); the kernel is isotropic in
/// colour so only the lattice's approximation error depends on the channel order; we use RGB.
///
/// The lattices are built once in `init` (O(N) with N = H*W) and reused for every label
/// and iteration. `infer` costs O(iterations (N (R + 1) + M) L) with M lattice vertices.
/// Deterministic (single-threaded, fixed summation order).
public final class DenseCRF: Sendable {
    public let height: Int
    public let width: Int
    public let config: DenseCRFConfig
    /// Spatial kernel as a lattice: only when `spatial == nil` (large `gaussianSxy`).
    let gaussian: PermutohedralLattice?
    /// Exact separable spatial kernel (`radius <= SeparableGaussian.maxRadius`).
    let spatial: SeparableGaussian?
    let bilateral: PermutohedralLattice
    /// `[N]` symmetric normalisation per kernel.
    let gaussianNorm: [Float]
    let bilateralNorm: [Float]

    /// Builds the bilateral lattice (and the spatial kernel's filter) for an RGB image `[H*W*3]` (uint8, row-major, interleaved).
    /// Throws `RefinementError` on a size mismatch or an invalid config.
    public init(image: [UInt8], height: Int, width: Int, config: DenseCRFConfig = DenseCRFConfig()) throws {
        try config.validate()
        guard height > 0, width > 0 else {
            throw RefinementError.shapeMismatch("dense CRF image size \(height)x\(width) should be positive")
        }
        guard image.count == height * width * 3 else {
            throw RefinementError.shapeMismatch(
                "dense CRF image has \(image.count) bytes, expected \(height)x\(width)x3 = \(height * width * 3)")
        }
        self.height = height
        self.width = width
        self.config = config
        let n = height * width
        // The spatial kernel is filtered exactly (separable Gaussian) unless sxy is large; only the
        // lattice fallback needs its 2-D position features.
        let exact = SeparableGaussian.radius(sxy: config.gaussianSxy) <= SeparableGaussian.maxRadius
        var fg = [Float](repeating: 0, count: exact ? 0 : n * 2)
        var fb = [Float](repeating: 0, count: n * 5)
        let gs = 1 / config.gaussianSxy, bs = 1 / config.bilateralSxy, cs = 1 / config.bilateralSrgb
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                if !exact {
                    fg[2 * i] = Float(x) * gs
                    fg[2 * i + 1] = Float(y) * gs
                }
                fb[5 * i] = Float(x) * bs
                fb[5 * i + 1] = Float(y) * bs
                fb[5 * i + 2] = Float(image[3 * i]) * cs
                fb[5 * i + 3] = Float(image[3 * i + 1]) * cs
                fb[5 * i + 4] = Float(image[3 * i + 2]) * cs
            }
        }
        for (name, f, d) in exact ? [("bilateral", fb, 5)] : [("gaussian", fg, 2), ("bilateral", fb, 5)] {
            let bound = PermutohedralLattice.keyBound(features: f, count: n, dimension: d)
            if !(bound < PermutohedralLattice.maxKeyBound) {
                throw RefinementError.invalidConfig(
                    "dense CRF \(name) features of a \(height)x\(width) image reach lattice coordinate \(bound) "
                    + "(limit \(PermutohedralLattice.maxKeyBound)); use larger sxy / srgb or a smaller image")
            }
        }
        if exact {
            let s = SeparableGaussian(height: height, width: width, sxy: config.gaussianSxy)
            spatial = s
            gaussian = nil
            gaussianNorm = s.filter([Float](repeating: 1, count: n), channels: 1).map { 1 / ($0 + 1e-20).squareRoot() }
        } else {
            let g = PermutohedralLattice(features: fg, count: n, dimension: 2)
            spatial = nil
            gaussian = g
            gaussianNorm = DenseCRF.symmetricNorm(g)
        }
        bilateral = PermutohedralLattice(features: fb, count: n, dimension: 5)
        bilateralNorm = DenseCRF.symmetricNorm(bilateral)
    }

    /// `1 / sqrt(K1 + 1e-20)` with `K1 = lattice.filter(ones)`, computed by one-channel scalar C
    /// (`unseg_lattice_filter_ones`: the same operations, the same bits, tested).
    static func symmetricNorm(_ lattice: PermutohedralLattice) -> [Float] {
        lattice.filterOnes().map { 1 / ($0 + 1e-20).squareRoot() }
    }

    /// Unary energies `-log(min(max(p, clip), 1))` from probabilities `[N, L]` (row-major), by a
    /// vectorised Cephes logf (`unseg_neg_log_clipped`: relative error ~1e-7, the same bits with
    /// AVX-512, AVX2 or neither; NaN counts as `clip`). `clip` must be in (0, 1) (`DenseCRFConfig.validate`).
    public static func unary(fromProbabilities p: [Float], clip: Float = 1e-5) -> [Float] {
        [Float](unsafeUninitializedCapacity: p.count) { out, count in
            p.withUnsafeBufferPointer { unseg_neg_log_clipped($0.baseAddress, out.baseAddress, p.count, clip, 2) }
            count = p.count
        }
    }

    /// Mean-field inference: returns the marginals `Q` `[N, L]` (rows sum to 1) after
    /// `config.iterations` iterations from unary energies `unary` `[N, L]`.
    /// Precondition: `unary.count == H*W*labels`, `labels >= 1`.
    ///
    /// One pass over the pixels per iteration, row by row: for pixel `i`, read the spatial
    /// kernel's output (the exact separable filter's row `y`, computed just before from the
    /// previous iteration's `norm ⊙ Q`, or a lattice slice) and slice the bilateral lattice into
    /// `-U_i`, softmax (vectorised `exp`, `FastExp`), and write the new `Q_i` (times the
    /// normalisation) into the spatial field and splat it into the bilateral lattice's other
    /// buffer for the next iteration; then blur the lattice. The per-pixel symmetric
    /// normalisation, kernel weight and slice constant are folded into per-pixel weights once.
    /// Same model and summation order as `inferUnfused` (which composes whole-field filter
    /// calls); they differ only by the `exp` rounding (~1e-7 relative).
    ///
    /// Three fields are stored as float16 (rounded to nearest even; the splat sums, the slice, the
    /// softmax and all arithmetic stay float32), because the pass is bound by memory traffic: the
    /// bilateral lattice's blurred values when they provably fit (`FusedLattice.halfValuesFit`),
    /// the unaries (`paddedNegatedUnary`) and the spatial field `norm ⊙ Q`. Together about 1.25x
    /// at 27 labels on real photos. The marginals move by about 1e-5 on average and the argmax
    /// agreement with pydensecrf2 on real photos is unchanged (tested against float32 storage).
    /// Accumulating the splat in float16 was measured too and rejected: it cost 0.15 % agreement.
    ///
    /// On CPUs with AVX2 and F16C the pass over each row, the spatial row filter and the lattice blur
    /// run in C kernels with 8-lane arithmetic, or 16-lane where the CPU has AVX-512
    /// (`CUnsegKernels/crf.c`), that do the same operations in the same order as the Swift code
    /// below, so the output is the same bits (tested); elsewhere, and for the lattice spatial
    /// kernel, the Swift code runs. The C path also clears the splat target row by row, just
    /// before the image row that first touches those vertices (`touched`), and pads splat rows of
    /// 28, 44, ... floats to whole cache lines (`FusedLattice.splatStride`): the same values.
    public func infer(unary: [Float], labels: Int) -> [Float] {
        infer(unary: unary, labels: labels, kernels: .automatic)
    }

    /// Which code runs the fused pass and the blur: the C kernels (`CUnsegKernels/crf.c`, the same
    /// bits) when the CPU has AVX2 and the image uses the exact spatial kernel, with 16 lanes where
    /// it has AVX-512 (`.automatic`) or 8 lanes in any case (`.avx2`), or the Swift code (`.swift`,
    /// the reference the kernels are tested against).
    enum Kernels { case automatic, avx2, swift }

    /// Whether this CPU runs the AVX2 kernels.
    static let hasAVX2 = unseg_crf_avx2_available() != 0
    /// Values of slack past the end of every buffer the C kernels read or write row by row: the
    /// 16-lane kernels process a row of `4 blocks` values as whole 16-lane chunks, reading and
    /// writing past its end (`CUnsegKernels/crf.c`).
    static let kernelSlack = 16
    /// Whether this CPU runs the 16-lane AVX-512 kernels (F, BW, VL, DQ), the same bits as the AVX2 ones.
    static let hasAVX512 = unseg_crf_isa() >= 2

    /// `halfStorage: false` keeps the lattice values, the unaries and the spatial field in float32
    /// (tests compare the two).
    func infer(unary: [Float], labels: Int, kernels: Kernels, halfStorage: Bool = true) -> [Float] {
        let n = height * width
        precondition(labels >= 1 && unary.count == n * labels,
                     "DenseCRF.infer: unary has \(unary.count) values, expected \(height)x\(width)x\(labels)")
        // Channels padded to a multiple of 4 (SIMD4 blocks); pad channels of Q stay exactly 0.
        let blocks = (labels + 3) / 4, lp = blocks * 4, total = n * blocks
        let slack = DenseCRF.kernelSlack
        let negU = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: total + slack / 4)
        defer { negU.deallocate() }
        let negUf = UnsafeMutableRawPointer(negU).assumingMemoryBound(to: Float.self)   // every value written below
        let unaryFitsHalf = DenseCRF.paddedNegatedUnary(unary, labels: labels, into: negUf, points: n)
        let halfUnary = halfStorage && unaryFitsHalf
        let useC = kernels != .swift && DenseCRF.hasAVX2 && gaussian == nil && spatial != nil && bilateral.dimension == 5
        // Float16 unaries: on the C path in `negU16` (`negUf` only stages them), on the Swift path
        // rounded in place (the same values).
        let negU16 = UnsafeMutablePointer<UInt16>.allocate(capacity: useC && halfUnary ? n * lp + slack : 1)
        defer { negU16.deallocate() }
        if halfUnary {
            if useC { unseg_float_to_half(negUf, negU16, n * lp) } else { unseg_round_through_half(negUf, n * lp) }
        }
        // Lane mask of the last block (1 for real labels, 0 for padding).
        var lastMask = SIMD4<Float>(repeating: 0)
        for l in 0..<(labels - (blocks - 1) * 4) { lastMask[l] = 1 }
        // Spatial kernel: exact separable filter (fields `[N, blocks]`, ping-pong) or a lattice.
        let g = gaussian.map { FusedLattice($0, norm: gaussianNorm, weight: config.gaussianCompat, blocks: blocks) }
        let b = FusedLattice(bilateral, norm: bilateralNorm, weight: config.bilateralCompat, blocks: blocks,
                             halfValues: halfStorage, halfBuffers: useC, padSplatRows: useC)
        defer { g?.release(); b.release() }
        let exact = spatial
        let fieldCount = exact == nil ? 0 : total
        // The spatial field `gn ⊙ Q` is stored as float16 (`halfStorage`; its values are in [0, 1]):
        // in `sA16` / `sB16` on the C path, rounded in place in `sA` on the Swift path.
        let halfField = halfStorage && exact != nil
        let cHalfField = useC && halfField
        var sA = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: cHalfField ? 1 : fieldCount + slack / 4)
        var sB = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: cHalfField ? 1 : fieldCount + slack / 4)
        var sA16 = UnsafeMutablePointer<UInt16>.allocate(capacity: cHalfField ? n * lp + slack : 1)
        var sB16 = UnsafeMutablePointer<UInt16>.allocate(capacity: cHalfField ? n * lp + slack : 1)
        defer { sA16.deallocate(); sB16.deallocate() }
        let row = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: width * blocks + slack / 4)
        let rowScratch = exact?.makeScratch(blocks: blocks)
        // `sliceScale_i = w * norm_i` (exact kernel, no lattice slice constant).
        let sliceScale = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { sA.deallocate(); sB.deallocate(); row.deallocate(); rowScratch?.deallocate(); sliceScale.deallocate() }
        for i in 0..<n { sliceScale[i] = config.gaussianCompat * gaussianNorm[i] }
        var out = [Float](repeating: 0, count: n * labels)
        let iterations = config.iterations
        let c = blocks, wd = width
        let (b1, bo, bs, bl) = (b.d1, b.offsets, b.splatWeights, b.sliceWeights)
        let cRow = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: useC ? width * blocks + slack / 4 : 1)
        let isa: Int32 = kernels == .avx2 ? 1 : 2   // capped by the CPU's level in the kernels
        // `touched[y + 1]`: the largest vertex id (+ 1) of the pixels in image rows 0...y. The lattice
        // numbers vertices in the order pixels first touch them, row by row, so image row y splats
        // into vertices up to `touched[y + 1]` and first touches those above `touched[y]`.
        var touched = [Int](repeating: 0, count: useC ? height + 1 : 1)
        if useC {
            for y in 0..<height {
                var hi = touched[y]
                for j in (y * wd * b1)..<((y + 1) * wd * b1) { hi = max(hi, Int(bo[j])) }
                touched[y + 1] = hi
            }
        }
        defer { cRow.deallocate() }
        func floats(_ p: UnsafeMutablePointer<SIMD4<Float>>) -> UnsafeMutablePointer<Float> {
            UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
        }
        gaussianNorm.withUnsafeBufferPointer { gnb in
        out.withUnsafeMutableBufferPointer { ob in
            let outp = ob.baseAddress!, gn = gnb.baseAddress!
            let q = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: blocks)
            defer { q.deallocate() }
            // Lattice buffers: splat into `*T`; the blur leaves its result in `*R` and the other
            // buffer becomes the next splat target. Spatial field: write `sT`, read `sR`.
            var (gT, gR) = g.map { ($0.bufferA, $0.bufferB) } ?? (sA, sB)
            var (bT, bR) = (b.bufferA, b.bufferB)
            // With float16 values the C blur leaves its result in one of the half buffers (`hR`) and
            // the float32 splat target stays `bufferA`.
            var hR: UnsafeMutablePointer<UInt16>? = nil
            for it in 0...iterations {
                let last = it == iterations
                // The C path clears the splat target as it goes (`touched`); the Swift path at once.
                if !last { g?.clear(gT); if !useC { b.clear(bT) } }
                for y in 0..<height {
                    if it > 0, let e = exact {
                        if useC {
                            let rc = e.taps.withUnsafeBufferPointer { t in
                                unseg_crf_spatial_row(cHalfField ? nil : floats(sB), cHalfField ? UnsafePointer(sB16) : nil, Int32(y),
                                                      Int32(height), Int32(wd), Int32(lp), Int32(e.radius),
                                                      t.baseAddress!, floats(rowScratch!), floats(row), isa)
                            }
                            precondition(rc == 0, "unseg_crf_spatial_row refused a row it was chosen for")
                        } else {
                            e.blurRow(y, UnsafePointer(sB), blocks: c, into: row, scratch: rowScratch!)
                        }
                    }
                    if useC {
                        if !last {
                            // Clear the splat rows this image row touches first, just before it
                            // splats (cache-hot): ids are given in this pixel order.
                            let from = touched[y] + 1, to = touched[y + 1] + 1
                            if to > from {
                                memset(floats(bT) + from * b.splatStride, 0, (to - from) * b.splatStride * 4)
                            }
                        }
                        let r0 = y * wd
                        var args = unseg_crf_row_args(
                            width: Int32(wd), c4: Int32(lp), labels: Int32(labels),
                            neg_unary: floats(negU + r0 * c), neg_unary_half: halfUnary ? UnsafePointer(negU16 + r0 * lp) : nil,
                            spatial: it > 0 ? UnsafePointer(floats(row)) : nil,
                            slice_scale: sliceScale + r0, offsets: bo + r0 * 6, slice_weights: bl + r0 * 6,
                            splat_weights: bs + r0 * 6, spatial_norm: gn + r0, lattice_in: floats(bR),
                            lattice_in_half: it > 0 ? UnsafePointer(hR) : nil, lattice_out: floats(bT), splat_stride: Int32(b.splatStride),
                            spatial_out: cHalfField ? nil : floats(sA + r0 * c), spatial_out_half: cHalfField ? sA16 + r0 * lp : nil,
                            out: last ? outp + r0 * labels : nil, scratch: floats(cRow), isa: isa)
                        let rc = unseg_crf_fused_row(&args)
                        precondition(rc == 0, "unseg_crf_fused_row refused a row it was chosen for")
                        continue
                    }
                    for x in 0..<wd {
                        let i = y * wd + x
                        let a = negU + i * c
                        for k in 0..<c { q[k] = a[k] }
                        if it > 0 {
                            if let g = g {
                                let (g1, go, gl) = (g.d1, g.offsets, g.sliceWeights)
                                for r in 0..<g1 {
                                    let wt = SIMD4<Float>(repeating: gl[i * g1 + r])
                                    let src = gR + Int(go[i * g1 + r]) * c
                                    for k in 0..<c { q[k] += wt * src[k] }
                                }
                            } else {
                                let wt = SIMD4<Float>(repeating: sliceScale[i])
                                let src = row + x * c
                                for k in 0..<c { q[k] += wt * src[k] }
                            }
                            for r in 0..<b1 {
                                let wt = SIMD4<Float>(repeating: bl[i * b1 + r])
                                let src = bR + Int(bo[i * b1 + r]) * c
                                for k in 0..<c { q[k] += wt * src[k] }
                            }
                        }
                        DenseCRF.softmaxBlocks(q, blocks: c, lastMask: lastMask)
                        if last {
                            DenseCRF.store(q, labels: labels, into: outp + i * labels)
                            continue
                        }
                        if let g = g {
                            let (g1, go, gs) = (g.d1, g.offsets, g.splatWeights)
                            for r in 0..<g1 {
                                let wt = SIMD4<Float>(repeating: gs[i * g1 + r])
                                let dst = gT + Int(go[i * g1 + r]) * c
                                for k in 0..<c { dst[k] += wt * q[k] }
                            }
                        } else {
                            let wt = SIMD4<Float>(repeating: gn[i])
                            let dst = sA + i * c
                            for k in 0..<c { dst[k] = wt * q[k] }
                        }
                        for r in 0..<b1 {
                            let wt = SIMD4<Float>(repeating: bs[i * b1 + r])
                            let dst = bT + Int(bo[i * b1 + r]) * c
                            for k in 0..<c { dst[k] += wt * q[k] }
                        }
                    }
                }
                if !last {
                    if halfField && !useC { unseg_round_through_half(floats(sA), n * lp) }
                    if let g = g { (gR, gT) = g.blur(gT, scratch: gR) } else { swap(&sA, &sB); swap(&sA16, &sB16) }
                    if useC && b.halfValues {
                        let rc = unseg_crf_blur_half(floats(bT), Int32(b.splatStride), b.halfA, b.halfB, b.neighbors, Int64(b.m), Int32(lp),
                                                     Int32(b1), &hR, isa)
                        precondition(rc == 0, "unseg_crf_blur_half refused a lattice it was chosen for")
                    } else if useC {
                        var result: UnsafeMutablePointer<Float>? = nil, other: UnsafeMutablePointer<Float>? = nil
                        let rc = unseg_crf_blur(floats(bT), floats(bR), b.neighbors, Int64(b.m), Int32(lp), Int32(b1),
                                                &result, &other)
                        precondition(rc == 0, "unseg_crf_blur refused a lattice it was chosen for")
                        (bR, bT) = (UnsafeMutableRawPointer(result!).assumingMemoryBound(to: SIMD4<Float>.self),
                                    UnsafeMutableRawPointer(other!).assumingMemoryBound(to: SIMD4<Float>.self))
                    } else {
                        (bR, bT) = b.blur(bT, scratch: bR)
                    }
                }
            }
        }}
        return out
    }

    /// Writes `-unary` `[points, labels]` into every value of `out` `[points, c4]` (labels padded to
    /// a multiple of 4 with zeros); returns whether they all fit float16 comfortably (|U| < 2^15, no
    /// NaN), so that the caller may store them rounded to float16 (nearest even). Float16 keeps 11
    /// significant bits: at the default clip the unaries are below 11.6 and move by < 0.004 (a
    /// probability by < 0.4 %), below any network's precision; the argmax agreement with
    /// pydensecrf2 on real photos did not change.
    static func paddedNegatedUnary(_ unary: [Float], labels: Int, into out: UnsafeMutablePointer<Float>, points n: Int) -> Bool {
        let lp = (labels + 3) / 4 * 4
        return unary.withUnsafeBufferPointer { unseg_pad_negate($0.baseAddress, n, Int32(labels), Int32(lp), out) } != 0
    }

    /// Copies the first `labels` lanes of `q` (`blocks` SIMD4) to `dst`.
    @inline(__always)
    static func store(_ q: UnsafeMutablePointer<SIMD4<Float>>, labels: Int, into dst: UnsafeMutablePointer<Float>) {
        let qf = UnsafeMutableRawPointer(q).assumingMemoryBound(to: Float.self)
        for l in 0..<labels { dst[l] = qf[l] }
    }

    /// In-place softmax over `blocks` SIMD4 blocks; lanes of the last block outside `lastMask`
    /// (padding) are left out of the maximum and the sum and set to 0.
    @inline(__always)
    static func softmaxBlocks(_ q: UnsafeMutablePointer<SIMD4<Float>>, blocks: Int, lastMask: SIMD4<Float>) {
        let lastReal = q[blocks - 1].replacing(with: -Float.greatestFiniteMagnitude, where: lastMask .== 0)
        var mx = lastReal
        // `replacing(with:where:)` is one compare and blend; `pointwiseMax` compiles to scalar code
        // with NaN branches (the IEEE maximum), half the softmax's time. No NaN can reach here.
        for k in 0..<(blocks - 1) { let v = q[k]; mx = mx.replacing(with: v, where: v .> mx) }
        // Horizontal max and sum written out (the generic `max()` / `sum()` are not specialised).
        let m = SIMD4<Float>(repeating: Swift.max(Swift.max(mx[0], mx[1]), Swift.max(mx[2], mx[3])))
        var s = SIMD4<Float>(repeating: 0)
        for k in 0..<(blocks - 1) {
            let e = FastMath.exp(q[k] - m)
            q[k] = e
            s += e
        }
        let e = FastMath.exp(lastReal - m) * lastMask
        q[blocks - 1] = e
        s += e
        let inv = SIMD4<Float>(repeating: 1 / ((s[0] + s[1]) + (s[2] + s[3])))
        for k in 0..<blocks { q[k] *= inv }
    }

    /// Reference inference as separate passes (copy, spatial filter (`SeparableGaussian.filter`
    /// or a lattice), `PermutohedralLattice.filter`, softmax with `expf`): the formulation
    /// `infer` fuses. Tests only.
    func inferUnfused(unary: [Float], labels: Int) -> [Float] {
        let n = height * width
        precondition(labels >= 1 && unary.count == n * labels,
                     "DenseCRF.infer: unary has \(unary.count) values, expected \(height)x\(width)x\(labels)")
        let blocks = (labels + 3) / 4, lp = blocks * 4, total = n * blocks
        let negU = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: total)
        let acc = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: total)
        let q = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: total)
        defer { negU.deallocate(); acc.deallocate(); q.deallocate() }
        negU.initialize(repeating: .zero, count: total)
        q.initialize(repeating: .zero, count: total)
        let negUf = UnsafeMutableRawPointer(negU).assumingMemoryBound(to: Float.self)
        let accf = UnsafeMutableRawPointer(acc).assumingMemoryBound(to: Float.self)
        let qf = UnsafeMutableRawPointer(q).assumingMemoryBound(to: Float.self)
        if DenseCRF.paddedNegatedUnary(unary, labels: labels, into: negUf, points: n) { unseg_round_through_half(negUf, n * lp) }
        Reduce.softmaxRows(negUf, into: qf, rows: n, cols: labels, stride: lp)
        let wsG = gaussian.map { PermutohedralLattice.Workspace(vertexCount: $0.vertexCount, blocks: blocks) }
        let scaled = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: total)
        let blurred = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: total)
        defer { scaled.deallocate(); blurred.deallocate() }
        let wsB = PermutohedralLattice.Workspace(vertexCount: bilateral.vertexCount, blocks: blocks)
        let halfValues = FusedLattice.halfValuesFit(bilateral, norm: bilateralNorm)
        gaussianNorm.withUnsafeBufferPointer { gn in
        bilateralNorm.withUnsafeBufferPointer { bn in
            for _ in 0..<config.iterations {
                acc.update(from: negU, count: total)
                if let gaussian = gaussian, let wsG = wsG {
                    gaussian.filter(q, blocks: blocks, inScale: gn.baseAddress!, into: acc, outScale: gn.baseAddress!,
                                    outWeight: config.gaussianCompat, accumulate: true, workspace: wsG)
                } else if let spatial = spatial {
                    for i in 0..<n {
                        let s = SIMD4<Float>(repeating: gn[i])
                        for k in 0..<blocks { scaled[i * blocks + k] = s * q[i * blocks + k] }
                    }
                    unseg_round_through_half(UnsafeMutableRawPointer(scaled).assumingMemoryBound(to: Float.self), total * 4)
                    spatial.filter(scaled, blocks: blocks, into: blurred)
                    for i in 0..<n {
                        let s = SIMD4<Float>(repeating: config.gaussianCompat * gn[i])
                        for k in 0..<blocks { acc[i * blocks + k] += s * blurred[i * blocks + k] }
                    }
                }
                bilateral.filter(q, blocks: blocks, inScale: bn.baseAddress!, into: acc, outScale: bn.baseAddress!,
                                 outWeight: config.bilateralCompat, accumulate: true, workspace: wsB,
                                 roundBlurToHalf: halfValues)
                Reduce.softmaxRows(accf, into: qf, rows: n, cols: labels, stride: lp)
            }
        }}
        var out = [Float](repeating: 0, count: n * labels)
        for i in 0..<n { for l in 0..<labels { out[i * labels + l] = qf[i * lp + l] } }
        return out
    }

    /// Lattice vertex counts `(gaussian, bilateral)` (diagnostics, benchmarks); `gaussian` is 0
    /// when the spatial kernel is filtered exactly (separable, no lattice).
    public var latticeVertexCounts: (gaussian: Int, bilateral: Int) { (gaussian?.vertexCount ?? 0, bilateral.vertexCount) }

    /// Whether the spatial Gaussian kernel is computed exactly (separable filter) rather than by a lattice.
    public var usesExactSpatialKernel: Bool { spatial != nil }

    /// Inference from probabilities `[N, L]`, returning the per-pixel argmax label `[N]`
    /// (ties: lowest label).
    public func labels(probabilities: [Float], labels: Int) -> [Int32] {
        let q = infer(unary: DenseCRF.unary(fromProbabilities: probabilities, clip: config.probabilityClip),
                      labels: labels)
        return Reduce.rowArgmax(q, rows: height * width, cols: labels)
    }
}

/// One lattice prepared for fused mean field: splat and slice weights with the per-pixel
/// normalisation (and, for slicing, the kernel weight and the slice constant) folded in, and two
/// value buffers `[(M+1), blocks]` SIMD4 (vertex 0 is the zero dummy). Raw buffers (no
/// exclusivity checks in the hot loops): call `release()` once.
struct FusedLattice {
    let d1: Int
    let m: Int
    let blocks: Int
    /// `[N, d+1]` vertex id + 1 of each simplex corner.
    let offsets: UnsafeMutablePointer<Int32>
    /// `[N, d+1]` barycentric weight x `norm_i`.
    let splatWeights: UnsafeMutablePointer<Float>
    /// `[N, d+1]` barycentric weight x `norm_i x weight x alpha`.
    let sliceWeights: UnsafeMutablePointer<Float>
    /// `[d+1, M, 2]` neighbour ids + 1.
    let neighbors: UnsafeMutablePointer<Int32>
    /// The splat target `[(M+1), splatStride]` floats, 64-byte aligned.
    let bufferA: UnsafeMutablePointer<SIMD4<Float>>
    /// Floats per row of `bufferA`: `4 blocks`, or `4 blocks + 4` (`padSplatRows`) so that a row
    /// is two whole cache lines; the padding lanes stay 0.
    let splatStride: Int
    let bufferB: UnsafeMutablePointer<SIMD4<Float>>
    /// Whether every blur direction's output is rounded to float16 (`halfValuesFit`): the C kernels
    /// then store it in `halfA` / `halfB` (`[(M+1), 4 blocks]` half bits, half the memory traffic of
    /// the blur and the slice), the Swift blur rounds its float32 buffers to the same values.
    let halfValues: Bool
    let halfA: UnsafeMutablePointer<UInt16>
    let halfB: UnsafeMutablePointer<UInt16>

    /// `halfValues`: store the blurred values as float16 when they fit (`halfValuesFit`);
    /// `halfBuffers`: allocate the half buffers the C blur writes (the Swift blur does not use them);
    /// `padSplatRows`: with the C half blur, pad splat rows of `4 blocks` = 28, 44, 60, ... floats
    /// (`% 16 == 12`) to whole 64-byte cache lines: the 16-lane kernels then never split a
    /// read-modify-write across lines (27 labels 4 % faster). Not 12 (10 labels): a third more
    /// memory cost more than it saved. The Swift code reads rows of `4 blocks` and gets unpadded ones.
    init(_ lattice: PermutohedralLattice, norm: [Float], weight: Float, blocks: Int, halfValues: Bool = false,
         halfBuffers: Bool = false, padSplatRows: Bool = false) {
        let n = lattice.pointCount
        d1 = lattice.dimension + 1
        m = lattice.vertexCount
        self.blocks = blocks
        offsets = .allocate(capacity: n * d1)
        splatWeights = .allocate(capacity: n * d1)
        sliceWeights = .allocate(capacity: n * d1)
        neighbors = .allocate(capacity: max(d1 * m * 2, 1))
        self.halfValues = halfValues && FusedLattice.halfValuesFit(lattice, norm: norm)
        // With the C half blur, `bufferB` is never used and the half buffers are written before
        // they are read (the blur zeroes their dummy row); `bufferA` is cleared before each splat.
        // So only the Swift path's buffers are zero-filled here (its blur reads the dummy rows).
        let cHalf = self.halfValues && halfBuffers
        splatStride = cHalf && padSplatRows && blocks >= 7 && (4 * blocks) % 16 == 12 ? 4 * blocks + 4 : 4 * blocks
        let slack = DenseCRF.kernelSlack
        bufferA = UnsafeMutableRawPointer.allocate(byteCount: ((m + 1) * splatStride + slack) * 4, alignment: 64)
            .bindMemory(to: SIMD4<Float>.self, capacity: (m + 1) * splatStride / 4 + slack / 4)
        bufferB = .allocate(capacity: cHalf ? 1 : (m + 1) * blocks + slack / 4)
        if !cHalf {
            bufferA.initialize(repeating: .zero, count: (m + 1) * blocks)
            bufferB.initialize(repeating: .zero, count: (m + 1) * blocks)
        }
        let halfCount = cHalf ? (m + 1) * blocks * 4 + DenseCRF.kernelSlack : 1
        halfA = .allocate(capacity: halfCount)
        halfB = .allocate(capacity: halfCount)
        let alpha = lattice.alpha
        lattice.offsets.withUnsafeBufferPointer { offsets.initialize(from: $0.baseAddress!, count: n * d1) }
        lattice.neighbors.withUnsafeBufferPointer { neighbors.initialize(from: $0.baseAddress!, count: d1 * m * 2) }
        lattice.weights.withUnsafeBufferPointer { w in
            for i in 0..<n {
                // Same products as `PermutohedralLattice.filter` (inScale, then outScale * outWeight * alpha).
                let s = norm[i] * weight * alpha
                for r in 0..<d1 {
                    splatWeights[i * d1 + r] = w[i * d1 + r] * norm[i]
                    sliceWeights[i * d1 + r] = w[i * d1 + r] * s
                }
            }
        }
    }

    func release() {
        offsets.deallocate(); splatWeights.deallocate(); sliceWeights.deallocate()
        neighbors.deallocate(); UnsafeMutableRawPointer(bufferA).deallocate(); bufferB.deallocate()
        halfA.deallocate(); halfB.deallocate()
    }

    /// Whether the blurred values of mean-field marginals (`0 <= Q <= 1`) splatted with weights
    /// `barycentric x norm` stay well inside float16's range (largest finite 65504): a vertex holds at
    /// most `S_v = sum of its splat weights`, and each of the `d+1` blur directions at most doubles
    /// the largest value, so the bound is `2^(d+1) max_v S_v`, required below 2^15. Holds for
    /// ordinary images by orders of magnitude (flat 320x320: about 3e3); a huge flat image could
    /// exceed it, and then the values stay float32. Small values lose relative precision below
    /// 6e-5 (float16 subnormals): they are contributions of labels with Q < 1e-3 at most.
    static func halfValuesFit(_ lattice: PermutohedralLattice, norm: [Float]) -> Bool {
        let n = lattice.pointCount, d1 = lattice.dimension + 1
        var sums = [Float](repeating: 0, count: lattice.vertexCount + 1)
        lattice.offsets.withUnsafeBufferPointer { o in
        lattice.weights.withUnsafeBufferPointer { w in
            for i in 0..<n {
                for r in 0..<d1 { sums[Int(o[i * d1 + r])] += w[i * d1 + r] * norm[i] }
            }
        }}
        let largest = sums.max() ?? 0
        return largest.isFinite && largest * Float(1 << d1) < 32768
    }

    /// Zeroes a value buffer (before splatting into it; it may not have been initialised yet).
    func clear(_ buffer: UnsafeMutablePointer<SIMD4<Float>>) {
        buffer.initialize(repeating: .zero, count: (m + 1) * splatStride / 4)
    }

    /// Blurs the splatted `values` along the `d+1` directions (`new = old + 0.5 (n1 + n2)`),
    /// ping-ponging with `scratch`. Returns (buffer holding the result, the other buffer).
    func blur(_ values: UnsafeMutablePointer<SIMD4<Float>>, scratch: UnsafeMutablePointer<SIMD4<Float>>)
        -> (UnsafeMutablePointer<SIMD4<Float>>, UnsafeMutablePointer<SIMD4<Float>>) {
        var v = values, nv = scratch
        let c = blocks, mm = m
        let half = SIMD4<Float>(repeating: 0.5)
        // The dummy vertex 0 must read as zero in both buffers.
        for k in 0..<c { nv[k] = .zero; v[k] = .zero }
        for j in 0..<d1 {
            let nj = neighbors + j * mm * 2
            switch c {
            case 1:
                for i in 0..<mm {
                    nv[i + 1] = v[i + 1] + half * (v[Int(nj[2 * i])] + v[Int(nj[2 * i + 1])])
                }
            case 2:
                for i in 0..<mm {
                    let o = (i + 1) * 2, a = Int(nj[2 * i]) * 2, b = Int(nj[2 * i + 1]) * 2
                    nv[o] = v[o] + half * (v[a] + v[b])
                    nv[o + 1] = v[o + 1] + half * (v[a + 1] + v[b + 1])
                }
            case 3:
                for i in 0..<mm {
                    let o = (i + 1) * 3, a = Int(nj[2 * i]) * 3, b = Int(nj[2 * i + 1]) * 3
                    nv[o] = v[o] + half * (v[a] + v[b])
                    nv[o + 1] = v[o + 1] + half * (v[a + 1] + v[b + 1])
                    nv[o + 2] = v[o + 2] + half * (v[a + 2] + v[b + 2])
                }
            default:
                for i in 0..<mm {
                    let old = v + (i + 1) * c, nw = nv + (i + 1) * c
                    let a = v + Int(nj[2 * i]) * c, b = v + Int(nj[2 * i + 1]) * c
                    for k in 0..<c { nw[k] = old[k] + half * (a[k] + b[k]) }
                }
            }
            if halfValues {
                unseg_round_through_half(UnsafeMutableRawPointer(nv + c).assumingMemoryBound(to: Float.self), mm * c * 4)
            }
            swap(&v, &nv)
        }
        return (v, nv)
    }
}
