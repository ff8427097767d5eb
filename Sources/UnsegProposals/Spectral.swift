import UnsegCore
import UnsegLinAlg

/// Settings of spectral eigen-segments (Deep Spectral Methods, Melas-Kyriazi et al., CVPR 2022).
public struct SpectralConfig: Sendable, Equatable {
    /// What to extract from the eigenvectors.
    public enum Mode: Sendable, Equatable {
        /// Fiedler foreground: `v_1 > 0`, complemented if it covers more than half the cells. K <= 1.
        case foreground
        /// k-means on eigenvectors 1...`eigenvectors` into `count` segments (1...255); the segment
        /// touching the border most is background. K <= count - 1.
        case segments(count: Int)
        /// As `segments`, with the count chosen per image by the largest eigengap (Deep Spectral
        /// Methods' adaptive count): with eigenvalues `l_0 <= ... <= l_k`, the count is the `i` in
        /// 2...k that maximises `l_i - l_(i-1)` (first on ties).
        case adaptiveSegments
    }
    public var mode: Mode = .segments(count: 15)
    /// Eigenvectors 1...k used for k-means (eigenvector 0 is constant); capped at cells - 1.
    public var eigenvectors: Int = 15
    /// Seed of the k-means++ seeding.
    public var seed: UInt64 = 0
    /// k-means restarts (the lowest inertia wins).
    public var restarts: Int = 4
    /// Lloyd iterations per restart.
    public var maxIterations: Int = 100
    /// Eigen-solver (block Krylov on large grids by default; the dense solve is the reference).
    public var solver: SpectralSolver = .automatic

    public init(mode: Mode = .segments(count: 15), eigenvectors: Int = 15, seed: UInt64 = 0,
                restarts: Int = 4, maxIterations: Int = 100, solver: SpectralSolver = .automatic) {
        self.solver = solver
        self.mode = mode
        self.eigenvectors = eigenvectors
        self.seed = seed
        self.restarts = restarts
        self.maxIterations = maxIterations
    }
}

/// Spectral eigen-segments of one image on the dense affinity of its feature cells.
///
/// `W = max(Fn Fn^T, 0) / max` (Fn: rows L2-normalised, eps 1e-12), `D` = row sums, normalised
/// Laplacian `L = I - D^-1/2 W D^-1/2`; the k+1 smallest eigenpairs of `L` (LAPACK `ssyevr` with
/// an index range) give the generalised eigenvectors `v = D^-1/2 y` of `(D - W) v = lambda D v`.
/// Sign rule (DSM): negate `v` when its fraction of positive entries is in (0.5, 1).
///
/// Defined edge cases: a single cell, or features whose affinities are all <= 0 (e.g. all zero),
/// give no segments (everything background). A cell with zero degree is isolated (D clamped to 1e-12).
public enum Spectral {
    /// The Fiedler foreground of one image (Deep Spectral Methods' localisation): the second
    /// generalised eigenvector `v_1` of the affinity, foreground where `v_1 > 0`, negated for the
    /// image (not a batch) when that covers more than half of the cells. `mask` `[h*w]` 1 / 0;
    /// `soft` `[h*w]` in [0, 1] = `0.5 + 0.5 v_1 / max |v_1|`, so `soft >= 0.5` exactly where the
    /// mask is 1 (cells with `v_1 = 0`, background, are put just below 0.5). No foreground (all
    /// zeros) when the affinity is degenerate.
    public static func fiedler(features: Matrix, height: Int, width: Int,
                               solver: SpectralSolver = .automatic) throws -> (mask: [UInt8], soft: [Float]) {
        let n = height * width
        guard n == features.rows, n >= 2 else {
            throw ProposalError("Spectral.fiedler: \(features.rows) feature rows for a \(height) x \(width) grid; need at least 2 cells")
        }
        var stats = ProposalStats()
        guard let vectors = try eigenvectors(features: features, count: 1, solver: solver, stats: &stats) else {
            return ([UInt8](repeating: 0, count: n), [Float](repeating: 0, count: n))
        }
        var v = vectors.row(1)
        if 2 * v.filter({ $0 > 0 }).count > n { v = v.map { -$0 } }
        let m = v.map { abs($0) }.max() ?? 0
        guard m > 0 else { return ([UInt8](repeating: 0, count: n), [Float](repeating: 0, count: n)) }
        let mask = v.map { UInt8($0 > 0 ? 1 : 0) }
        let below = Float(0.5).nextDown
        let soft = v.map { x -> Float in x > 0 ? 0.5 + 0.5 * x / m : min(below, 0.5 + 0.5 * x / m) }
        return (mask, soft)
    }

