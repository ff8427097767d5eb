import Foundation

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
/// inference with permutohedral-lattice message passing.
///
/// Matches `pydensecrf` (`DenseCRF2D` + `addPairwiseGaussian` + `addPairwiseBilateral`, default
/// `DIAG_KERNEL` / `NORMALIZE_SYMMETRIC`, `inference(n)`):
/// - features: Gaussian `(x/sxy, y/sxy)`, bilateral `(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)` with
///   `x` the column and `y` the row;
/// - per kernel `norm_i = 1 / sqrt(K1_i + 1e-20)` where `K1 = lattice(ones)`;
/// - `Q_0 = softmax(-U)`; each iteration `Q = softmax(-U + sum_k w_k norm ⊙ lattice(norm ⊙ Q))`
///   (PottsCompatibility applies `-w * filtered` and inference subtracts it);
/// - self-contribution: like the reference, the lattice output at a pixel includes the pixel's
///   own value (`k(f_i, f_i) = 1`); nothing is subtracted. In the energy this only adds a
///   per-pixel term `w norm_i^2 Q_i(l)` that favours keeping the current label.
/// The reference passes the image as BGR (STEGO / PriMaPs flip it); the kernel is isotropic in
/// colour so only the lattice's approximation error depends on the channel order; we use RGB.
///
/// The two lattices are built once in `init` (O(N) with N = H*W) and reused for every label
/// and iteration. `infer` costs O(iterations (N + M) L) with M lattice vertices.
/// Deterministic (single-threaded, fixed summation order).
public final class DenseCRF: @unchecked Sendable {
    public let height: Int
    public let width: Int
    public let config: DenseCRFConfig
    let gaussian: PermutohedralLattice
    let bilateral: PermutohedralLattice
    /// `[N]` symmetric normalisation per kernel.
    let gaussianNorm: [Float]
    let bilateralNorm: [Float]

