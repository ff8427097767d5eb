import UnsegLinAlg

/// Settings of PriMaPs mask proposals (defaults: the reference implementation's).
public struct PriMaPsConfig: Sendable, Equatable {
    /// Relative similarity threshold psi: cells with `s < psi * max(s)` leave the mask. In [0, 1].
    public var threshold: Float = 0.4
    /// Stop once this fraction of the cells is covered by masks. In (0, 1].
    public var coverage: Float = 0.95
    /// At most this many masks (1...254; the reference has no cap, 254 keeps labels in UInt8).
    public var maxMasks: Int = MaskProposals.maxMaskCount
    /// Eigen-solver for the principal direction (see `PrincipalSolver`).
    public var solver: PrincipalSolver = .lanczos
    /// Relative residual at which the iterative solver stops (see `TopEigenSolver`). > 0.
    public var tolerance: Float = 1e-4
    /// Covariance products the iterative solver may spend per mask before falling back to LAPACK. >= 1.
    public var maxMatvecs: Int = 256

    public init(threshold: Float = 0.4, coverage: Float = 0.95, maxMasks: Int = MaskProposals.maxMaskCount,
                solver: PrincipalSolver = .lanczos, tolerance: Float = 1e-4, maxMatvecs: Int = 256) {
        self.threshold = threshold
        self.coverage = coverage
        self.maxMasks = maxMasks
        self.solver = solver
        self.tolerance = tolerance
        self.maxMatvecs = maxMatvecs
    }

    /// Throws `ProposalError` naming the bad field and its value.
    public func validate() throws {
        guard threshold >= 0 && threshold <= 1 else {
            throw ProposalError("PriMaPs threshold=\(threshold) should be in [0, 1] (the reference uses 0.4)")
        }
        guard coverage > 0 && coverage <= 1 else {
            throw ProposalError("PriMaPs coverage=\(coverage) should be in (0, 1] (the reference uses 0.95)")
        }
        guard maxMasks >= 1 && maxMasks <= MaskProposals.maxMaskCount else {
            throw ProposalError("PriMaPs maxMasks=\(maxMasks) should be in 1...\(MaskProposals.maxMaskCount)")
        }
        guard tolerance > 0 && tolerance.isFinite else {
            throw ProposalError("PriMaPs tolerance=\(tolerance) should be a positive number (default 1e-4)")
        }
        guard maxMatvecs >= 1 else { throw ProposalError("PriMaPs maxMatvecs=\(maxMatvecs) should be >= 1") }
    }
}

/// PriMaPs: principal mask proposals for one image (Hahn et al., TMLR 2024), section 1 of the spec.
///
/// Loop, while the covered fraction is below `coverage` (and fewer than `maxMasks` masks):
/// 1. `u` = top eigenvector of the centred covariance of the still-available raw rows;
/// 2. `s = Fn u` on available cells (0 elsewhere); anchor `j = argmax s` (first on ties);
/// 3. `s = Fn Fn_j` on available cells (0 elsewhere); stop if `max s <= 0`; zero `s < psi max s`,
///    divide by `max s`; record the mask, make `{s > 0}` unavailable;
/// 4. stop when the available set is the same after three consecutive iterations (the reference's
///    rule; with the `max s <= 0` guard every recorded mask removes at least one cell, so it only
///    fires if that guard is relaxed).
///
/// Sign rule for `u`: it is oriented so that the similarity of largest magnitude among the
/// available cells, `u . Fn_i`, is positive (the anchor sits on the far end of the principal axis);
/// on an exact tie, so that its entry of largest magnitude (first on ties) is positive. With this
/// rule the anchor is always an available cell unless all available similarities are 0.
///
/// Degenerate sets: when the centred covariance vanishes (one available cell, identical rows, or
/// trace <= 1e-7 of the initial total variance), `u` is the mean of the available raw rows
/// (normalised; 0 if the mean is 0). All-zero features thus give no masks.
///
/// Efficiency: the scatter `S = sum F_i F_i^T` of the rows (shifted by the image's mean for
/// accuracy) is built once with `ssyrk` and downdated with `ssyrk(alpha: -1)` of the removed rows
/// (or rebuilt from the remaining rows when those are fewer); the centred covariance is
/// `S - b b^T / n` applied implicitly. The similarities are one `sgemv` each.
public enum PriMaPs {
    /// Mask proposals of one image.
    ///
    /// - Parameters:
    ///   - features: raw features `[height * width, C]`, row-major (row = cell in row-major grid order).
    /// - Returns: `MaskProposals` at feature resolution (K <= `config.maxMasks`).
    /// - Complexity: O(h w C^2) for the scatter plus, per mask, O(h w C) for the similarities and
    ///   O(C^2) per solver matvec (LAPACK fallback O(C^3)).
    /// - Throws: `ProposalError` for a shape mismatch, an empty grid, non-finite features or a bad
    ///   config; `LAPACKError` if LAPACK fails.
    public static func propose(features: Matrix, height: Int, width: Int,
                               config: PriMaPsConfig = PriMaPsConfig()) throws -> MaskProposals {
        try config.validate()
        guard height >= 1 && width >= 1 else {
            throw ProposalError("PriMaPs: grid \(height) x \(width) is empty; height and width must be >= 1")
        }
        guard features.rows == height * width else {
            throw ProposalError("PriMaPs: features have \(features.rows) rows but the grid \(height) x \(width) has \(height * width) cells")
        }
        guard features.cols >= 1 else { throw ProposalError("PriMaPs: features have 0 channels; need >= 1") }
        var state = Run(features: features, config: config)
        // A non-finite feature makes its row's norm non-finite (so does a norm overflowing Float,
        // hence the exact scan only then).
        if !state.normsFinite, let bad = features.data.firstIndex(where: { !$0.isFinite }) {
            throw ProposalError("PriMaPs: feature [\(bad / features.cols), \(bad % features.cols)] is \(features.data[bad]); features must be finite")
        }
        let raw = try state.run()
        return MaskProposals.postProcessed(rawMasks: raw, height: height, width: width, stats: state.stats)
    }

