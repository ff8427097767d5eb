import Testing
@testable import UnsegClustering
import UnsegCore
import UnsegLinAlg

/// The M-step pass's C kernel (8-lane AVX2) against the Swift path: the same bits, so a run's
/// checkpoint does not depend on which path the CPU takes.
@Suite struct EMKernelPathsTests {
    @Test(arguments: [(27, 40, 320), (5, 8, 64), (3, 6, 37), (12, 5, 16)])
    func avx2PassEqualsSwiftPassBitForBit(classes k: Int, grid g: Int, side: Int) throws {
        try #require(EMKernels.hasAVX2, "this CPU has no AVX2: only the Swift path exists here")
        let kp = PaddedLogits.paddedWidth(k)
        var rng = SeededRandom(seed: UInt64(k * 1000 + g))
        // Logits with a wide range (some classes far below the maximum, so the e^-60 flush is
        // exercised), padding lanes as the trainer writes them; labels with ignore pixels.
        var low = [Float](repeating: PaddedLogits.padValue, count: g * g * kp)
        for i in 0..<(g * g) { for j in 0..<k { low[i * kp + j] = rng.gaussian() * (j % 3 == 0 ? 40 : 3) } }
        let labels = (0..<(side * side)).map { i -> UInt8 in
            let v = rng.int(below: k + 2)
            return v >= k ? 255 : UInt8(i % 7 == 0 ? 0 : v)
        }
        let table = ResampleTable(BilinearResampler(sourceHeight: g, sourceWidth: g, targetHeight: side, targetWidth: side))
        let (c, s) = low.withUnsafeBufferPointer { lp in
            labels.withUnsafeBufferPointer { lb in
                (EMKernels.mStepPass(low: lp.baseAddress!, table: table, kp: kp, classCount: k, labels: lb.baseAddress!, vectorised: true),
                 EMKernels.mStepPass(low: lp.baseAddress!, table: table, kp: kp, classCount: k, labels: lb.baseAddress!, vectorised: false))
            }
        }
        #expect(c.slotLabels == s.slotLabels && c.labelled == s.labelled && c.pixels == s.pixels)
        #expect(c.slots.map(\.bitPattern) == s.slots.map(\.bitPattern), "gradient slots differ")
        #expect(c.nllSum.map(\.bitPattern) == s.nllSum.map(\.bitPattern), "NLL sums differ")
        #expect(c.softmaxSum.map(\.bitPattern) == s.softmaxSum.map(\.bitPattern), "softmax sums differ")
        #expect(c.slots.contains { $0 != 0 } && c.labelled > 0, "a pass that did nothing proves nothing")
    }
}
