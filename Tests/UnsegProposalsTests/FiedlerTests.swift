import Foundation
import Testing
import UnsegLinAlg
import UnsegTestSupport
@testable import UnsegProposals

/// The Fiedler foreground against a direct dense generalised eigen-solve (scipy.linalg.eigh of
/// (D - W, D)) on small random affinities, sign and flip rule included.
@Suite struct FiedlerTests {
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func matchesTheGeneralisedEigenSolve(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let h = 5, w = 7, c = 6
        // Two loose groups of cells plus noise, so v_1 is well separated.
        let a = (0..<c).map { _ in rng.gaussian() }, b = (0..<c).map { _ in rng.gaussian() }
        var f = Matrix(rows: h * w, cols: c)
        for i in 0..<(h * w) {
            let base = (i % w) < 3 + Int(seed % 2) ? a : b
            for j in 0..<c { f.data[i * c + j] = base[j] + 0.7 * rng.gaussian() }
        }
        let got = try Spectral.fiedler(features: f, height: h, width: w, solver: .dense)
        let out = try runPython("""
        import json, sys
        import numpy as np
        from scipy.linalg import eigh
        F = np.array(json.loads(sys.stdin.read()), dtype=np.float64)
        Fn = F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)
        W = np.maximum(Fn @ Fn.T, 0); W /= W.max()
        D = np.diag(np.maximum(W.sum(1), 1e-12))
        vals, vecs = eigh(D - W, D)
        v = vecs[:, 1]
        if (v > 0).sum() * 2 > len(v): v = -v
        print(json.dumps(dict(v=v.tolist())))
        """, stdin: "[" + (0..<(h * w)).map { i in "[" + (0..<c).map { "\(f.data[i * c + $0])" }.joined(separator: ",") + "]" }.joined(separator: ",") + "]")
        let ref = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let v = ref["v"] as! [Double]
        let m = v.map(abs).max()!
        let wantSoft = v.map { 0.5 + 0.5 * $0 / m }
        let wantMask = v.map { UInt8($0 > 0 ? 1 : 0) }
        for i in 0..<(h * w) where abs(v[i]) > 1e-3 * m {
            #expect(got.mask[i] == wantMask[i], "seed \(seed) cell \(i): v = \(v[i])")
            expectClose(Double(got.soft[i]), wantSoft[i], abs: 2e-4, "seed \(seed) cell \(i) soft")
        }
        #expect(2 * got.mask.filter { $0 == 1 }.count <= h * w, "the foreground covers at most half the image")
        #expect(zip(got.mask, got.soft).allSatisfy { ($0 == 1) == ($1 >= 0.5) }, "soft >= 0.5 exactly on the mask")
    }
}
