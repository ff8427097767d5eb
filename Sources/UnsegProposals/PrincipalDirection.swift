import UnsegLinAlg

/// How PriMaPs finds the first principal direction (top eigenvector of the centred covariance).
public enum PrincipalSolver: String, Sendable, Equatable, CaseIterable {
    /// Lanczos with full re-orthogonalisation (Krylov dimension up to 32, explicit restarts from
    /// the Ritz vector), warm-started; LAPACK fallback when the matvec budget runs out.
    case lanczos
    /// Plain power iteration, warm-started; LAPACK fallback when the matvec budget runs out.
    case power
    /// Always LAPACK `ssyevr` for the top pair only (reference; O(C^3) per mask).
    case lapack
}

/// The centred covariance `A = S - b b^T / n` of a set of rows, kept implicitly: `S` is the
/// uncentred scatter `sum_i x_i x_i^T` `[C, C]` (upper triangle valid, row-major) and `b` the
/// sum of the rows `[C]`, `n` the row count. `A x = S x - b (b . x) / n` costs one `ssymv`.
struct CentredCovariance {
    let c: Int
    /// `[C, C]` row-major, upper triangle valid.
    var scatter: [Float]
    /// Sum of the rows, `[C]`, accumulated in Double.
    var sum: [Double]
    var count: Int

    init(channels: Int) {
        c = channels
        scatter = [Float](repeating: 0, count: channels * channels)
        sum = [Double](repeating: 0, count: channels)
        count = 0
    }

    /// Trace of the centred covariance (total variance times n), in Double.
    func centredTrace() -> Double {
        if count == 0 { return 0 }
        var t = 0.0, bb = 0.0
        for j in 0..<c { t += Double(scatter[j * c + j]); bb += sum[j] * sum[j] }
        return t - bb / Double(count)
    }

    /// The centred covariance as a full `[C, C]` matrix (for LAPACK and tests).
    func dense() -> Matrix {
        var a = Matrix(rows: c, cols: c)
        let inv = count > 0 ? 1 / Double(count) : 0
        for i in 0..<c {
            for j in i..<c {
                let v = Float(Double(scatter[i * c + j]) - sum[i] * sum[j] * inv)
                a.data[i * c + j] = v
                a.data[j * c + i] = v
            }
        }
        return a
    }
}

/// Top-eigenvector solver for `[C, C]` centred covariances.
///
/// Convergence: the relative residual `|A x - theta x| <= tolerance * theta` (theta the Rayleigh
/// quotient; for Lanczos the residual is the usual `beta_k |s_k|` estimate). By Davis-Kahan the
/// angle to the true top eigenvector is at most `residual / (lambda_1 - lambda_2)`, so the default
/// tolerance 1e-4 gives cos > 0.9999 whenever the eigengap exceeds ~1% of lambda_1; below that the
/// principal direction is ill-determined anyway. Float arithmetic reaches relative residuals of
/// ~1e-6, so tolerances below ~1e-5 only cause LAPACK fallbacks.
struct TopEigenSolver {
    let c: Int
    let method: PrincipalSolver
    let tolerance: Float
    let maxMatvecs: Int
    let krylov: Int
    /// Matvecs, fallbacks and estimated flops over the solver's lifetime.
    var matvecs = 0
    var fallbacks = 0
    var flops: Double = 0

    init(channels: Int, method: PrincipalSolver, tolerance: Float, maxMatvecs: Int) {
        c = channels
        self.method = method
        self.tolerance = tolerance
        self.maxMatvecs = max(1, maxMatvecs)
        krylov = max(1, min(32, channels))
    }

    /// `y = A x` for `A` the centred covariance with row sum `b` (Float copy).
    private static func apply(_ cov: CentredCovariance, _ b: UnsafePointer<Float>,
                              _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let n = cov.c
        cov.scatter.withUnsafeBufferPointer { s in
            BLAS.ssymvUpper(n: n, alpha: 1, a: s.baseAddress!, lda: n, x: x, beta: 0, y: y)
        }
        let coef = Reduce.dot(b, x, n) / Float(cov.count)
        for j in 0..<n { y[j] -= coef * b[j] }
    }

    /// Unit top eigenvector of the centred covariance `cov`, starting from `start` `[C]` (nonzero).
    /// The sign is whatever the iteration produced: callers apply their own sign rule.
    mutating func top(_ cov: CentredCovariance, start: [Float]) throws -> [Float] {
        precondition(start.count == c, "start vector has \(start.count) entries, covariance is \(c) x \(c)")
        let b = cov.sum.map { Float($0) }
        var result: [Float]? = nil
        var used = 0
        switch method {
        case .lapack: break
        case .power: result = power(cov, b, start: start, used: &used)
        case .lanczos: result = try lanczos(cov, b, start: start, used: &used)
        }
        matvecs += used
        flops += Double(used * (2 * c * c + 4 * c))
        if let x = result { return x }
        if method != .lapack { fallbacks += 1 }
        let e = try LAPACK.symmetricEigen(cov.dense(), range: (c - 1)...(c - 1))
        flops += 4.0 / 3.0 * Double(c * c * c)
        return e.vectors.row(0)
    }