    /// Builds both lattices for an RGB image `[H*W*3]` (uint8, row-major, interleaved).
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
        var fg = [Float](repeating: 0, count: n * 2)
        var fb = [Float](repeating: 0, count: n * 5)
        let gs = 1 / config.gaussianSxy, bs = 1 / config.bilateralSxy, cs = 1 / config.bilateralSrgb
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                fg[2 * i] = Float(x) * gs
                fg[2 * i + 1] = Float(y) * gs
                fb[5 * i] = Float(x) * bs
                fb[5 * i + 1] = Float(y) * bs
                fb[5 * i + 2] = Float(image[3 * i]) * cs
                fb[5 * i + 3] = Float(image[3 * i + 1]) * cs
                fb[5 * i + 4] = Float(image[3 * i + 2]) * cs
            }
        }
        for (name, f, d) in [("gaussian", fg, 2), ("bilateral", fb, 5)] {
            let bound = PermutohedralLattice.keyBound(features: f, count: n, dimension: d)
            if !(bound < PermutohedralLattice.maxKeyBound) {
                throw RefinementError.invalidConfig(
                    "dense CRF \(name) features of a \(height)x\(width) image reach lattice coordinate \(bound) "
                    + "(limit \(PermutohedralLattice.maxKeyBound)); use larger sxy / srgb or a smaller image")
            }
        }
        gaussian = PermutohedralLattice(features: fg, count: n, dimension: 2)
        bilateral = PermutohedralLattice(features: fb, count: n, dimension: 5)
        gaussianNorm = DenseCRF.symmetricNorm(gaussian)
        bilateralNorm = DenseCRF.symmetricNorm(bilateral)
    }

    static func symmetricNorm(_ lattice: PermutohedralLattice) -> [Float] {
        let ones = [Float](repeating: 1, count: lattice.pointCount)
        return lattice.filter(ones, channels: 1).map { 1 / ($0 + 1e-20).squareRoot() }
    }

    /// Unary energies `-log(max(p, clip))` from probabilities `[N, L]` (row-major).
    public static func unary(fromProbabilities p: [Float], clip: Float = 1e-5) -> [Float] {
        p.map { -logf(min(max($0, clip), 1)) }
    }

    /// Mean-field inference: returns the marginals `Q` `[N, L]` (rows sum to 1) after
    /// `config.iterations` iterations from unary energies `unary` `[N, L]`.
    /// Precondition: `unary.count == H*W*labels`, `labels >= 1`.
    public func infer(unary: [Float], labels: Int) -> [Float] {
        let n = height * width
        precondition(labels >= 1 && unary.count == n * labels,
                     "DenseCRF.infer: unary has \(unary.count) values, expected \(height)x\(width)x\(labels)")
        // Channels padded to a multiple of 4 (SIMD4 blocks); pad channels of Q stay 0.
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
        unary.withUnsafeBufferPointer { u in
            for i in 0..<n { for l in 0..<labels { negUf[i * lp + l] = -u[i * labels + l] } }
        }
        softmaxRows(negUf, into: qf, rows: n, labels: labels, stride: lp)
        let wsG = PermutohedralLattice.Workspace(vertexCount: gaussian.vertexCount, blocks: blocks)
        let wsB = PermutohedralLattice.Workspace(vertexCount: bilateral.vertexCount, blocks: blocks)
        gaussianNorm.withUnsafeBufferPointer { gn in
        bilateralNorm.withUnsafeBufferPointer { bn in
            for _ in 0..<config.iterations {
                acc.update(from: negU, count: total)
                gaussian.filter(q, blocks: blocks, inScale: gn.baseAddress!, into: acc, outScale: gn.baseAddress!,
                                outWeight: config.gaussianCompat, accumulate: true, workspace: wsG)
                bilateral.filter(q, blocks: blocks, inScale: bn.baseAddress!, into: acc, outScale: bn.baseAddress!,
                                 outWeight: config.bilateralCompat, accumulate: true, workspace: wsB)
                softmaxRows(accf, into: qf, rows: n, labels: labels, stride: lp)
            }
        }}
        var out = [Float](repeating: 0, count: n * labels)
        for i in 0..<n { for l in 0..<labels { out[i * labels + l] = qf[i * lp + l] } }
        return out
    }

    /// Inference from probabilities `[N, L]`, returning the per-pixel argmax label `[N]`
    /// (ties: lowest label).
    public func labels(probabilities: [Float], labels: Int) -> [Int32] {
        let q = infer(unary: DenseCRF.unary(fromProbabilities: probabilities, clip: config.probabilityClip),
                      labels: labels)
        return rowArgmax(q, rows: height * width, cols: labels)
    }
}

/// Row-wise argmax of `[rows, cols]` (ties: first index).
func rowArgmax(_ m: [Float], rows: Int, cols: Int) -> [Int32] {
    var out = [Int32](repeating: 0, count: rows)
    m.withUnsafeBufferPointer { p in
        for i in 0..<rows {
            let r = p.baseAddress! + i * cols
            var best = r[0], bi = 0
            for j in 1..<max(cols, 1) where r[j] > best { best = r[j]; bi = j }
            out[i] = Int32(bi)
        }
    }
    return out
}

/// `q_i = softmax(x_i)` over the first `labels` entries of each row of stride `stride`
/// (max-subtracted). `x` and `q` may be the same buffer.
func softmaxRows(_ x: UnsafePointer<Float>, into q: UnsafeMutablePointer<Float>, rows: Int, labels: Int,
                 stride: Int) {
    for i in 0..<rows {
        let r = x + i * stride
        let o = q + i * stride
        var mx = r[0]
        for l in 1..<max(labels, 1) where r[l] > mx { mx = r[l] }
        var s: Float = 0
        for l in 0..<labels { let e = expf(r[l] - mx); o[l] = e; s += e }
        let inv = 1 / s
        for l in 0..<labels { o[l] *= inv }
    }
}
