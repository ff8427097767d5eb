import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegClustering
@testable import UnsegCore


/// `perCluster` points around each of `centres` with Gaussian noise `sigma`, rows shuffled.
func plantedClusters(centres: [[Float]], perCluster: Int, sigma: Float, seed: UInt64) -> (Matrix, [Int]) {
    var r = SeededRandom(seed: seed)
    let d = centres[0].count
    var rows: [[Float]] = [], truth: [Int] = []
    for (c, mu) in centres.enumerated() {
        for _ in 0..<perCluster { rows.append((0..<d).map { mu[$0] + sigma * r.gaussian() }); truth.append(c) }
    }
    let p = r.permutation(rows.count)
    return (Matrix(p.map { rows[$0] }), p.map { truth[$0] })
}

@Suite struct KMeansTests {
    @Test func recoversWellSeparatedPlantedClusters() throws {
        let seed: UInt64 = 21
        let centres: [[Float]] = [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 10, 10]]
        let (x, truth) = plantedClusters(centres: centres, perCluster: 60, sigma: 0.5, seed: seed)
        let res = try KMeans.fit(x, config: KMeansConfig(clusters: 5, restarts: 3, seed: seed, chunkRows: 64))
        // Every found cluster is exactly one planted cluster (separation 10 vs noise 0.5).
        for c in 0..<5 {
            let members = Set((0..<x.rows).filter { res.labels[$0] == Int32(c) }.map { truth[$0] })
            #expect(members.count == 1, "seed \(seed): cluster \(c) mixes planted clusters \(members)")
        }
        #expect(Set(res.labels).count == 5)
        // Inertia ~ n d sigma^2 = 300 * 3 * 0.25 = 225; a merge of two clusters would add >= 60 * 50.
        #expect(res.inertia < 400, "seed \(seed): inertia \(res.inertia)")
        // Centres within 0.3 of the planted ones.
        for c in 0..<5 {
            let best = centres.map { mu in zip(mu, res.centers.row(c)).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }.min()!
            #expect(best.squareRoot() < 0.3, "seed \(seed): centre \(c) is \(best.squareRoot()) from the nearest planted one")
        }
    }

    @Test(arguments: [KMeansMetric.euclidean, .cosine])
    func inertiaNeverRises(metric: KMeansMetric) throws {
        // Overlapping clusters so that Lloyd needs many iterations; one restart to see its whole history.
        for seed in UInt64(30)..<UInt64(35) {
            let x = randomMatrix(400, 6, seed: seed)
            let res = try KMeans.fit(x, config: KMeansConfig(clusters: 7, restarts: 1, maxIterations: 100,
                                                             tolerance: 0, metric: metric, seed: seed, chunkRows: 50))
            #expect(res.inertiaHistory.count >= 3, "seed \(seed): only \(res.inertiaHistory.count) iterations")
            for t in 1..<res.inertiaHistory.count {
                // Exact per-row distances accumulated in Double; allow Float rounding of the centres (1e-6 relative).
                #expect(res.inertiaHistory[t] <= res.inertiaHistory[t - 1] * (1 + 1e-6),
                        "seed \(seed), \(metric): inertia rose at iteration \(t): \(res.inertiaHistory[t - 1]) -> \(res.inertiaHistory[t])")
            }
            #expect(res.inertia == res.inertiaHistory.last!)
        }
    }

    @Test func emptyClusterRelocatedToFarthestPoint() {
        // Hand case: 5 points on a line, clusters 0 and 1 used, cluster 2 empty.
        let x = Matrix([[0], [1], [2], [10], [30]])
        var pass = KMeans.Pass(labels: [0, 0, 0, 1, 1], distances: [1, 0, 1, 100, 100], inertia: 202,
                               sums: [3, 40, 0], counts: [3, 2, 0])
        KMeans.relocateEmpty(x, pass: &pass, k: 3)
        // Farthest: rows 3 and 4 tie at 100 -> the lower index (row 3) moves to cluster 2.
        #expect(pass.labels == [0, 0, 0, 2, 1])
        #expect(pass.counts == [3, 1, 1])
        #expect(pass.sums == [3, 30, 10])
    }

    @Test func duplicatePointsStillGiveKNonEmptyClusters() throws {
        // 3 distinct values, k = 3, many duplicates: seeding may pick duplicates; relocation must fill all clusters.
        let seed: UInt64 = 40
        let x = Matrix((0..<30).map { [Float($0 % 3) * 5] })
        let res = try KMeans.fit(x, config: KMeansConfig(clusters: 3, restarts: 2, seed: seed))
        #expect(Set(res.labels).count == 3, "seed \(seed)")
        #expect(res.inertia < 1e-6, "seed \(seed): inertia \(res.inertia)")
    }

    @Test func deterministicForSeedAndThreadCount() throws {
        let seed: UInt64 = 50
        let x = randomMatrix(3000, 16, seed: seed)
        let a = try KMeans.fit(x, config: KMeansConfig(clusters: 9, restarts: 2, seed: seed, threads: 1, chunkRows: 256))
        let b = try KMeans.fit(x, config: KMeansConfig(clusters: 9, restarts: 2, seed: seed, threads: 2, chunkRows: 256))
        #expect(a.centers == b.centers && a.labels == b.labels && a.inertia == b.inertia, "seed \(seed)")
        var r1 = SeededRandom(seed: seed), r2 = SeededRandom(seed: seed)
        #expect(KMeans.plusPlusSeeds(x, k: 9, rng: &r1, threads: 1, chunk: 256)
                == KMeans.plusPlusSeeds(x, k: 9, rng: &r2, threads: 1, chunk: 256))
        let c = try KMeans.fit(x, config: KMeansConfig(clusters: 9, restarts: 2, seed: seed + 1, threads: 1, chunkRows: 256))
        #expect(c.centers != a.centers, "a different seed should give a different run")
    }

    @Test func cosineModeClustersDirections() throws {
        // Same directions at very different scales belong together in cosine mode.
        let seed: UInt64 = 60
        var r = SeededRandom(seed: seed)
        var rows: [[Float]] = [], truth: [Int] = []
        let dirs: [[Float]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        for i in 0..<150 {
            let c = i % 3, s = r.float(in: 0.1..<50)
            rows.append(dirs[c].map { $0 * s + 0.02 * s * r.gaussian() }); truth.append(c)
        }
        let res = try KMeans.fit(Matrix(rows), config: KMeansConfig(clusters: 3, metric: .cosine, seed: seed))
        for c in 0..<3 {
            let members = Set((0..<150).filter { res.labels[$0] == Int32(c) }.map { truth[$0] })
            #expect(members.count == 1, "seed \(seed): cluster \(c) mixes \(members)")
            expectClose(Double(res.centers.row(c).reduce(0) { $0 + $1 * $1 }), Double(1), abs: 1e-5, "centres are unit vectors")
        }
    }

    @Test func validationMessages() {
        let x = randomMatrix(3, 2, seed: 1)
        #expect(throws: KMeansError("n_samples=3 should be >= n_clusters=5")) {
            try KMeans.fit(x, config: KMeansConfig(clusters: 5))
        }
        #expect(throws: KMeansError("n_clusters=0 should be >= 1")) {
            try KMeans.fit(x, config: KMeansConfig(clusters: 0))
        }
        #expect(throws: KMeansError("restarts=0 should be >= 1")) {
            try KMeans.fit(x, config: KMeansConfig(clusters: 2, restarts: 0))
        }
        var bad = x
        bad[1, 1] = .nan
        do {
            _ = try KMeans.fit(bad, config: KMeansConfig(clusters: 2))
            Issue.record("NaN input should throw")
        } catch {
            #expect("\(error)".contains("row 1, column 1"))
        }
    }
}