    private static func normalize(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        let nrm = Reduce.dot(x, x, n).squareRoot()
        if nrm > 0 { let inv = 1 / nrm; for j in 0..<n { x[j] *= inv } }
        return nrm
    }

    /// Power iteration; nil when the budget ran out before convergence.
    private func power(_ cov: CentredCovariance, _ bv: [Float], start: [Float], used: inout Int) -> [Float]? {
        var x = start
        var y = [Float](repeating: 0, count: c)
        let n = c, budget = maxMatvecs, tol = tolerance
        var count = 0
        let out = bv.withUnsafeBufferPointer { bb -> [Float]? in
            x.withUnsafeMutableBufferPointer { xb -> [Float]? in
                y.withUnsafeMutableBufferPointer { yb -> [Float]? in
                    let b = bb.baseAddress!, xp = xb.baseAddress!, yp = yb.baseAddress!
                    if TopEigenSolver.normalize(xp, n) == 0 { return nil }
                    while count < budget {
                        TopEigenSolver.apply(cov, b, xp, yp)
                        count += 1
                        let theta = Reduce.dot(xp, yp, n)
                        var r2: Float = 0
                        for j in 0..<n { let d = yp[j] - theta * xp[j]; r2 += d * d }
                        if TopEigenSolver.normalize(yp, n) == 0 { return nil }
                        for j in 0..<n { xp[j] = yp[j] }
                        if theta > 0 && r2.squareRoot() <= tol * theta { return Array(xb) }
                    }
                    return nil
                }
            }
        }
        used += count
        return out
    }

    /// Lanczos with full re-orthogonalisation (classical Gram-Schmidt, twice) and explicit
    /// restarts from the Ritz vector; nil when the budget ran out before convergence.
    private mutating func lanczos(_ cov: CentredCovariance, _ bv: [Float], start: [Float], used: inout Int) throws -> [Float]? {
        let n = c, m = krylov, tol = tolerance
        var basis = [Float](repeating: 0, count: (m + 1) * n)
        var w = [Float](repeating: 0, count: n)
        var h = [Float](repeating: 0, count: m + 1)
        var alpha = [Float](repeating: 0, count: m)
        var beta = [Float](repeating: 0, count: m)
        var q0 = start
        var reorthFlops = 0.0
        defer { flops += reorthFlops }
        while used < maxMatvecs {
            let ok = q0.withUnsafeMutableBufferPointer { TopEigenSolver.normalize($0.baseAddress!, n) > 0 }
            if !ok { return nil }
            for j in 0..<n { basis[j] = q0[j] }
            var k = 0
            var ritz: [Float]? = nil
            var converged = false
            for j in 0..<m {
                if used >= maxMatvecs { break }
                used += 1
                let (a, bnorm) = basis.withUnsafeMutableBufferPointer { qb in
                    w.withUnsafeMutableBufferPointer { wb in
                        h.withUnsafeMutableBufferPointer { hb in
                            bv.withUnsafeBufferPointer { bb -> (Float, Float) in
                                let q = qb.baseAddress!, wp = wb.baseAddress!, hp = hb.baseAddress!
                                TopEigenSolver.apply(cov, bb.baseAddress!, q + j * n, wp)
                                var a: Float = 0
                                for _ in 0..<2 {
                                    BLAS.sgemv(trans: false, m: j + 1, n: n, alpha: 1, a: q, lda: n, x: wp, beta: 0, y: hp)
                                    BLAS.sgemv(trans: true, m: j + 1, n: n, alpha: -1, a: q, lda: n, x: hp, beta: 1, y: wp)
                                    a += hp[j]
                                }
                                return (a, Reduce.dot(wp, wp, n).squareRoot())
                            }
                        }
                    }
                }
                reorthFlops += Double(8 * (j + 1) * n)
                alpha[j] = a
                beta[j] = bnorm
                k = j + 1
                if k % 4 == 0 || j == m - 1 || used >= maxMatvecs || k == n || bnorm == 0 {
                    let t = try LAPACK.tridiagonalEigen(diagonal: Array(alpha[0..<k]),
                                                        offDiagonal: Array(beta[0..<(k - 1)]))
                    let theta = t.values[k - 1]
                    let s = t.vectors.row(k - 1)
                    ritz = s
                    let res = bnorm * abs(s[k - 1])
                    if theta > 0 && (res <= tol * theta || k == n || bnorm <= 1e-7 * theta) { converged = true }
                }
                if converged || bnorm == 0 { break }
                let inv = 1 / bnorm
                for i in 0..<n { basis[(j + 1) * n + i] = w[i] * inv }
            }
            guard let s = ritz else { return nil }
            var x = [Float](repeating: 0, count: n)
            basis.withUnsafeBufferPointer { qb in
                s.withUnsafeBufferPointer { sb in
                    x.withUnsafeMutableBufferPointer { xb in
                        BLAS.sgemv(trans: true, m: k, n: n, alpha: 1, a: qb.baseAddress!, lda: n,
                                   x: sb.baseAddress!, beta: 0, y: xb.baseAddress!)
                        _ = TopEigenSolver.normalize(xb.baseAddress!, n)
                    }
                }
            }
            if converged { return x }
            if beta[k - 1] == 0 { return nil }   // invariant subspace without convergence: give up
            q0 = x
        }
        return nil
    }
}