    /// Segments of one image as `MaskProposals` (raw masks and channels one-hot).
    ///
    /// - Parameters: `features` `[height * width, C]` raw features, row-major.
    /// - Complexity: O(n^2 C) for the affinity (sgemm) plus, with the dense solver, O(n^3) for the
    ///   tridiagonal reduction of the `[n, n]` Laplacian (~100 ms at n = 1,600 on one core), or with
    ///   block Krylov (`SpectralSolver`) O(n^2 max(k, 8)) per block of 16 (typically 8-32 blocks),
    ///   plus the k-means.
    /// - Throws: `ProposalError` on a shape mismatch, non-finite features or a bad config
    ///   ("segments count=20 should be <= cells=16"); `LAPACKError` if LAPACK fails.
    public static func propose(features: Matrix, height: Int, width: Int,
                               config: SpectralConfig = SpectralConfig()) throws -> MaskProposals {
        guard height >= 1 && width >= 1 else {
            throw ProposalError("Spectral: grid \(height) x \(width) is empty; height and width must be >= 1")
        }
        let n = height * width
        guard features.rows == n else {
            throw ProposalError("Spectral: features have \(features.rows) rows but the grid \(height) x \(width) has \(n) cells")
        }
        guard features.cols >= 1 else { throw ProposalError("Spectral: features have 0 channels; need >= 1") }
        if let bad = features.data.firstIndex(where: { !$0.isFinite }) {
            throw ProposalError("Spectral: feature [\(bad / features.cols), \(bad % features.cols)] is \(features.data[bad]); features must be finite")
        }
        guard config.eigenvectors >= 1 else {
            throw ProposalError("Spectral: eigenvectors=\(config.eigenvectors) should be >= 1")
        }
        if case .segments(let s) = config.mode {
            guard s >= 1 && s <= MaskProposals.maxMaskCount + 1 else {
                throw ProposalError("Spectral: segments count=\(s) should be in 1...\(MaskProposals.maxMaskCount + 1)")
            }
            guard s <= n else { throw ProposalError("Spectral: segments count=\(s) should be <= cells=\(n)") }
        }
        var stats = ProposalStats()
        stats.iterations = 1
        let background = MaskProposals.fromLabels([UInt8](repeating: 0, count: n), maskCount: 0,
                                                  height: height, width: width, stats: stats)
        if n == 1 { return background }
        guard let pairs = try eigenpairs(features: features, count: min(config.eigenvectors, n - 1),
                                         solver: config.solver, stats: &stats) else {
            return background
        }
        let vectors = pairs.vectors
        var mode = config.mode
        if mode == .adaptiveSegments { mode = .segments(count: eigengapCount(pairs.values)) }
        var labels = [UInt8](repeating: 0, count: n)
        var k = 0
        switch mode {
        case .adaptiveSegments:
            break
        case .foreground:
            let v1 = vectors.row(1)
            var fg = v1.map { $0 > 0 }
            let count = fg.filter { $0 }.count
            if 2 * count > n { fg = fg.map { !$0 } }
            for i in 0..<n where fg[i] { labels[i] = 1 }
            k = fg.contains(true) ? 1 : 0
        case .segments(let s):
            let kk = vectors.rows - 1
            var pts = Matrix(rows: n, cols: kk)
            for e in 0..<kk { for i in 0..<n { pts.data[i * kk + e] = vectors.data[(e + 1) * n + i] } }
            let fit = try KMeans.fit(pts, config: KMeansConfig(clusters: s, restarts: max(1, config.restarts),
                                                               maxIterations: max(1, config.maxIterations),
                                                               seed: config.seed))
            let assign = fit.labels.map(Int.init)
            stats.estimatedFlops += Double(config.restarts * config.maxIterations * n * s * kk * 3)
            (labels, k) = numberSegments(assign, height: height, width: width)
        }
        return MaskProposals.fromLabels(labels, maskCount: k, height: height, width: width, stats: stats)
    }

