import Foundation
import Testing
@testable import UnsegImaging
import UnsegCore

/// Direct per-pixel reference for PyTorch bilinear, align_corners=False, in Double.
func referenceBilinear(_ src: [Double], w: Int, h: Int, outW: Int, outH: Int) -> [Double] {
    func coord(_ d: Int, _ inN: Int, _ outN: Int) -> (Int, Int, Double) {
        var s = (Double(d) + 0.5) * Double(inN) / Double(outN) - 0.5
        if s < 0 { s = 0 }
        let i0 = Int(s.rounded(.down))
        let i1 = min(i0 + 1, inN - 1)
        return (i0, i1, s - Double(i0))
    }
    var out = [Double](repeating: 0, count: outW * outH)
    for y in 0..<outH {
        let (y0, y1, ly) = coord(y, h, outH)
        for x in 0..<outW {
            let (x0, x1, lx) = coord(x, w, outW)
            out[y * outW + x] = (1 - ly) * ((1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1])
                + ly * ((1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1])
        }
    }
    return out
}

@Suite struct ResizeTests {
    @Test func bilinearHandCaseMatchesPyTorch() {
        // torch.nn.functional.interpolate(tensor([[1,2],[3,4]]), size=(4,4), mode="bilinear",
        // align_corners=False) gives these rows.
        let out = Resize.bilinear([1, 2, 3, 4], width: 2, height: 2, channels: 1, toWidth: 4, toHeight: 4)
        let expected: [Float] = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5,
                                 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0]
        #expect(out == expected)  // exact: all weights are multiples of 1/4
    }

    @Test func bilinearMatchesDirectReference() {
        for seed: UInt64 in 1...12 {
            var rng = TestRNG(seed: seed)
            let w = 1 + rng.int(below: 9), h = 1 + rng.int(below: 9)
            let ow = 1 + rng.int(below: 13), oh = 1 + rng.int(below: 13)
            let c = 1 + rng.int(below: 3)
            let src = (0..<(w * h * c)).map { _ in Float(rng.double() * 10 - 5) }
            let out = Resize.bilinear(src, width: w, height: h, channels: c, toWidth: ow, toHeight: oh)
            for k in 0..<c {
                let plane = (0..<(w * h)).map { Double(src[$0 * c + k]) }
                let ref = referenceBilinear(plane, w: w, h: h, outW: ow, outH: oh)
                for i in 0..<(ow * oh) {
                    // Float32 arithmetic on values of magnitude <= 5: 1e-4 is ~100 ulp of slack.
                    #expect(abs(Double(out[i * c + k]) - ref[i]) < 1e-4,
                            "seed \(seed) \(w)x\(h)->\(ow)x\(oh) channel \(k) pixel \(i)")
                }
            }
        }
    }

    @Test func bilinearHalvingAveragesTwoByTwoBlocks() {
        // At exactly 2x down, align_corners=False samples at 2d + 0.5: the mean of each 2x2 block.
        var rng = TestRNG(seed: 21)
        let w = 8, h = 6
        let img = RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { _ in rng.byte() & 0xFC })
        let half = Resize.bilinear(img, width: 4, height: 3)
        for y in 0..<3 {
            for x in 0..<4 {
                let a = img[2 * x, 2 * y], b = img[2 * x + 1, 2 * y], c = img[2 * x, 2 * y + 1], d = img[2 * x + 1, 2 * y + 1]
                // bytes are multiples of 4, so the mean of four is an integer: exact
                let r = (Int(a.r) + Int(b.r) + Int(c.r) + Int(d.r)) / 4
                #expect(Int(half[x, y].r) == r, "seed 21 at (\(x), \(y))")
            }
        }
        #expect(Resize.bilinear(img, width: w, height: h) == img, "identity size is a no-op")
    }

    @Test func nearestHandCasesAndReference() {
        #expect(NearestResampler.indices(input: 4, output: 2, mode: .halfPixel) == [1, 3])
        #expect(NearestResampler.indices(input: 4, output: 2, mode: .legacyFloor) == [0, 2])
        #expect(NearestResampler.indices(input: 2, output: 4, mode: .halfPixel) == [0, 0, 1, 1])
        #expect(NearestResampler.indices(input: 3, output: 7, mode: .halfPixel) == [0, 0, 1, 1, 1, 2, 2])
        for seed: UInt64 in 1...8 {
            var rng = TestRNG(seed: seed)
            let w = 1 + rng.int(below: 10), h = 1 + rng.int(below: 10)
            let ow = 1 + rng.int(below: 15), oh = 1 + rng.int(below: 15)
            let lab = GrayImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in UInt8(rng.int(below: 30)) })
            let out = Resize.nearest(lab, width: ow, height: oh)
            for y in 0..<oh {
                for x in 0..<ow {
                    // Reference in Double: the source pixel whose cell contains the output centre.
                    let sx = min(w - 1, Int(((Double(x) + 0.5) * Double(w) / Double(ow)).rounded(.down)))
                    let sy = min(h - 1, Int(((Double(y) + 0.5) * Double(h) / Double(oh)).rounded(.down)))
                    #expect(out[x, y] == lab[sx, sy], "seed \(seed) \(w)x\(h)->\(ow)x\(oh) at (\(x), \(y))")
                }
            }
            // Nearest never invents ids.
            #expect(Set(out.pixels).isSubset(of: Set(lab.pixels)), "seed \(seed)")
            let rgb = Palette.voc(count: 30).colorize(lab)
            #expect(Resize.nearest(rgb, width: ow, height: oh) == Palette.voc(count: 30).colorize(out), "seed \(seed)")
        }
    }
}
