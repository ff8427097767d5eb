import UnsegLinAlg

/// Distance used by k-means.
public enum KMeansMetric: String, Sendable, Codable {
    /// Squared Euclidean distance on the rows as given.
    case euclidean
    /// Spherical k-means: rows and centres L2-normalised (eps 1e-12), assignment by largest
    /// cosine; inertia is `sum |x - c|^2 = sum 2 (1 - cos)` on the unit vectors.
    case cosine
}

/// Settings of `KMeans.fit` (defaults follow scikit-learn where it has one).
public struct KMeansConfig: Sendable, Equatable, Codable {
    /// Number of clusters k.
    public var clusters: Int
    /// Independent k-means++ seedings; the run with the lowest inertia wins (ties: first).
    public var restarts: Int = 4
    /// Lloyd iterations per restart at most.
    public var maxIterations: Int = 300
    /// Stop when the squared centre shift is <= tolerance * mean per-column variance (scikit-learn's rule).
    public var tolerance: Double = 1e-4
    public var metric: KMeansMetric = .euclidean
    public var seed: UInt64 = 0
    /// Threads over row chunks (the result does not depend on it).
    public var threads: Int = 1
    /// Rows per distance gemm.
    public var chunkRows: Int = 4096

    public init(clusters: Int, restarts: Int = 4, maxIterations: Int = 300, tolerance: Double = 1e-4,
                metric: KMeansMetric = .euclidean, seed: UInt64 = 0, threads: Int = 1, chunkRows: Int = 4096) {
        self.clusters = clusters; self.restarts = restarts; self.maxIterations = maxIterations
        self.tolerance = tolerance; self.metric = metric; self.seed = seed; self.threads = threads
        self.chunkRows = chunkRows
    }
}

/// Result of `KMeans.fit`.
public struct KMeansResult: Sendable {
    /// `[k, d]` cluster centres (unit rows in cosine mode).
    public var centers: Matrix
    /// `[n]` cluster of each row, consistent with `centers` (a final assignment step is run).
    public var labels: [Int32]
    /// Sum over rows of the squared distance to the assigned centre (Double).
    public var inertia: Double
    /// Lloyd iterations of the winning restart.
    public var iterations: Int
    /// Inertia after each assignment step of the winning restart, then the final one; non-increasing.
    public var inertiaHistory: [Double]
    /// Index of the winning restart.
    public var restart: Int
}

/// Lloyd's k-means with greedy k-means++ seeding (Arthur and Vassilvitskii 2007; greedy variant
/// with `2 + ln k` local trials as in scikit-learn), restarts, empty-cluster relocation.
///
/// Three layers as in scikit-learn: `fit` validates, `lloyd` runs one restart, the chunk kernel
/// computes `|x|^2 - 2 x.c + |c|^2` with one sgemm per chunk of rows. Per-chunk partial sums are
/// reduced in chunk order, so results are identical for any thread count.
public enum KMeans {
    /// Clusters the rows of `x` `[n, d]`. O(restarts * iterations * n k d).
    ///
    /// Errors: `n_samples=3 should be >= n_clusters=5`, non-positive k, empty rows, non-finite
    /// values, invalid restarts / iterations / tolerance.
    public static func fit(_ x: Matrix, config: KMeansConfig) throws -> KMeansResult {
        let n = x.rows, d = x.cols, k = config.clusters
        if k < 1 { throw KMeansError("n_clusters=\(k) should be >= 1") }
        if n < k { throw KMeansError("n_samples=\(n) should be >= n_clusters=\(k)") }
        if d < 1 { throw KMeansError("samples have \(d) features; need at least 1") }
        if config.restarts < 1 { throw KMeansError("restarts=\(config.restarts) should be >= 1") }
        if config.maxIterations < 1 { throw KMeansError("max_iterations=\(config.maxIterations) should be >= 1") }
        if !(config.tolerance >= 0) { throw KMeansError("tolerance=\(config.tolerance) should be >= 0") }
        if config.chunkRows < 1 { throw KMeansError("chunk_rows=\(config.chunkRows) should be >= 1") }
        try checkFinite(x.data, "k-means input", cols: d)
        let data = config.metric == .cosine ? x.rowNormalized() : x
        let tol = config.tolerance * meanColumnVariance(data)
        var best: KMeansResult? = nil
        for r in 0..<config.restarts {
            var rng = SeededRandom.stream(seed: config.seed, index: UInt64(r))
            let seeds = plusPlusSeeds(data, k: k, rng: &rng, threads: config.threads, chunk: config.chunkRows)
            var res = lloyd(data, initial: seeds, config: config, tolerance: tol)
            res.restart = r
            if best == nil || res.inertia < best!.inertia { best = res }
        }
        return best!
    }