    /// The segment count of the largest eigengap: the `i` in 2...k maximising `l_i - l_(i-1)` for
    /// ascending eigenvalues `l_0...l_k` (first on ties); 2 when k < 2.
    public static func eigengapCount(_ values: [Float]) -> Int {
        guard values.count >= 3 else { return 2 }
        var best = 2, gap = values[2] - values[1]
        for i in 3..<values.count where values[i] - values[i - 1] > gap { gap = values[i] - values[i - 1]; best = i }
        return best
    }

    /// Generalised eigenvectors `v_0...v_k` as rows `[k + 1, n]` (sign rule applied), or nil when
    /// the affinity is all <= 0. O(n^2 C) plus O(n^3) (dense) or O(n^2 k) per Krylov block (see `eigenpairs`).
    public static func eigenvectors(features: Matrix, count k: Int, solver: SpectralSolver = .automatic) throws -> Matrix? {
        var stats = ProposalStats()
        return try eigenvectors(features: features, count: k, solver: solver, stats: &stats)
    }

    static func eigenvectors(features: Matrix, count k: Int, solver: SpectralSolver = .automatic,
                             stats: inout ProposalStats) throws -> Matrix? {
        try eigenpairs(features: features, count: k, solver: solver, stats: &stats)?.vectors
    }

    /// Whether `.automatic` uses the block Krylov solver for `n` cells and `k + 1` eigenpairs.
    ///
    /// The Krylov space holds up to `16 * block` vectors (`block = krylovBlock(k)`, 16 for k = 15): it
    /// must stay well below `n` (at most n/4) to be cheaper than the dense O(n^3) reduction (the
    /// Rayleigh-Ritz on the space alone is O(r^3) and every block is re-orthogonalised against all
    /// of it), and a grid needs n >= 576 (24 x 24) for the O(n^3) reduction to dominate. So k = 15
    /// switches at n >= 1,024 (32 x 32), k <= 8 at n >= 576. Measured on one thread (unseg-bench
    /// `spectral`, which prints both sides of the switch): at 40 x 40, k = 15 Krylov is 4.8x faster
    /// on real features (the VOC fixture), 3.8x on planted ones, 1.9x on Gaussian noise (session 5).
    public static func usesKrylov(cells n: Int, count k: Int) -> Bool {
        n >= 576 && 16 * krylovBlock(k) <= n / 4
    }

    /// Block size of the Krylov solver for `k` wanted pairs: `max(k, 8)` rounded up to a multiple of 8
    /// (sgemm on 16 vectors runs ~20% faster per vector than on 15, and the extra vector helps convergence).
    static func krylovBlock(_ k: Int) -> Int { (max(k, 8) + 7) / 8 * 8 }

    /// The `k + 1` smallest eigenpairs of the normalised Laplacian (eigenvalues ascending, generalised
    /// eigenvectors as rows, sign rule applied), or nil when the affinity is all <= 0.
    public static func eigenpairs(features: Matrix, count k: Int, solver: SpectralSolver = .automatic) throws -> SpectralEigenpairs? {
        var stats = ProposalStats()
        return try eigenpairs(features: features, count: k, solver: solver, stats: &stats)
    }

    static func eigenpairs(features: Matrix, count k: Int, solver: SpectralSolver,
                           stats: inout ProposalStats) throws -> SpectralEigenpairs? {
        let n = features.rows
        precondition(k >= 0 && k < n, "Spectral.eigenvectors: count \(k) should be in 0..<\(n)")
        let krylov = k >= 1 && (solver == .krylov || (solver == .automatic && usesKrylov(cells: n, count: k)))
        if krylov {
            switch try krylovEigenpairs(features: features, count: k, stats: &stats) {
            case .none: return nil
            case .some(.some(let e)): return e
            case .some(.none):
                stats.lapackFallbacks += 1
                guard var e = try denseEigenpairs(features: features, count: k, stats: &stats) else { return nil }
                e.fellBack = true
                return e
            }
        }
        return try denseEigenpairs(features: features, count: k, stats: &stats)
    }

