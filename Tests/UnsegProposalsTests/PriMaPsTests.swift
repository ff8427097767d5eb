import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegProposals
import UnsegFixtures

@Suite struct PriMaPsTests {
    // Planted rectangles with distinct mean directions (C = 64, orthogonal region directions, cross-region cosine ~0.2,
    // within-region ~0.8) are far apart relative to psi = 0.4, so each region should come out as
    // one raw mask: IoU >= 0.95 (a few noisy cells may fall below the threshold). The final labels
    // pass through the 3x3 median with reflect padding, which removes rectangle corners and pulls a
    // rectangle that stops one cell short of the image border out to the border (the reflected
    // window sees it twice): up to a one-cell strip on two sides, so IoU >= 0.75 there.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func plantedRegionsAreRecovered(seed: UInt64) throws {
        let (f, map) = PlantedFeatures.make(height: 24, width: 24, channels: 64, regions: 5, seed: seed)
        let p = try PriMaPs.propose(features: f, height: 24, width: 24, config: PriMaPsConfig())
        let raw = rawLabels(p)
        for r in 0..<5 {
            let (iou, label) = bestIoU(region: r, regionMap: map, labels: raw)
            #expect(iou >= 0.95, "seed \(seed): region \(r) best raw-mask IoU \(iou) with mask \(label), K = \(p.maskCount)")
            let (iouFinal, labelFinal) = bestIoU(region: r, regionMap: map, labels: p.labels)
            #expect(iouFinal >= 0.75, "seed \(seed): region \(r) best label IoU \(iouFinal) with label \(labelFinal)")
        }
        #expect(p.stats.lapackFallbacks == 0, "seed \(seed): \(p.stats)")
    }

    /// Index of the raw mask holding each cell (masks are disjoint), 0 for none.
    func rawLabels(_ p: MaskProposals) -> [UInt8] {
        (0..<(p.height * p.width)).map { i in
            for k in 0..<p.maskCount where p.rawMasks[k, i] > 0 { return UInt8(k + 1) }
            return 0
        }
    }

    @Test(arguments: PrincipalSolver.allCases)
    func solversGiveTheSameMasks(solver: PrincipalSolver) throws {
        // All solvers reach cos > 0.9999 to the top eigenvector; the anchor (an argmax over cells)
        // is then the same on well-separated data, so the raw masks agree exactly.
        let (f, _) = PlantedFeatures.make(height: 20, width: 20, channels: 48, regions: 6, seed: 11)
        let ref = try PriMaPs.propose(features: f, height: 20, width: 20, config: PriMaPsConfig(solver: .lapack))
        let p = try PriMaPs.propose(features: f, height: 20, width: 20, config: PriMaPsConfig(solver: solver))
        #expect(p.labels == ref.labels, "solver \(solver) seed 11")
        #expect(p.maskCount == ref.maskCount)
    }

    @Test func deterministicAcrossRunsAndThreads() throws {
        let maps = (0..<6).map { PlantedFeatures.make(height: 16, width: 16, channels: 40, regions: 4, seed: 100 + UInt64($0)).features }
        let serial = try maps.map { try PriMaPs.propose(features: $0, height: 16, width: 16) }
        let again = try maps.map { try PriMaPs.propose(features: $0, height: 16, width: 16) }
        let one = try PriMaPs.proposeBatch(maps, height: 16, width: 16, threads: 1)
        let two = try PriMaPs.proposeBatch(maps, height: 16, width: 16, threads: 2)
        #expect(serial == again, "seeds 100...105")
        #expect(one == serial, "seeds 100...105, 1 thread")
        #expect(two == serial, "seeds 100...105, 2 threads")
    }

    @Test func allZeroFeaturesGiveOnlyBackground() throws {
        let p = try PriMaPs.propose(features: Matrix(rows: 30, cols: 8), height: 5, width: 6)
        #expect(p.maskCount == 0)
        #expect(p.labels == [UInt8](repeating: 0, count: 30))
        #expect(p.channels.rows == 1 && p.channels.data.allSatisfy { $0 == 1 })
        #expect(p.logProbabilities.data.allSatisfy { $0 == 0 })   // log_softmax of one channel
    }

    /// Left half: one direction plus noise; right half: zero features. The first mask takes the
    /// left half; then the covariance of the remaining (zero) rows vanishes, u = their mean = 0,
    /// the similarities are all 0 and the `max(s) <= 0` guard stops the loop even at coverage 1.
    @Test func oneMaskThenMaxSimilarityGuardStops() throws {
        var rng = SeededRandom(seed: 7)
        let h = 6, w = 8, c = 16
        let dir = (0..<c).map { _ in rng.gaussian() }
        var f = Matrix(rows: h * w, cols: c)
        for y in 0..<h { for x in 0..<(w / 2) { for j in 0..<c { f[y * w + x, j] = dir[j] + 0.05 * rng.gaussian() } } }
        let p = try PriMaPs.propose(features: f, height: h, width: w, config: PriMaPsConfig(coverage: 1))
        #expect(p.maskCount == 1, "seed 7")
        #expect(p.stats.iterations == 2, "seed 7: the second iteration should stop on max(s) <= 0")
        let expected = (0..<(h * w)).map { UInt8($0 % w < w / 2 ? 1 : 0) }
        #expect(p.labels == expected, "seed 7")
        // K = 1 post-processing: two channels, probabilities sum to 1 per cell
        #expect(p.logProbabilities.rows == 2)
        for i in 0..<(h * w) {
            let s = exp(p.logProbabilities[0, i]) + exp(p.logProbabilities[1, i])
            expectClose(Double(s), Double(1), abs: 1e-5)
        }
    }

    /// 3x3 grid, 64 channels (fewer cells than channels): three rows with three directions.
    @Test func fewerCellsThanChannels() throws {
        var rng = SeededRandom(seed: 21)
        let c = 64
        let dirs = (0..<3).map { _ in (0..<c).map { _ in rng.gaussian() } }
        var f = Matrix(rows: 9, cols: c)
        for i in 0..<9 { for j in 0..<c { f[i, j] = dirs[i / 3][j] + 0.1 * rng.gaussian() } }
        let p = try PriMaPs.propose(features: f, height: 3, width: 3, config: PriMaPsConfig())
        #expect(p.maskCount == 3, "seed 21: \(p.rawMasks)")
        // each raw mask is exactly one grid row
        var seen = Set<Int>()
        for k in 0..<p.maskCount {
            let cells = (0..<9).filter { p.rawMasks[k, $0] > 0 }
            #expect(cells.count == 3 && Set(cells.map { $0 / 3 }).count == 1, "seed 21: mask \(k) = \(cells)")
            if let first = cells.first { seen.insert(first / 3) }
        }
        #expect(seen.count == 3)
        // the median filter on 3 horizontal bands keeps them: labels follow the rows
        for y in 0..<3 { #expect(Set(p.labels[(y * 3)..<(y * 3 + 3)]).count == 1) }
    }

    @Test func singleCell() throws {
        let f = Matrix([[0.5, -1, 2]])
        let p = try PriMaPs.propose(features: f, height: 1, width: 1)
        #expect(p.maskCount == 1)
        #expect(p.rawMasks.data == [1])
        #expect(p.labels == [1])
        #expect(p.channels.data == [0, 1])
    }

    /// C = 1: normalised features are +-1 (or 0). Positives and negatives tie in |s|, so the
    /// sign rule's tie-break makes u = +1: the first mask is the positive cells, the second the
    /// negative ones; the zero cells (last row) are in no raw mask, but the median with reflect
    /// padding sees row 3 twice in row 4's window, so they end up labelled 2.
    @Test func singleChannel() throws {
        let h = 5, w = 4
        var f = Matrix(rows: h * w, cols: 1)
        for i in 0..<(h * w) { f.data[i] = i < 8 ? Float(1 + i) : (i < 16 ? -2 : 0) }
        let p = try PriMaPs.propose(features: f, height: h, width: w, config: PriMaPsConfig(coverage: 1))
        #expect(p.maskCount == 2)
        #expect((0..<20).filter { p.rawMasks[0, $0] > 0 } == Array(0..<8))
        #expect((0..<20).filter { p.rawMasks[1, $0] > 0 } == Array(8..<16))
        #expect(p.labels == [UInt8](repeating: 1, count: 8) + [UInt8](repeating: 2, count: 12))
    }

    @Test func maskCapIsRespected() throws {
        let (f, _) = PlantedFeatures.make(height: 16, width: 16, channels: 32, regions: 5, seed: 3)
        let p = try PriMaPs.propose(features: f, height: 16, width: 16, config: PriMaPsConfig(maxMasks: 2))
        #expect(p.maskCount == 2)
        #expect(p.labels.allSatisfy { $0 <= 2 })
    }

    @Test func badInputThrows() {
        let f = Matrix(rows: 10, cols: 4, repeating: 1)
        #expect(throws: ProposalError.self) { try PriMaPs.propose(features: f, height: 3, width: 3) }
        #expect(throws: ProposalError.self) { try PriMaPs.propose(features: f, height: 0, width: 10) }
        #expect(throws: ProposalError.self) {
            try PriMaPs.propose(features: f, height: 2, width: 5, config: PriMaPsConfig(threshold: 1.5))
        }
        #expect(throws: ProposalError.self) {
            try PriMaPs.propose(features: f, height: 2, width: 5, config: PriMaPsConfig(maxMasks: 255))
        }
        var g = f
        g[3, 2] = .nan
        #expect(throws: ProposalError.self) { try PriMaPs.propose(features: g, height: 2, width: 5) }
    }

    /// Post-processing on hand-made masks: an isolated cell vanishes under the median, a block stays.
    @Test func postProcessingByHand() {
        let h = 5, w = 5
        var raw = Matrix(rows: 2, cols: 25)
        raw[0, 12] = 1                                   // isolated centre cell: median removes it
        for y in 0..<3 { for x in 0..<2 { raw[1, y * w + x] = 0.5 } }  // 3x2 block at the left edge
        let p = MaskProposals.postProcessed(rawMasks: raw, height: h, width: w)
        #expect(p.channels.row(1).allSatisfy { $0 == 0 })
        // The block: x10 clamps 0.5 to 1. Counting block cells in each reflect-padded 3x3 window
        // (>= 5 of 9 survive): (0,0) 9, (0,1) 6, (1,0) 9, (1,1) 6, (2,0) 6, (2,1) 4, (3,0) 3, (0,2) 3.
        var expected = [UInt8](repeating: 0, count: 25)
        for (y, x) in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)] { expected[y * w + x] = 2 }
        #expect(p.labels == expected, "\(p.labels)")
        for i in 0..<25 {
            let probs = (0..<3).map { exp(p.logProbabilities[$0, i]) }
            expectClose(Double(probs.reduce(0, +)), Double(1), abs: 1e-5)
            // bg = clamp(1 - sum) so exactly one channel is 1: log_softmax gives 1 - log(e + 2)
            expectClose(Double(p.logProbabilities[Int(p.labels[i]), i]), Double((1 - Foundation.log(Foundation.exp(1.0) + 2))), abs: 1e-5)
        }
    }

    /// The scatter after downdates equals the scatter rebuilt from the remaining rows.
    @Test func downdateMatchesRebuild() {
        let f = gaussianMatrix(rows: 120, cols: 24, seed: 5)
        var run = PriMaPs.Run(features: f, config: PriMaPsConfig())
        var scratch = [Float](repeating: 0, count: 120 * 24)
        run.rebuild(rows: nil, scratch: &scratch)
        run.downdate(rows: Array(stride(from: 0, to: 120, by: 3)), scratch: &scratch)
        run.downdate(rows: [1, 4, 7, 10], scratch: &scratch)
        let afterDowndates = run.cov.dense()
        let removed = Set(Array(stride(from: 0, to: 120, by: 3)) + [1, 4, 7, 10])
        run.rebuild(rows: (0..<120).filter { !removed.contains($0) }, scratch: &scratch)
        let rebuilt = run.cov.dense()
        // Float scatter of ~120 unit-variance rows: entries ~100, rounding ~1e-5 relative per op.
        let scale = rebuilt.data.map { abs($0) }.max()!
        for t in 0..<rebuilt.count {
            #expect(abs(afterDowndates.data[t] - rebuilt.data[t]) <= 1e-4 * scale, "seed 5 entry \(t)")
        }
    }

    /// Each iterative solver matches the top eigenvector of the centred covariance from a Double
    /// LAPACK reference (cos > 0.9999) on random data with a decaying spectrum, without fallback.
    @Test(arguments: [UInt64(1), 2, 3])
    func solverMatchesLAPACK(seed: UInt64) throws {
        let n = 300, c = 48
        var g = gaussianMatrix(rows: c, cols: c, seed: seed &+ 1000)
        for i in 0..<c { for j in 0..<c { g[i, j] += g[j, i] } }
        let q = try LAPACK.symmetricEigen(g).vectors          // random orthogonal [c, c]
        var x = gaussianMatrix(rows: n, cols: c, seed: seed)
        for i in 0..<n { for j in 0..<c { x[i, j] *= 1 / (1 + 0.3 * Float(j)) } }
        x = BLAS.matmul(x, q)
        // Double reference: centred covariance, top eigenvector
        let mean = x.columnMeans()
        var a = [Double](repeating: 0, count: c * c)
        for i in 0..<n { for j in 0..<c { for k in 0..<c {
            a[j * c + k] += Double(x[i, j] - mean[j]) * Double(x[i, k] - mean[k])
        } } }
        let ref = try LAPACK.symmetricEigenDouble(a, n: c)
        let top = Array(ref.vectors[((c - 1) * c)..<(c * c)])
        for method in PrincipalSolver.allCases {
            var run = PriMaPs.Run(features: x, config: PriMaPsConfig(solver: method))
            var scratch = [Float](repeating: 0, count: n * c)
            run.rebuild(rows: nil, scratch: &scratch)
            var solver = TopEigenSolver(channels: c, method: method, tolerance: 1e-4, maxMatvecs: 256)
            let u = try solver.top(run.cov, start: TopEigenSolver.fixedStart(c))
            var dot = 0.0
            for j in 0..<c { dot += Double(u[j]) * top[j] }
            #expect(abs(dot) > 0.9999, "seed \(seed) \(method): |cos| = \(abs(dot))")
            #expect(solver.fallbacks == 0, "seed \(seed) \(method) fell back to LAPACK")
        }
    }
}