    /// The nearest centre of each row of `x` `[n, d]` (`centers` `[k, d]`) and its squared distance.
    /// In cosine mode rows and centres are normalised first. O(n k d).
    public static func assign(_ x: Matrix, centers: Matrix, metric: KMeansMetric = .euclidean,
                              threads: Int = 1) -> (labels: [Int32], distances: [Float]) {
        precondition(x.cols == centers.cols, "assign: x is [\(x.rows), \(x.cols)], centres [\(centers.rows), \(centers.cols)]")
        let data = metric == .cosine ? x.rowNormalized() : x
        let c = metric == .cosine ? centers.rowNormalized() : centers
        let pass = assignmentPass(data, centers: c, threads: threads, chunk: 4096, accumulate: false)
        return (pass.labels, pass.distances)
    }

    // MARK: - internals

    /// Mean over columns of the column variance (Double).
    static func meanColumnVariance(_ x: Matrix) -> Double {
        let n = x.rows, d = x.cols
        var mean = [Double](repeating: 0, count: d), sq = mean
        x.data.withUnsafeBufferPointer { p in
            for i in 0..<n { for j in 0..<d { let v = Double(p[i * d + j]); mean[j] += v; sq[j] += v * v } }
        }
        var total = 0.0
        for j in 0..<d { let m = mean[j] / Double(n); total += max(0, sq[j] / Double(n) - m * m) }
        return total / Double(d)
    }

    /// Squared Euclidean distances `[n, m]` from every row of `x` to rows `idx` of `x` (clamped at 0).
    static func distancesToRows(_ x: Matrix, rows idx: [Int], xsq: [Float]) -> [Float] {
        let n = x.rows, d = x.cols, m = idx.count
        let cand = x.gatherRows(idx)
        var out = [Float](repeating: 0, count: n * m)
        x.data.withUnsafeBufferPointer { xp in
            cand.data.withUnsafeBufferPointer { cp in
                out.withUnsafeMutableBufferPointer { o in
                    BLAS.sgemm(transA: false, transB: true, m: n, n: m, k: d, alpha: -2, a: xp.baseAddress!, lda: d,
                               b: cp.baseAddress!, ldb: d, beta: 0, c: o.baseAddress!, ldc: m)
                    for i in 0..<n {
                        for j in 0..<m { o[i * m + j] = max(0, o[i * m + j] + xsq[i] + xsq[idx[j]]) }
                    }
                }
            }
        }
        return out
    }