    /// The dense reference: LAPACK `ssyevr` on the full Laplacian. O(n^2 C + n^3).
    static func denseEigenpairs(features: Matrix, count k: Int, stats: inout ProposalStats) throws -> SpectralEigenpairs? {
        let n = features.rows, c = features.cols
        let fn = features.rowNormalized(eps: 1e-12)
        var w = Matrix(rows: n, cols: n)
        BLAS.gemm(fn, fn, into: &w, transA: false, transB: true)
        stats.estimatedFlops += 2 * Double(n) * Double(n) * Double(c)
        var mx: Float = 0
        for t in 0..<(n * n) { let v = max(w.data[t], 0); w.data[t] = v; mx = max(mx, v) }
        if !(mx > 0) { return nil }
        var dinv = [Float](repeating: 0, count: n)
        let invMax = 1 / mx
        for i in 0..<n {
            var s: Float = 0
            for j in 0..<n { w.data[i * n + j] *= invMax; s += w.data[i * n + j] }
            dinv[i] = 1 / max(s, 1e-12).squareRoot()
        }
        // L = I - D^-1/2 W D^-1/2 (in place)
        for i in 0..<n {
            for j in 0..<n { w.data[i * n + j] = -dinv[i] * w.data[i * n + j] * dinv[j] }
            w.data[i * n + i] += 1
        }
        let eig = try LAPACK.symmetricEigen(w, range: 0...k)
        stats.estimatedFlops += 4.0 / 3.0 * Double(n) * Double(n) * Double(n)
        var v = eig.vectors
        applySignRule(&v, dinv: dinv)
        return SpectralEigenpairs(values: eig.values, vectors: v, solver: .dense, matvecs: 0, fellBack: false)
    }

    /// `v = D^-1/2 u` for every row of `u` `[k + 1, n]`, then the DSM sign rule: negate a row when
    /// its fraction of positive entries is in (0.5, 1).
    static func applySignRule(_ v: inout Matrix, dinv: [Float]) {
        let n = v.cols
        for e in 0..<v.rows {
            var positive = 0
            for i in 0..<n {
                v.data[e * n + i] *= dinv[i]
                if v.data[e * n + i] > 0 { positive += 1 }
            }
            let frac = Double(positive) / Double(n)
            if frac > 0.5 && frac < 1 { for i in 0..<n { v.data[e * n + i] = -v.data[e * n + i] } }
        }
    }

