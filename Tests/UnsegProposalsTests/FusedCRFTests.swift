import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegProposals
import UnsegFixtures

/// The fused mean-field pass (`DenseCRF.infer`) against the unfused composition of lattice
/// filters (`inferUnfused`), and the vectorised exp against `expf`.
@Suite struct FusedCRFTests {
    /// Same model, same summation order; only exp differs (relative error ~2e-7 per call, growing
    /// through 10 iterations of a contraction): Q agrees to 1e-4 absolute and the argmax everywhere
    /// except exact near-ties (none expected on these random inputs; allowed: 0.1% of pixels).
    @Test(arguments: [(UInt64(81), 1, 3), (UInt64(82), 5, 10), (UInt64(83), 10, 7), (UInt64(84), 0, 4), (UInt64(85), 3, 1)])
    func fusedMatchesUnfused(seed: UInt64, iterations: Int, labels: Int) throws {
        let c = RefinementBenchCase(side: 24, labels: labels, seed: seed)
        let crf = try DenseCRF(image: c.image, height: 24, width: 24, config: DenseCRFConfig(iterations: iterations))
        let u = DenseCRF.unary(fromProbabilities: c.probabilities)
        let a = crf.infer(unary: u, labels: labels), b = crf.inferUnfused(unary: u, labels: labels)
        let maxDiff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        #expect(maxDiff < 1e-4, "seed \(seed) L=\(labels) it=\(iterations): max |Q_fused - Q_unfused| = \(maxDiff)")
        let n = 24 * 24
        let sums = (0..<n).map { i in (0..<labels).reduce(Float(0)) { $0 + a[i * labels + $1] } }
        #expect(sums.allSatisfy { abs($0 - 1) < 1e-5 }, "seed \(seed): rows of Q sum to 1")
        let am = Reduce.rowArgmax(a, rows: n, cols: labels), bm = Reduce.rowArgmax(b, rows: n, cols: labels)
        let differ = zip(am, bm).filter { $0 != $1 }.count
        #expect(differ <= n / 1000, "seed \(seed): argmax differs on \(differ) of \(n) pixels")
    }

    /// Vectorised exp vs Double exp over the softmax range [-87, 0] and a bit above.
    @Test func fastExpRelativeError() {
        var worst = 0.0
        var x: Float = -87
        while x < 10 {
            let r = Double(FastMath.exp(x)), e = Foundation.exp(Double(x))
            worst = max(worst, abs(r - e) / e)
            x += 0.0137
        }
        #expect(worst < 1e-6, "max relative error \(worst)")
    }
}