    /// Greedy k-means++: first centre uniform, then `2 + ln k` candidates drawn with probability
    /// proportional to D^2, keeping the one that lowers the potential most (ties: first drawn).
    static func plusPlusSeeds(_ x: Matrix, k: Int, rng: inout SeededRandom, threads: Int, chunk: Int) -> [Int] {
        let n = x.rows
        let xsq = x.rowNorms().map { $0 * $0 }
        let trials = 2 + Int(LibM.log(Double(k)))
        var chosen = [rng.int(below: n)]
        var closest = distancesToRows(x, rows: chosen, xsq: xsq)
        var prefix = [Double](repeating: 0, count: n)
        while chosen.count < k {
            var acc = 0.0
            for i in 0..<n { acc += Double(closest[i]); prefix[i] = acc }
            var cands: [Int] = []
            for _ in 0..<trials {
                if acc <= 0 {
                    cands.append(rng.int(below: n))
                } else {
                    let r = rng.double() * acc
                    var lo = 0, hi = n - 1
                    while lo < hi { let mid = (lo + hi) / 2; if prefix[mid] <= r { lo = mid + 1 } else { hi = mid } }
                    cands.append(lo)
                }
            }
            let dc = distancesToRows(x, rows: cands, xsq: xsq)
            var bestPot = Double.infinity, bestJ = 0
            for j in 0..<cands.count {
                var pot = 0.0
                for i in 0..<n { pot += Double(min(closest[i], dc[i * cands.count + j])) }
                if pot < bestPot { bestPot = pot; bestJ = j }
            }
            chosen.append(cands[bestJ])
            for i in 0..<n { closest[i] = min(closest[i], dc[i * cands.count + bestJ]) }
        }
        return chosen
    }

    struct Pass {
        var labels: [Int32]
        /// Exact squared distance of each row to its assigned centre.
        var distances: [Float]
        var inertia: Double
        /// `[k, d]` sums of rows per cluster (Double) and counts (only when accumulating).
        var sums: [Double]
        var counts: [Int]
    }

    /// Assignment step over chunks of rows (parallel, reduced in chunk order).
    static func assignmentPass(_ x: Matrix, centers: Matrix, threads: Int, chunk: Int, accumulate: Bool) -> Pass {
        let n = x.rows, d = x.cols, k = centers.rows
        let csq = centers.rowNorms().map { $0 * $0 }
        var labels = [Int32](repeating: 0, count: n)
        var dist = [Float](repeating: 0, count: n)
        let chunks = (n + chunk - 1) / chunk
        var partInertia = [Double](repeating: 0, count: chunks)
        var partSums = accumulate ? [Float](repeating: 0, count: chunks * k * d) : []
        var partCounts = accumulate ? [Int](repeating: 0, count: chunks * k) : []
        x.data.withUnsafeBufferPointer { xp in
        centers.data.withUnsafeBufferPointer { cp in
        labels.withUnsafeMutableBufferPointer { lp in
        dist.withUnsafeMutableBufferPointer { dp in
        partInertia.withUnsafeMutableBufferPointer { ip in
        partSums.withUnsafeMutableBufferPointer { sp in
        partCounts.withUnsafeMutableBufferPointer { np in
            // Workers write disjoint rows / chunk slots of these buffers (see `Parallel`).
            nonisolated(unsafe) let X = xp.baseAddress!, C = cp.baseAddress!
            nonisolated(unsafe) let L = lp.baseAddress!, D = dp.baseAddress!, I = ip.baseAddress!
            nonisolated(unsafe) let S = accumulate ? sp.baseAddress : nil, N = accumulate ? np.baseAddress : nil
            Parallel.forEach(chunks, threads: threads) { ci in
                let r0 = ci * chunk, r1 = min(n, r0 + chunk), rows = r1 - r0
                let dots = UnsafeMutablePointer<Float>.allocate(capacity: rows * k)
                defer { dots.deallocate() }
                BLAS.sgemm(transA: false, transB: true, m: rows, n: k, k: d, alpha: 1, a: X + r0 * d, lda: d,
                           b: C, ldb: d, beta: 0, c: dots, ldc: k)
                var inertia = 0.0
                for i in 0..<rows {
                    let row = dots + i * k
                    var best = 0
                    var bv = csq[0] - 2 * row[0]
                    for j in 1..<max(k, 1) {
                        let v = csq[j] - 2 * row[j]
                        if v < bv { bv = v; best = j }
                    }
                    L[r0 + i] = Int32(best)
                    let xr = X + (r0 + i) * d, cr = C + best * d
                    var acc = SIMD8<Float>()
                    var j = 0
                    while j + 8 <= d { let t = load8(xr + j) - load8(cr + j); acc += t * t; j += 8 }
                    var e = acc.sum()
                    while j < d { let t = xr[j] - cr[j]; e += t * t; j += 1 }
                    D[r0 + i] = e
                    inertia += Double(e)
                    if let S = S, let N = N {
                        let s = S + (ci * k + best) * d
                        j = 0
                        while j + 8 <= d { store8(load8(s + j) + load8(xr + j), s + j); j += 8 }
                        while j < d { s[j] += xr[j]; j += 1 }
                        N[ci * k + best] += 1
                    }
                }
                I[ci] = inertia
            }
        }}}}}}}
        var sums = [Double](), counts = [Int]()
        if accumulate {
            sums = [Double](repeating: 0, count: k * d)
            counts = [Int](repeating: 0, count: k)
            for ci in 0..<chunks {
                for j in 0..<(k * d) { sums[j] += Double(partSums[ci * k * d + j]) }
                for j in 0..<k { counts[j] += partCounts[ci * k + j] }
            }
        }
        return Pass(labels: labels, distances: dist, inertia: partInertia.reduce(0, +), sums: sums, counts: counts)
    }