    /// Runs `propose` over `features.count` images on `threads` threads (one image per thread at a
    /// time, single-threaded BLAS inside, also for `threads == 1`). Results are in input order and
    /// identical whatever the thread count.
    ///
    /// Each result's `stats.estimatedFlops` is the work estimate for that image; the sum over the
    /// batch divided by the wall time is the achieved rate to compare with the sgemm peak.
    /// - Throws: the first error (lowest index) of any image.
    public static func proposeBatch(_ features: [Matrix], height: Int, width: Int,
                                    config: PriMaPsConfig = PriMaPsConfig(), threads: Int) throws -> [MaskProposals] {
        return try Parallel.tryMap(features.count, threads: threads) { i in
            try propose(features: features[i], height: height, width: width, config: config)
        }
    }

    /// Nominal work of one image, in flops: scatter build and downdates (`2 n C^2` at most), the
    /// row normalisation and shift (`4 n C`), and per mask two similarity `sgemv`s (`4 n C`) plus
    /// `matvecsPerMask` solver products (`2 C^2 + 4 C` each, Lanczos re-orthogonalisation
    /// excluded). For planning; `ProposalStats.estimatedFlops` counts what a run actually did.
    public static func nominalFlops(cells n: Int, channels c: Int, masks k: Int, matvecsPerMask: Int = 24) -> Double {
        let nd = Double(n), cd = Double(c), kd = Double(k)
        return 2 * nd * cd * cd + 4 * nd * cd + kd * (4 * nd * cd + Double(matvecsPerMask) * (2 * cd * cd + 4 * cd))
    }

    /// State of one run.
    struct Run {
        let n: Int
        let c: Int
        let config: PriMaPsConfig
        /// Row-normalised features `[n, C]`.
        var fn: [Float]
        /// Features shifted by the image's column mean `[n, C]`.
        var shifted: [Float]
        /// The column mean that was subtracted `[C]`.
        var shift: [Double]
        var cov: CentredCovariance
        var solver: TopEigenSolver
        var stats = ProposalStats()

        /// Whether every row norm of the input was finite.
        var normsFinite = true
        /// `[max(n, C)]` ones, for column sums by `sgemv`.
        let ones: [Float]