    /// Block Krylov path: nil when the affinity is all <= 0, `.some(nil)` when the iteration did
    /// not converge (the caller falls back to the dense solve).
    ///
    /// Builds `W' = max(Fn Fn^T, 0)` (unscaled) with `ssyrk` (half the flops of the dense path's
    /// sgemm; the clamped upper triangle is mirrored in tiles), then its maximum and row sums;
    /// with `d = rowsum / max` (clamped to 1e-12 as in the dense path) `A = D^-1/2 (W'/max) D^-1/2`
    /// is applied as `diag(s) W' diag(s)`, `s = D^-1/2 / sqrt(max)`, so `A` is never formed.
    /// Its top eigenpair is `(1, D^1/2 1 / |D^1/2 1|)` exactly; `BlockKrylov` finds the next `k`
    /// in its complement; `lambda_L = 1 - lambda_A`.
    static func krylovEigenpairs(features: Matrix, count k: Int, stats: inout ProposalStats) throws -> SpectralEigenpairs?? {
        let n = features.rows, c = features.cols
        let fn = features.rowNormalized(eps: 1e-12)
        var w = Matrix(rows: n, cols: n)
        var rowSum = [Float](repeating: 0, count: n)
        var mx: Float = 0
        w.data.withUnsafeMutableBufferPointer { wb in
            let p = wb.baseAddress!
            fn.data.withUnsafeBufferPointer { fb in
                BLAS.ssyrkUpperAAt(n: n, k: c, alpha: 1, a: fb.baseAddress!, lda: c, beta: 0, c: p, ldc: n)
            }
            // clamp the upper triangle and mirror it into the lower one, in 64 x 64 tiles
            let tile = 64
            var i0 = 0
            while i0 < n {
                var j0 = i0
                while j0 < n {
                    for i in i0..<min(i0 + tile, n) {
                        let row = p + i * n
                        for j in max(j0, i)..<min(j0 + tile, n) {
                            let v = max(row[j], 0)
                            row[j] = v
                            p[j * n + i] = v
                        }
                    }
                    j0 += tile
                }
                i0 += tile
            }
            var m = SIMD8<Float>(repeating: 0)
            for i in 0..<n {
                let row = p + i * n
                rowSum[i] = Reduce.sum(row, n)
                var j = 0
                while j + 8 <= n {
                    let v = load8(row + j)
                    m.replace(with: v, where: v .> m)
                    j += 8
                }
                while j < n { mx = max(mx, row[j]); j += 1 }
            }
            mx = max(mx, m.max())
        }
        stats.estimatedFlops += Double(n) * Double(n) * Double(c)
        if !(mx > 0) { return .none }
        let invMax = 1 / mx
        let scale = invMax.squareRoot()
        var dinv = [Float](repeating: 0, count: n), s = [Float](repeating: 0, count: n), u0 = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let d = max(rowSum[i] * invMax, 1e-12)
            dinv[i] = 1 / d.squareRoot()
            s[i] = dinv[i] * scale
            u0[i] = d.squareRoot()
        }
        let norm = Reduce.dot(u0, u0).squareRoot()
        for i in 0..<n { u0[i] /= norm }
        let block = krylovBlock(k), steps = min(16, (n - 1) / block)
        if steps < 2 { return .some(nil) }
        var solver = BlockKrylov(n: n, want: k, block: block, steps: steps)
        // Warm start: the seeded random block times diag(s) Fn Fn^T diag(s), the affinity without its
        // clamp at 0 applied through the features (4 n C flops per vector instead of 2 n^2). Where
        // most similarities are positive its leading eigenvectors are close to the wanted ones: one
        // block fewer on every benchmark input (real VOC features 144 -> 128 matvecs, planted
        // 192 -> 176, noise 448 -> 384); two or more steps gained nothing more.
        let found = try solver.solve(w: w.data, s: s, u0: u0) { start in
            var z = [Float](repeating: 0, count: block * c)
            do {
                for r in 0..<block { for i in 0..<n { start[r * n + i] *= s[i] } }
                start.withUnsafeMutableBufferPointer { sb in
                    fn.data.withUnsafeBufferPointer { fb in
                        z.withUnsafeMutableBufferPointer { zb in
                            BLAS.sgemm(transA: false, transB: false, m: block, n: c, k: n, alpha: 1, a: sb.baseAddress!, lda: n,
                                       b: fb.baseAddress!, ldb: c, beta: 0, c: zb.baseAddress!, ldc: c)
                            BLAS.sgemm(transA: false, transB: true, m: block, n: n, k: c, alpha: 1, a: zb.baseAddress!, lda: c,
                                       b: fb.baseAddress!, ldb: c, beta: 0, c: sb.baseAddress!, ldc: n)
                        }
                    }
                }
                start.withUnsafeMutableBufferPointer { sb in
                    for r in 0..<block {
                        let row = sb.baseAddress! + r * n
                        for i in 0..<n { row[i] *= s[i] }
                        let inv = 1 / max(Reduce.dot(row, row, n).squareRoot(), 1e-30)
                        for i in 0..<n { row[i] *= inv }
                    }
                }
            }
        }
        stats.matvecs += solver.matvecs
        stats.estimatedFlops += solver.flops
        guard let (values, vectors) = found else { return .some(nil) }
        var v = Matrix(rows: k + 1, cols: n)
        for i in 0..<n { v.data[i] = u0[i] }
        for t in 0..<(k * n) { v.data[n + t] = vectors[t] }
        applySignRule(&v, dinv: dinv)
        return SpectralEigenpairs(values: [0] + values.map { 1 - $0 }, vectors: v, solver: .krylov,
                                  matvecs: solver.matvecs, fellBack: false)
    }

    /// Renumbers cluster ids `[h*w]`: the cluster with the most border cells becomes 0 (ties: the
    /// one whose first cell comes first in row-major order); the others 1...K by first appearance
    /// in row-major order. Returns the labels and K.
    static func numberSegments(_ assign: [Int], height: Int, width: Int) -> ([UInt8], Int) {
        let n = assign.count
        let k = (assign.max() ?? 0) + 1
        var border = [Int](repeating: 0, count: k)
        for y in 0..<height {
            for x in 0..<width where y == 0 || x == 0 || y == height - 1 || x == width - 1 {
                border[assign[y * width + x]] += 1
            }
        }
        var order: [Int] = []
        var seen = [Bool](repeating: false, count: k)
        for i in 0..<n where !seen[assign[i]] { seen[assign[i]] = true; order.append(assign[i]) }
        var bg = order[0]
        for c in order where border[c] > border[bg] { bg = c }
        var newId = [Int](repeating: 0, count: k)
        var next = 1
        for c in order where c != bg { newId[c] = next; next += 1 }
        return (assign.map { UInt8(newId[$0]) }, next - 1)
    }
}