    /// One restart of Lloyd's algorithm from the rows `initial` of `x`.
    static func lloyd(_ x: Matrix, initial: [Int], config: KMeansConfig, tolerance: Double) -> KMeansResult {
        let n = x.rows, d = x.cols, k = initial.count
        var centers = x.gatherRows(initial)
        var history: [Double] = []
        var previous: [Int32]? = nil
        var iterations = 0
        for _ in 0..<config.maxIterations {
            iterations += 1
            var pass = assignmentPass(x, centers: centers, threads: config.threads, chunk: config.chunkRows, accumulate: true)
            history.append(pass.inertia)
            let converged = previous == pass.labels
            previous = pass.labels
            if converged { break }
            relocateEmpty(x, pass: &pass, k: k)
            var next = Matrix(rows: k, cols: d)
            for c in 0..<k {
                let inv = 1 / Double(max(pass.counts[c], 1))
                for j in 0..<d { next.data[c * d + j] = Float(pass.sums[c * d + j] * inv) }
            }
            if config.metric == .cosine { next.normalizeRows() }
            var shift = 0.0
            for j in 0..<(k * d) { let t = Double(next.data[j] - centers.data[j]); shift += t * t }
            centers = next
            if pass.counts.contains(0) == false && shift <= tolerance { break }
        }
        _ = n
        let final = assignmentPass(x, centers: centers, threads: config.threads, chunk: config.chunkRows, accumulate: false)
        history.append(final.inertia)
        return KMeansResult(centers: centers, labels: final.labels, inertia: final.inertia, iterations: iterations,
                            inertiaHistory: history, restart: 0)
    }

    /// Moves each empty cluster (ascending) onto the next row farthest from its centre
    /// (descending distance, ties: lower row index), taking that row out of its old cluster's sum.
    static func relocateEmpty(_ x: Matrix, pass: inout Pass, k: Int) {
        let empty = (0..<k).filter { pass.counts[$0] == 0 }
        if empty.isEmpty { return }
        let d = x.cols
        let order = (0..<x.rows).sorted { a, b in
            pass.distances[a] != pass.distances[b] ? pass.distances[a] > pass.distances[b] : a < b
        }
        var next = 0
        for c in empty {
            // Skip rows whose cluster would become empty (a singleton) so no new hole opens.
            while next < order.count && pass.counts[Int(pass.labels[order[next]])] <= 1 { next += 1 }
            if next >= order.count { break }
            let p = order[next]; next += 1
            let old = Int(pass.labels[p])
            for j in 0..<d {
                let v = Double(x.data[p * d + j])
                pass.sums[old * d + j] -= v
                pass.sums[c * d + j] = v
            }
            pass.counts[old] -= 1
            pass.counts[c] = 1
            pass.labels[p] = Int32(c)
            pass.distances[p] = 0
        }
    }
}