        init(features: Matrix, config: PriMaPsConfig) {
            n = features.rows
            c = features.cols
            self.config = config
            let ones = [Float](repeating: 1, count: max(features.rows, features.cols))
            self.ones = ones
            var fn = features.data
            var shifted = features.data
            let nn = features.rows, cc = features.cols
            var mean = [Float](repeating: 0, count: cc)
            var finite = true
            fn.withUnsafeMutableBufferPointer { fb in
                shifted.withUnsafeMutableBufferPointer { sb in
                    mean.withUnsafeMutableBufferPointer { mb in
                        ones.withUnsafeBufferPointer { ob in
                            let f = fb.baseAddress!, sh = sb.baseAddress!, m = mb.baseAddress!
                            // column means (one sgemv), then shift and row-normalise
                            BLAS.sgemv(trans: true, m: nn, n: cc, alpha: 1 / Float(nn), a: sh, lda: cc,
                                       x: ob.baseAddress!, beta: 0, y: m)
                            for i in 0..<nn {
                                let row = f + i * cc, srow = sh + i * cc
                                let norm = Reduce.dot(row, row, cc).squareRoot()
                                if !norm.isFinite { finite = false }
                                let inv = 1 / max(norm, 1e-12)
                                for j in 0..<cc { row[j] *= inv; srow[j] -= m[j] }
                            }
                        }
                    }
                }
            }
            self.fn = fn
            self.shifted = shifted
            normsFinite = finite
            shift = mean.map { Double($0) }
            cov = CentredCovariance(channels: c)
            solver = TopEigenSolver(channels: c, method: config.solver, tolerance: config.tolerance,
                                    maxMatvecs: config.maxMatvecs)
            stats.estimatedFlops += Double(5 * n * c)
        }

        /// Adds `sign` times the column sums of the first `count` rows of `a` to `cov.sum`.
        mutating func accumulateSum(_ a: UnsafePointer<Float>, count: Int, sign: Double) {
            let cc = c
            var part = [Float](repeating: 0, count: cc)
            ones.withUnsafeBufferPointer { ob in
                part.withUnsafeMutableBufferPointer { pb in
                    BLAS.sgemv(trans: true, m: count, n: cc, alpha: 1, a: a, lda: cc, x: ob.baseAddress!,
                               beta: 0, y: pb.baseAddress!)
                }
            }
            for j in 0..<cc { cov.sum[j] += sign * Double(part[j]) }
        }

        /// Rebuilds the scatter and sum from the rows in `rows` (all cells when nil).
        mutating func rebuild(rows: [Int]?, scratch: inout [Float]) {
            let count = rows?.count ?? n
            let cc = c
            cov.sum = [Double](repeating: 0, count: cc)
            cov.count = count
            if let rows = rows { gather(rows, into: &scratch) }
            let src = rows == nil ? shifted : scratch
            src.withUnsafeBufferPointer { a in
                cov.scatter.withUnsafeMutableBufferPointer { s in
                    BLAS.ssyrkUpperAtA(n: count, k: cc, alpha: 1, a: a.baseAddress!, lda: cc, beta: 0,
                                       c: s.baseAddress!, ldc: cc)
                }
                accumulateSum(a.baseAddress!, count: count, sign: 1)
            }
            stats.covarianceRows += count
            stats.estimatedFlops += Double(count * cc * (cc + 1))
        }

        /// Removes the rows in `rows` from the scatter and sum (rank-k downdate).
        mutating func downdate(rows: [Int], scratch: inout [Float]) {
            let cc = c, r = rows.count
            gather(rows, into: &scratch)
            scratch.withUnsafeBufferPointer { a in
                cov.scatter.withUnsafeMutableBufferPointer { s in
                    BLAS.ssyrkUpperAtA(n: r, k: cc, alpha: -1, a: a.baseAddress!, lda: cc, beta: 1,
                                       c: s.baseAddress!, ldc: cc)
                }
                accumulateSum(a.baseAddress!, count: r, sign: -1)
            }
            cov.count -= r
            stats.covarianceRows += r
            stats.estimatedFlops += Double(r * cc * (cc + 1))
        }

        /// Copies the shifted rows `rows` to the front of `scratch`.
        func gather(_ rows: [Int], into scratch: inout [Float]) {
            let cc = c
            shifted.withUnsafeBufferPointer { src in
                scratch.withUnsafeMutableBufferPointer { dst in
                    for (k, i) in rows.enumerated() {
                        (dst.baseAddress! + k * cc).update(from: src.baseAddress! + i * cc, count: cc)
                    }
                }
            }
        }

        /// `out = Fn v` `[n]`, then zeroes the unavailable cells.
        func similarities(_ v: [Float], available: [Bool], into out: inout [Float]) {
            let nn = n, cc = c
            fn.withUnsafeBufferPointer { f in
                v.withUnsafeBufferPointer { x in
                    out.withUnsafeMutableBufferPointer { y in
                        BLAS.sgemv(trans: false, m: nn, n: cc, alpha: 1, a: f.baseAddress!, lda: cc,
                                   x: x.baseAddress!, beta: 0, y: y.baseAddress!)
                        for i in 0..<nn where !available[i] { y[i] = 0 }
                    }
                }
            }
        }