@Suite struct PCATests {
    @Test func matchesNumpyReference() throws {
        let seed: UInt64 = 70
        // Anisotropic data with a large mean (tests the shifted accumulation): x = 50 + z A.
        var r = SeededRandom(seed: seed)
        let n = 2000, c = 12, k = 4
        let a = randomMatrix(c, c, seed: seed + 1)
        let scales: [Float] = (0..<c).map { Float(c - $0) }
        var z = Matrix(rows: n, cols: c)
        for i in 0..<n { for j in 0..<c { z[i, j] = scales[j] * r.gaussian() } }
        var x = BLAS.matmul(z, a)
        for i in 0..<x.data.count { x.data[i] += 50 }
        let pca = try PCA.fit(sample: x, components: k)
        // Independent reference: numpy SVD of the centred data in float64.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unseg-pca-\(seed)-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("x.f32"), output = dir.appendingPathComponent("out.txt")
        try x.data.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: input)
        let script = """
        import numpy as np
        x = np.fromfile('\(input.path)', dtype=np.float32).astype(np.float64).reshape(\(n), \(c))
        xc = x - x.mean(0)
        u, s, vt = np.linalg.svd(xc, full_matrices=False)
        var = s**2 / (\(n) - 1)
        np.savetxt('\(output.path)', np.vstack([vt[:\(k)], np.pad(var[:\(k)], (0, \(c - k)))[None, :]]))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        try p.run(); p.waitUntilExit()
        try #require(p.terminationStatus == 0, "python3 with numpy is needed for the reference")
        let rows = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map {
            $0.split(separator: " ").map { Double($0)! }
        }
        for i in 0..<k {
            let cos = zip(rows[i], pca.components.row(i)).reduce(0.0) { $0 + $1.0 * Double($1.1) }
            // Well-separated eigenvalues (scales 12, 11, 10, ...): Float covariance gives cos > 0.999.
            #expect(abs(cos) > 0.999, "seed \(seed): component \(i) cosine \(cos)")
            let refVar = rows[k][i]
            #expect(abs(Double(pca.explainedVariance[i]) - refVar) < 1e-3 * refVar, "seed \(seed): variance \(i)")
            // Sign rule: largest-magnitude entry positive, unit norm.
            let comp = pca.components.row(i)
            let big = comp.indices.max { abs(comp[$0]) < abs(comp[$1]) }!
            #expect(comp[big] > 0)
            expectClose(Double(comp.reduce(0) { $0 + $1 * $1 }), Double(1), abs: 1e-5)
        }
        expectClose(Double(pca.mean[0]), Double(x.columnMeans()[0]), abs: 1e-3)
        // Whitened projections have unit variance on the fit sample (1e-3: Float sums over 2000 rows).
        let t = pca.transform(x, whiten: true)
        for j in 0..<k {
            let col = (0..<n).map { Double(t[$0, j]) }
            let v = col.reduce(0) { $0 + $1 * $1 } / Double(n - 1)
            expectClose(Double(v), Double(1), abs: 1e-3, "whitened column \(j) variance \(v)")
        }
    }

    @Test func streamingEqualsOneShot() throws {
        let x = randomMatrix(500, 6, seed: 71, lo: 0, hi: 3)
        var acc = PCAAccumulator(channels: 6)
        try acc.add(x.rows(0..<123)); try acc.add(x.rows(123..<500))
        let a = try acc.finalize(components: 3), b = try PCA.fit(sample: x, components: 3)
        for i in 0..<3 {
            let cos = zip(a.components.row(i), b.components.row(i)).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            #expect(cos > 0.9999, "component \(i): \(cos)")
        }
        #expect(throws: ClusteringError("n_components=7 should be in 1...6 (the feature channels)")) {
            try PCA.fit(sample: x, components: 7)
        }
    }
}
