import CBLAS
import CLAPACKE

// Raw-pointer symmetric kernels used by the proposal methods (PriMaPs keeps an
// uncentred covariance up to date with rank-k updates and multiplies by it).

extension BLAS {
    /// `C = alpha * A^T A + beta * C` on raw row-major buffers, UPPER triangle of `C` only.
    ///
    /// `A` is `[n, k]` with row stride `lda`; `C` is `[k, k]` with row stride `ldc`; the strictly
    /// lower triangle of `C` is not touched. O(n k^2 / 2) via `ssyrk`.
    @inlinable
    public static func ssyrkUpperAtA(n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if k == 0 { return }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(k), Int32(n), alpha,
                    a, Int32(max(lda, 1)), beta, c, Int32(max(ldc, 1)))
    }

    /// `y = alpha * A x + beta * y` for a symmetric `[n, n]` row-major `A` of which only the
    /// UPPER triangle is read (`ssymv`). O(n^2).
    @inlinable
    public static func ssymvUpper(n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                  x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        if n == 0 { return }
        cblas_ssymv(CblasRowMajor, CblasUpper, Int32(n), alpha, a, Int32(max(lda, 1)), x, 1, beta, y, 1)
    }
}

extension LAPACK {
    /// Eigenpairs of the symmetric tridiagonal matrix with diagonal `d` `[n]` and off-diagonal
    /// `e` `[n - 1]` (`sstev`, implicit QL/QR). Values ascending; vectors as ROWS `[n, n]`.
    /// O(n^2) for values plus O(n^3) for vectors; meant for small Krylov matrices (n <= ~100).
    public static func tridiagonalEigen(diagonal d: [Float], offDiagonal e: [Float]) throws -> SymmetricEigen {
        let n = d.count
        precondition(e.count == max(n - 1, 0), "tridiagonalEigen: diagonal [\(n)] needs off-diagonal [\(max(n - 1, 0))], got [\(e.count)]")
        if n == 0 { return SymmetricEigen(values: [], vectors: Matrix(rows: 0, cols: 0)) }
        var dd = d
        var ee = e + [0]
        var z = [Float](repeating: 0, count: n * n)
        let info = LAPACKE_sstev(unseg_lapack_row_major(), Int8(UInt8(ascii: "V")), Int32(n), &dd, &ee, &z, Int32(n))
        if info != 0 { throw LAPACKError(routine: "sstev", info: info) }
        // z is row-major [n, n] with eigenvector j in column j: return them as rows.
        return SymmetricEigen(values: dd, vectors: Matrix(rows: n, cols: n, data: z).transposed())
    }
}

extension BLAS {
    /// `C = alpha * A A^T + beta * C` on raw row-major buffers, UPPER triangle of `C` only: the Gram
    /// matrix of the ROWS of `A` `[n, k]` (row stride `lda`), `C` `[n, n]` (row stride `ldc`); the
    /// strictly lower triangle is not touched. O(n^2 k) via `ssyrk` (half the flops of `sgemm`).
    @inlinable
    public static func ssyrkUpperAAt(n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if n == 0 { return }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(k), alpha,
                    a, Int32(max(lda, 1)), beta, c, Int32(max(ldc, 1)))
    }
}