        /// The whole loop; returns the raw masks `[K, n]`.
        mutating func run() throws -> Matrix {
            var available = [Bool](repeating: true, count: n)
            var availableCount = n
            var scratch = [Float](repeating: 0, count: n * c)
            var sims = [Float](repeating: 0, count: n)
            var masks: [Float] = []
            var maskCount = 0
            var history: [Int] = []          // available counts after each iteration, newest last
            rebuild(rows: nil, scratch: &scratch)
            let initialTrace = max(cov.centredTrace(), 0)
            var previous = [Float](repeating: 0, count: c)
            let fixedStart = TopEigenSolver.fixedStart(c)

            while Double(n - availableCount) / Double(n) < Double(config.coverage) && maskCount < config.maxMasks {
                stats.iterations += 1
                // 1. principal direction
                var u: [Float]
                let trace = cov.centredTrace()
                if cov.count >= 2 && trace > 1e-7 * initialTrace && trace > 0 {
                    var start = previous
                    for j in 0..<c { start[j] += fixedStart[j] }
                    u = try solver.top(cov, start: start)
                } else {
                    u = (0..<c).map { Float(cov.sum[$0] / Double(cov.count) + shift[$0]) }
                    let nrm = Reduce.dot(u, u).squareRoot()
                    if nrm > 0 { u = u.map { $0 / nrm } } else { u = [Float](repeating: 0, count: c) }
                }
                // 2. similarities to u, sign rule, anchor
                similarities(u, available: available, into: &sims)
                var hi = -Float.infinity, lo = Float.infinity
                for i in 0..<n where available[i] { hi = max(hi, sims[i]); lo = min(lo, sims[i]) }
                var flip = -lo > hi
                if -lo == hi {
                    var best = 0
                    for j in 1..<c where abs(u[j]) > abs(u[best]) { best = j }
                    flip = u[best] < 0
                }
                if flip {
                    for j in 0..<c { u[j] = -u[j] }
                    for i in 0..<n where available[i] { sims[i] = -sims[i] }
                }
                let anchor = Reduce.argmax(sims)
                let a = Array(fn[(anchor * c)..<((anchor + 1) * c)])
                // 3. similarities to the anchor, threshold, record
                similarities(a, available: available, into: &sims)
                stats.estimatedFlops += Double(4 * n * c)
                let mx = sims[Reduce.argmax(sims)]
                if !(mx > 0) { break }
                let thr = config.threshold * mx
                var removed: [Int] = []
                for i in 0..<n {
                    if sims[i] < thr || !available[i] { sims[i] = 0 } else { sims[i] /= mx }
                    if sims[i] > 0 { removed.append(i); available[i] = false }
                }
                masks.append(contentsOf: sims)
                maskCount += 1
                availableCount -= removed.count
                previous = u
                // 4. stall rule (reference: three equal snapshots, checked from the 4th iteration)
                history.append(availableCount)
                if history.count >= 4 {
                    let t = history.count
                    if history[t - 1] == history[t - 2] && history[t - 2] == history[t - 3] { break }
                }
                // update the covariance unless the loop is about to end
                let done = Double(n - availableCount) / Double(n) >= Double(config.coverage)
                    || maskCount >= config.maxMasks || availableCount == 0
                if done || removed.isEmpty { continue }
                if removed.count <= availableCount {
                    downdate(rows: removed, scratch: &scratch)
                } else {
                    rebuild(rows: (0..<n).filter { available[$0] }, scratch: &scratch)
                }
            }
            stats.matvecs = solver.matvecs
            stats.lapackFallbacks = solver.fallbacks
            stats.estimatedFlops += solver.flops
            return Matrix(rows: maskCount, cols: n, data: masks)
        }
    }
}

extension TopEigenSolver {
    /// A fixed, dense unit start vector `[C]` (seeded Gaussian), added to the warm start so that
    /// the Krylov space is never confined to a previous, now minor, direction.
    static func fixedStart(_ c: Int) -> [Float] {
        var rng = SeededRandom(seed: 0x5052_494D_4150_53)
        var g = (0..<c).map { _ in rng.gaussian() }
        let nrm = Reduce.dot(g, g).squareRoot()
        g = g.map { $0 / nrm }
        return g
    }
}
