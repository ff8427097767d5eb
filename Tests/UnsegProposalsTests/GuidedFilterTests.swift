import Testing
import UnsegTestSupport
import Foundation
import UnsegLinAlg
@testable import UnsegProposals

/// Direct guided filter: every box mean by looping over the clipped window, all in Double.
/// O(H W r^2); small images only.
private func naiveGuidedFilter(guide: [Float], p: [Float], h: Int, w: Int, r: Int, eps: Double) -> [Double] {
    func boxMean(_ v: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: h * w)
        for y in 0..<h {
            for x in 0..<w {
                var s = 0.0, c = 0.0
                for yy in max(0, y - r)...min(h - 1, y + r) {
                    for xx in max(0, x - r)...min(w - 1, x + r) { s += v[yy * w + xx]; c += 1 }
                }
                out[y * w + x] = s / c
            }
        }
        return out
    }
    let gi = guide.map(Double.init), pi = p.map(Double.init)
    let mI = boxMean(gi), mP = boxMean(pi)
    let mIP = boxMean(zip(gi, pi).map { $0 * $1 }), mII = boxMean(gi.map { $0 * $0 })
    var a = [Double](repeating: 0, count: h * w), b = a
    for i in 0..<(h * w) {
        a[i] = (mIP[i] - mI[i] * mP[i]) / (mII[i] - mI[i] * mI[i] + eps)
        b[i] = mP[i] - a[i] * mI[i]
    }
    let mA = boxMean(a), mB = boxMean(b)
    return (0..<(h * w)).map { mA[$0] * gi[$0] + mB[$0] }
}

private func randomImage(_ h: Int, _ w: Int, _ rng: inout SeededRandom) -> [UInt8] {
    (0..<(h * w * 3)).map { _ in UInt8(rng.int(below: 256)) }
}

@Suite struct GuidedFilterTests {
    /// Integral-image filter vs the direct windowed computation, on random images and masks,
    /// radii from 0 to larger than the image. Tolerance 1e-4 absolute: the integral images are
    /// Double (error ~1e-12); the output is rounded to Float (~6e-8 relative) but a/b involve
    /// division by var + eps >= 1e-3 so Float rounding of the inputs is harmless; 1e-4 leaves margin
    /// while any wrong window count or clipping error would be >= 1e-2.
    @Test func matchesDirectWindowedComputation() throws {
        for seed: UInt64 in [1, 2, 3] {
            var rng = SeededRandom(seed: seed)
            let h = 9 + rng.int(below: 8), w = 9 + rng.int(below: 8)
            let img = randomImage(h, w, &rng)
            let p = (0..<(h * w)).map { _ in rng.float() }
            for r in [0, 1, 2, 4, 9, 40] {
                for eps: Float in [1e-3, 0.1] {
                    let f = try GuidedFilter(image: img, height: h, width: w, config: GuidedFilterConfig(radius: r, eps: eps))
                    let got = f.apply(p)
                    let want = naiveGuidedFilter(guide: f.guide, p: p, h: h, w: w, r: r, eps: Double(eps))
                    let err = zip(got, want).map { abs(Double($0) - $1) }.max()!
                    #expect(err < 1e-4, "seed \(seed) \(h)x\(w) r=\(r) eps=\(eps): max abs error \(err)")
                }
            }
        }
    }

    /// The guide is the RGB mean scaled to [0, 1] (hand-computed pixel).
    @Test func guideIsScaledChannelMean() throws {
        let img: [UInt8] = [255, 0, 0, 30, 60, 90]
        let f = try GuidedFilter(image: img, height: 1, width: 2)
        expectClose(Double(f.guide[0]), Double(1.0 / 3.0), abs: 1e-6)
        expectClose(Double(f.guide[1]), Double(60.0 / 255.0), abs: 1e-6)
    }

    /// A constant input is a fixed point (cov = 0 so a = 0, b = c), whatever the guide.
    @Test func constantInputIsPreserved() throws {
        var rng = SeededRandom(seed: 7)
        let img = randomImage(12, 10, &rng)
        let f = try GuidedFilter(image: img, height: 12, width: 10, config: GuidedFilterConfig(radius: 3))
        let out = f.apply([Float](repeating: 0.37, count: 120))
        #expect(out.allSatisfy { abs($0 - 0.37) < 1e-6 }, "seed 7: max dev \(out.map { abs($0 - 0.37) }.max()!)")
    }

    /// Multi-channel filtering (shared guide statistics) equals filtering each channel alone,
    /// bit for bit, and is deterministic.
    @Test func channelsMatchSingleMaps() throws {
        var rng = SeededRandom(seed: 11)
        let h = 14, w = 11, k = 3
        let img = randomImage(h, w, &rng)
        let maps = (0..<(h * w * k)).map { _ in rng.float() }
        let f = try GuidedFilter(image: img, height: h, width: w, config: GuidedFilterConfig(radius: 2))
        let all = f.apply(channels: maps, channels: k)
        #expect(all == f.apply(channels: maps, channels: k), "seed 11: not deterministic")
        for c in 0..<k {
            let single = f.apply((0..<(h * w)).map { maps[$0 * k + c] })
            #expect((0..<(h * w)).allSatisfy { all[$0 * k + c] == single[$0] }, "seed 11 channel \(c)")
        }
    }

    @Test func rejectsBadInput() {
        #expect(throws: RefinementError.self) { try GuidedFilter(image: [1, 2, 3], height: 2, width: 2) }
        #expect(throws: RefinementError.self) {
            try GuidedFilter(image: [UInt8](repeating: 0, count: 12), height: 2, width: 2,
                             config: GuidedFilterConfig(radius: -1))
        }
        #expect(throws: RefinementError.self) {
            try GuidedFilter(image: [UInt8](repeating: 0, count: 12), height: 2, width: 2,
                             config: GuidedFilterConfig(eps: 0))
        }
    }

    /// Stable coding keys; missing keys decode to the defaults.
    @Test func configCoding() throws {
        let data = try JSONEncoder().encode(GuidedFilterConfig(radius: 4, eps: 0.01))
        let json = String(decoding: data, as: UTF8.self)
        #expect(json.contains("\"radius\":4") && json.contains("\"eps\""), "\(json)")
        #expect(try JSONDecoder().decode(GuidedFilterConfig.self, from: data) == GuidedFilterConfig(radius: 4, eps: 0.01))
        #expect(try JSONDecoder().decode(GuidedFilterConfig.self, from: Data("{}".utf8)) == GuidedFilterConfig())
    }
}
