import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegProposals
import UnsegFixtures

/// Direct Gaussian sum over all in-image pixels within `radius` (Chebyshev, i.e. the separable
/// square window; `radius = nil`: no truncation), Double: `sum_j exp(-|p_i - p_j|^2 / (2 s^2)) v_j`.
private func directSpatialGaussian(_ v: [Float], h: Int, w: Int, channels c: Int, sxy: Double,
                                   radius: Int?) -> [Double] {
    var out = [Double](repeating: 0, count: h * w * c)
    for y in 0..<h {
        for x in 0..<w {
            for yy in 0..<h {
                for xx in 0..<w {
                    if let r = radius, abs(yy - y) > r || abs(xx - x) > r { continue }
                    let d2 = Double((yy - y) * (yy - y) + (xx - x) * (xx - x))
                    let k = exp(-d2 / (2 * sxy * sxy))
                    for l in 0..<c { out[(y * w + x) * c + l] += k * Double(v[(yy * w + xx) * c + l]) }
                }
            }
        }
    }
    return out
}

@Suite struct GaussianBlurTests {
    /// The separable filter equals the direct Gaussian sum over in-image pixels (borders by
    /// truncation), on random fields incl. a field of ones (the CRF normalisation), channel counts
    /// with SIMD padding, and images narrower/shorter than the radius.
    @Test(arguments: [(UInt64(91), 9, 11, 5, Float(1)), (UInt64(92), 7, 13, 4, Float(1.7)),
                      (UInt64(93), 3, 4, 1, Float(2)), (UInt64(94), 12, 8, 10, Float(0.6))])
    func separableEqualsDirectSum(seed: UInt64, h: Int, w: Int, channels c: Int, sxy: Float) {
        var rng = SeededRandom(seed: seed)
        let f = SeparableGaussian(height: h, width: w, sxy: sxy)
        #expect(f.radius == Int((3 * Double(sxy)).rounded(.up)), "seed \(seed): radius \(f.radius) for sxy \(sxy)")
        let random = (0..<(h * w * c)).map { _ in rng.float() * 2 - 0.5 }
        let ones = [Float](repeating: 1, count: h * w * c)
        for (name, v) in [("random", random), ("ones", ones)] {
            let got = f.filter(v, channels: c).map(Double.init)
            // Same square window: only Float rounding differs (values <= ~2 * kernel sum ~ 40,
            // taps and products rounded to 2^-24 relative): 1e-5 relative to the largest output.
            let windowed = directSpatialGaussian(v, h: h, w: w, channels: c, sxy: Double(sxy), radius: f.radius)
            let scale = windowed.map(abs).max()!
            let e1 = zip(got, windowed).map { abs($0 - $1) }.max()!
            #expect(e1 <= 1e-5 * scale, "seed \(seed) \(name): max |separable - direct window| = \(e1) (scale \(scale))")
            // Untruncated sum: the window drops the mass beyond R = ceil(3 sxy), per axis a relative
            // 2 sum_{d > R} k(d) / sum_d k(d) of about 3e-4 (sxy = 1) to 1e-3 (R = 3 sxy exactly,
            // sxy = 2, but that image is smaller than R so nothing is dropped there);
            // with |v| <= 1.5, 2e-3 of the largest output covers both axes with margin.
            let full = directSpatialGaussian(v, h: h, w: w, channels: c, sxy: Double(sxy), radius: nil)
            let e2 = zip(got, full).map { abs($0 - $1) }.max()!
            #expect(e2 <= 2e-3 * scale, "seed \(seed) \(name): max |separable - exact Gaussian| = \(e2) (scale \(scale))")
        }
        // Hand-checked corner of a 1-channel field of ones at sxy = 1: (1 + e^-1/2 + e^-2 + e^-9/2)^2.
        if sxy == 1 {
            let one = f.filter([Float](repeating: 1, count: h * w), channels: 1)
            let edge = 1 + exp(-0.5) + exp(-2.0) + exp(-4.5)
            expectClose(Double(Double(one[0])), Double(edge * edge), abs: 1e-5, "seed \(seed): corner kernel sum \(one[0]) vs \(edge * edge)")
        }
    }

    /// The CRF uses the exact spatial filter for the reference sxy = 1 and the lattice past
    /// radius 8; its normalisation is `1 / sqrt(in-image kernel sum)`.
    @Test func crfPicksFilterAndNormalisation() throws {
        let h = 10, w = 12
        let img = [UInt8](repeating: 90, count: h * w * 3)
        let small = try DenseCRF(image: img, height: h, width: w)
        #expect(small.usesExactSpatialKernel && small.latticeVertexCounts.gaussian == 0)
        let sums = directSpatialGaussian([Float](repeating: 1, count: h * w), h: h, w: w, channels: 1, sxy: 1, radius: 3)
        let err = zip(small.gaussianNorm, sums).map { abs(Double($0) - 1 / $1.squareRoot()) }.max()!
        // Float rounding of a sum ~6: 1e-6 absolute on norms ~0.4-0.8.
        #expect(err < 1e-6, "max norm error \(err)")
        let large = try DenseCRF(image: img, height: h, width: w, config: DenseCRFConfig(gaussianSxy: 3))
        #expect(!large.usesExactSpatialKernel && large.latticeVertexCounts.gaussian > 0)
    }

    /// The lattice fallback (gaussian sxy = 3, radius 9 > 8): fused inference still matches the
    /// unfused composition (as `FusedCRFTests`: only exp rounding differs, 1e-4 absolute).
    @Test func latticeFallbackFusedMatchesUnfused() throws {
        let c = RefinementBenchCase(side: 24, labels: 6, seed: 95)
        let crf = try DenseCRF(image: c.image, height: 24, width: 24, config: DenseCRFConfig(iterations: 4, gaussianSxy: 3))
        let u = DenseCRF.unary(fromProbabilities: c.probabilities)
        let a = crf.infer(unary: u, labels: 6), b = crf.inferUnfused(unary: u, labels: 6)
        let maxDiff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        #expect(maxDiff < 1e-4, "seed 95: max |Q_fused - Q_unfused| = \(maxDiff)")
    }
}
