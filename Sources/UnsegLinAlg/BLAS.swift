import CBLAS
#if canImport(Glibc)
import Glibc
#endif

/// How a job uses the cores, chosen once per job (OpenBLAS's thread count is process-wide state).
public enum BLASPolicy: Sendable {
    /// Images in parallel on our threads, one BLAS thread each (every job of the pipeline: never
    /// nest our threads inside BLAS threads). Results do not depend on the thread count: every
    /// per-image result is computed on one thread and reductions run in image order.
    case imagesInParallel
    /// One large problem on all cores (a big sgemm, a benchmark of the BLAS itself).
    case oneProblem

    /// Sets OpenBLAS's thread count for this policy.
    public func apply() {
        switch self {
        case .imagesInParallel: BLAS.threads = 1
        case .oneProblem: BLAS.threads = Parallel.coreCount
        }
    }
}

/// Thin, checked wrappers over the linked CBLAS (OpenBLAS).
///
/// Every wrapper checks shapes before the C call and traps with both shapes in
/// the message on a mismatch: a shape mismatch is a programming error, not a
/// user-input error (user input is validated where it is read).
public enum BLAS {
    /// Threads OpenBLAS uses for one call. Setting it is process-wide.
    public static var threads: Int {
        get { Int(unseg_blas_get_threads()) }
        set { unseg_blas_set_threads(Int32(max(1, newValue))) }
    }

    /// The kernel family OpenBLAS picked for this CPU (e.g. "Haswell", "SkylakeX").
    public static var coreName: String { String(cString: unseg_blas_core_name()) }

    /// On a CPU the linked OpenBLAS does not know (Debian's 0.3.21 runs Sapphire Rapids on its
    /// SSE3 "Prescott" kernels, a third of the sgemm speed), starts the program again with
    /// `OPENBLAS_CORETYPE` set to the family the CPU can run (`SkylakeX` with AVX-512, `Haswell`
    /// with AVX2): OpenBLAS reads it at load time only. Call first thing in `main`. Does nothing
    /// when OpenBLAS chose well or the user set `OPENBLAS_CORETYPE` (their choice stands).
    /// Results stay deterministic: every process of a job on one machine runs the same kernels.
    public static func restartWithBetterKernelsIfNeeded() {
        guard let core = unseg_blas_better_core() else { return }
        unseg_blas_restart_with_core(core, UnsafePointer(CommandLine.unsafeArgv))
    }

    /// The family OpenBLAS had chosen before `restartWithBetterKernelsIfNeeded` replaced it, or nil.
    public static var replacedCoreName: String? {
        getenv("UNSEG_BLAS_CORE_CHOSEN").map { String(cString: $0) }
    }

    /// `C = alpha * op(A) * op(B) + beta * C` on raw row-major buffers.
    ///
    /// `op(A)` is `[m, k]`, `op(B)` is `[k, n]`, `C` is `[m, n]`; `lda`, `ldb`, `ldc`
    /// are the row strides of the buffers as stored. O(m n k).
    @inlinable
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                             alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `op(A) * op(B)` as a new matrix. O(m n k).
    public static func matmul(_ a: Matrix, _ b: Matrix, transA: Bool = false, transB: Bool = false) -> Matrix {
        let (m, ka) = transA ? (a.cols, a.rows) : (a.rows, a.cols)
        let (kb, n) = transB ? (b.cols, b.rows) : (b.rows, b.cols)
        precondition(ka == kb, "matmul shape mismatch: op(A) = [\(m), \(ka)], op(B) = [\(kb), \(n)]")
        var c = Matrix(rows: m, cols: n)
        gemm(a, b, into: &c, transA: transA, transB: transB, alpha: 1, beta: 0)
        return c
    }

    /// `C = alpha * op(A) * op(B) + beta * C` in place.
    public static func gemm(_ a: Matrix, _ b: Matrix, into c: inout Matrix,
                            transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0) {
        let (m, ka) = transA ? (a.cols, a.rows) : (a.rows, a.cols)
        let (kb, n) = transB ? (b.cols, b.rows) : (b.rows, b.cols)
        precondition(ka == kb && c.rows == m && c.cols == n,
                     "gemm shape mismatch: op(A) = [\(m), \(ka)], op(B) = [\(kb), \(n)], C = [\(c.rows), \(c.cols)]")
        let lda = a.cols, ldb = b.cols, ldc = c.cols
        a.data.withUnsafeBufferPointer { pa in
            b.data.withUnsafeBufferPointer { pb in
                c.data.withUnsafeMutableBufferPointer { pc in
                    sgemm(transA: transA, transB: transB, m: m, n: n, k: ka, alpha: alpha,
                          a: pa.baseAddress!, lda: max(lda, 1), b: pb.baseAddress!, ldb: max(ldb, 1),
                          beta: beta, c: pc.baseAddress!, ldc: max(ldc, 1))
                }
            }
        }
    }

    /// `y = alpha * op(A) * x + beta * y` on raw buffers; `A` is `[m, n]` row-major with stride `lda`.
    @inlinable
    public static func sgemv(trans: Bool, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        if m == 0 || n == 0 { return }
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha,
                    a, Int32(lda), x, 1, beta, y, 1)
    }

    /// `op(A) * x` as a new vector. O(rows * cols).
    public static func matvec(_ a: Matrix, _ x: [Float], trans: Bool = false) -> [Float] {
        let (outN, inN) = trans ? (a.cols, a.rows) : (a.rows, a.cols)
        precondition(x.count == inN, "matvec shape mismatch: op(A) = [\(outN), \(inN)], x = [\(x.count)]")
        var y = [Float](repeating: 0, count: outN)
        a.data.withUnsafeBufferPointer { pa in
            x.withUnsafeBufferPointer { px in
                y.withUnsafeMutableBufferPointer { py in
                    sgemv(trans: trans, m: a.rows, n: a.cols, alpha: 1, a: pa.baseAddress!, lda: max(a.cols, 1),
                          x: px.baseAddress!, beta: 0, y: py.baseAddress!)
                }
            }
        }
        return y
    }

    /// `C = alpha * A^T A + beta * C` (upper and lower triangles both filled): the Gram matrix
    /// of the columns of `A` `[n, k]`, shape `[k, k]`. O(n k^2 / 2) via `ssyrk`.
    public static func gramOfColumns(_ a: Matrix, into c: inout Matrix, alpha: Float = 1, beta: Float = 0) {
        let k = a.cols
        precondition(c.rows == k && c.cols == k, "gram shape mismatch: A = [\(a.rows), \(k)], C = [\(c.rows), \(c.cols)]")
        if k == 0 { return }
        a.data.withUnsafeBufferPointer { pa in
            c.data.withUnsafeMutableBufferPointer { pc in
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(k), Int32(a.rows), alpha,
                            pa.baseAddress!, Int32(max(k, 1)), beta, pc.baseAddress!, Int32(k))
                for i in 0..<k { for j in 0..<i { pc[i * k + j] = pc[j * k + i] } }
            }
        }
    }
}
