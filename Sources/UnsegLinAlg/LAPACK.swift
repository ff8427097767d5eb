import CLAPACKE

/// Errors from LAPACK routines, with the routine name and its `info` code.
public struct LAPACKError: Error, CustomStringConvertible {
    public let routine: String
    public let info: Int32
    public var description: String {
        info < 0
            ? "\(routine): argument \(-info) had an illegal value"
            : "\(routine): the algorithm failed to converge (info = \(info))"
    }
}

/// Eigen-decomposition of a real symmetric matrix.
public struct SymmetricEigen: Sendable {
    /// Eigenvalues in ascending order.
    public var values: [Float]
    /// Eigenvectors as the rows of a `[values.count, n]` matrix: row `i` belongs to `values[i]`.
    /// Each has unit norm; its sign is as LAPACK returned it (apply a sign rule where it matters).
    public var vectors: Matrix
}

public enum LAPACK {
    /// Eigenpairs of the symmetric `[n, n]` matrix `a` (only its upper triangle is read).
    ///
    /// `range`: indices (0-based, ascending order of eigenvalue) of the pairs wanted; `nil`
    /// means all. Uses `ssyevr` (MRRR), O(n^3) for the reduction to tridiagonal form plus
    /// O(n k) per extra pair. Computed in Float; for the principal directions and spectral
    /// embeddings used here Float is ample (tests compare with a Double reference).
    public static func symmetricEigen(_ a: Matrix, range: ClosedRange<Int>? = nil) throws -> SymmetricEigen {
        let n = a.rows
        precondition(a.cols == n, "symmetricEigen needs a square matrix, got [\(a.rows), \(a.cols)]")
        if n == 0 { return SymmetricEigen(values: [], vectors: Matrix(rows: 0, cols: 0)) }
        let r = range ?? 0...(n - 1)
        precondition(r.lowerBound >= 0 && r.upperBound < n, "eigenpair range \(r) outside 0...\(n - 1)")
        let want = r.count
        var work = a.data
        var m: Int32 = 0
        var w = [Float](repeating: 0, count: n)
        var z = [Float](repeating: 0, count: n * want)   // column-major n x want in row-major terms: [n, want]
        var isuppz = [Int32](repeating: 0, count: 2 * max(want, 1))
        let info = LAPACKE_ssyevr(unseg_lapack_row_major(), Int8(UInt8(ascii: "V")),
                                  Int8(UInt8(ascii: range == nil ? "A" : "I")), Int8(UInt8(ascii: "U")),
                                  Int32(n), &work, Int32(n), 0, 0, Int32(r.lowerBound + 1), Int32(r.upperBound + 1),
                                  0, &m, &w, &z, Int32(want), &isuppz)
        if info != 0 { throw LAPACKError(routine: "ssyevr", info: info) }
        // z is row-major [n, want]: column j is eigenvector j. Return them as rows.
        let zm = Matrix(rows: n, cols: want, data: z).transposed()
        return SymmetricEigen(values: Array(w[0..<Int(m)]), vectors: zm)
    }

    /// Double-precision variant of `symmetricEigen` (`dsyevr`), for references and ill-conditioned cases.
    public static func symmetricEigenDouble(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(a.count == n * n, "symmetricEigenDouble needs \(n * n) elements, got \(a.count)")
        if n == 0 { return ([], []) }
        var work = a
        var m: Int32 = 0
        var w = [Double](repeating: 0, count: n)
        var z = [Double](repeating: 0, count: n * n)
        var isuppz = [Int32](repeating: 0, count: 2 * n)
        let info = LAPACKE_dsyevr(unseg_lapack_row_major(), Int8(UInt8(ascii: "V")), Int8(UInt8(ascii: "A")),
                                  Int8(UInt8(ascii: "U")), Int32(n), &work, Int32(n), 0, 0, 0, 0, 0,
                                  &m, &w, &z, Int32(n), &isuppz)
        if info != 0 { throw LAPACKError(routine: "dsyevr", info: info) }
        // Return eigenvectors as rows (row i belongs to w[i]).
        var rowsOut = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { rowsOut[j * n + i] = z[i * n + j] } }
        return (w, rowsOut)
    }
}
