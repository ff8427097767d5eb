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

    /// The E-step's argmax: the C kernel's classes equal the Swift path's, with and without masks;
    /// with masks, background pixels are 0 and every mask pixel is the unmasked class.
    @Test(arguments: [(27, 40, 320), (5, 8, 64), (3, 6, 37), (12, 5, 16)])
    func argmaxKernelEqualsSwiftPath(classes k: Int, grid g: Int, side: Int) throws {
        try #require(EMKernels.hasAVX2, "this CPU has no AVX2: only the Swift path exists here")
        let kp = PaddedLogits.paddedWidth(k)
        var rng = SeededRandom(seed: UInt64(k * 7 + g))
        var low = [Float](repeating: PaddedLogits.padValue, count: g * g * kp)
        // Coarse values so that ties happen (first index wins), and a few exact ties planted.
        for i in 0..<(g * g) { for j in 0..<k { low[i * kp + j] = Float(rng.int(below: 5)) } }
        // Masks: whole background rows, background pixels inside rows, and mask pixels.
        let masks = (0..<(side * side)).map { i -> UInt8 in
            (i / side) % 5 == 1 ? 0 : (rng.int(below: 4) == 0 ? 0 : UInt8(1 + rng.int(below: 3)))
        }
        let table = ResampleTable(BilinearResampler(sourceHeight: g, sourceWidth: g, targetHeight: side, targetWidth: side))
        let run = { (vectorised: Bool, masked: Bool) -> [UInt8] in
            var out = [UInt8](repeating: 77, count: side * side)
            let row = UnsafeMutablePointer<Float>.allocate(capacity: g * kp), pixel = UnsafeMutablePointer<Float>.allocate(capacity: kp)
            defer { row.deallocate(); pixel.deallocate() }
            low.withUnsafeBufferPointer { lp in
                masks.withUnsafeBufferPointer { mp in
                    out.withUnsafeMutableBufferPointer { o in
                        EMKernels.argmaxUpsampled(low: lp.baseAddress!, table: table, kp: kp, rowScratch: row, pixel: pixel,
                                                  out: o.baseAddress!, masks: masked ? mp.baseAddress! : nil, vectorised: vectorised)
                    }
                }
            }
            return out
        }
        let swiftAll = run(false, false), cAll = run(true, false)
        #expect(cAll == swiftAll)
        #expect(Set(swiftAll).count > 1 && swiftAll.allSatisfy { Int($0) < k }, "a constant map proves nothing")
        let swiftMasked = run(false, true), cMasked = run(true, true)
        #expect(cMasked == swiftMasked)
        for i in 0..<(side * side) { #expect(swiftMasked[i] == (masks[i] == 0 ? 0 : swiftAll[i]), "pixel \(i)") }
    }

    /// Momentum and running logits from one stacked product are two separate products' values (to
    /// rounding: OpenBLAS blocks a wider product differently), each in its own padded buffer.
    @Test(arguments: [(1600, 384, 27), (37, 16, 5), (64, 8, 3), (100, 768, 27)])
    func stackedLogitsEqualSeparateProducts(rows n: Int, channels c: Int, classes k: Int) {
        var rng = SeededRandom(seed: UInt64(n + c + k))
        let f = Matrix(rows: n, cols: c, data: (0..<(n * c)).map { _ in rng.gaussian() })
        let a = Matrix(rows: k, cols: c, data: (0..<(k * c)).map { _ in rng.gaussian() })
        let b = Matrix(rows: k, cols: c, data: (0..<(k * c)).map { _ in rng.gaussian() })
        let kp = PaddedLogits.paddedWidth(k)
        let pair = PaddedLogits.computePair(features: f, stacked: PaddedLogits.stack(a, b), paddedWidth: kp)
        let sa = PaddedLogits.compute(features: f, weights: a, paddedWidth: kp)
        let sb = PaddedLogits.compute(features: f, weights: b, paddedWidth: kp)
        // Rounding of a C-term dot product is far below 1e-4 |f_i| |w_j|; a wrong column is not.
        let norms = { (m: Matrix) in (0..<m.rows).map { r in (0..<m.cols).reduce(Float(0)) { $0 + m.data[r * m.cols + $1] * m.data[r * m.cols + $1] }.squareRoot() } }
        let nf = norms(f)
        let worst = { (x: [Float], y: [Float], w: Matrix) -> Float in
            let nw = norms(w)
            return (0..<n).flatMap { i in (0..<k).map { j in abs(x[i * kp + j] - y[i * kp + j]) / (nf[i] * nw[j]) } }.max()!
        }
        #expect(worst(pair.first, sa, a) <= 1e-4, "first copy")
        #expect(worst(pair.second, sb, b) <= 1e-4, "second copy")
        #expect(worst(pair.first, sb, b) > 1e-2, "the two copies are told apart")
        // The padding stays the pad value: a shifted copy would put logits there.
        let pads = (0..<n).flatMap { i in (k..<kp).flatMap { j in [pair.first[i * kp + j], pair.second[i * kp + j]] } }
        #expect(pads.allSatisfy { $0 == PaddedLogits.padValue }, "padding")
    }
}
