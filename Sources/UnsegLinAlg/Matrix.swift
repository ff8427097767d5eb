import Foundation

/// A dense row-major matrix of `Float` (Float32).
///
/// Shape `[rows, cols]`; element `(i, j)` lives at `data[i * cols + j]`, so one
/// image's features `[h*w, C]` are one `Matrix` with a row per cell. This is the
/// layout BLAS is called with (`CblasRowMajor`, leading dimension `cols`).
public struct Matrix: Equatable, Sendable {
    public private(set) var rows: Int
    public private(set) var cols: Int
    /// Row-major storage, `rows * cols` elements.
    public var data: [Float]

    /// A `rows x cols` matrix filled with `value`.
    public init(rows: Int, cols: Int, repeating value: Float = 0) {
        precondition(rows >= 0 && cols >= 0, "Matrix shape must be non-negative, got [\(rows), \(cols)]")
        self.rows = rows
        self.cols = cols
        self.data = [Float](repeating: value, count: rows * cols)
    }

    /// Wraps row-major `data` of exactly `rows * cols` elements.
    public init(rows: Int, cols: Int, data: [Float]) {
        precondition(data.count == rows * cols,
                     "Matrix data has \(data.count) elements but shape [\(rows), \(cols)] needs \(rows * cols)")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    /// Builds a matrix from nested rows (tests and small literals); all rows must have equal length.
    public init(_ nested: [[Float]]) {
        let r = nested.count
        let c = nested.first?.count ?? 0
        precondition(nested.allSatisfy { $0.count == c }, "Matrix rows have different lengths")
        self.init(rows: r, cols: c, data: nested.flatMap { $0 })
    }

    /// The identity matrix of size `n`.
    public static func identity(_ n: Int) -> Matrix {
        var m = Matrix(rows: n, cols: n)
        for i in 0..<n { m.data[i * n + i] = 1 }
        return m
    }

    @inlinable public var count: Int { rows * cols }
    @inlinable public var shape: [Int] { [rows, cols] }

    @inlinable public subscript(i: Int, j: Int) -> Float {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }

    /// A copy of row `i` (`cols` elements).
    public func row(_ i: Int) -> [Float] { Array(data[(i * cols)..<((i + 1) * cols)]) }

    /// Replaces row `i` with `values` (`cols` elements).
    public mutating func setRow(_ i: Int, _ values: [Float]) {
        precondition(values.count == cols, "row has \(values.count) values, matrix has \(cols) columns")
        data.replaceSubrange((i * cols)..<((i + 1) * cols), with: values)
    }

    /// The transpose, `[cols, rows]`. O(rows * cols), blocked for cache locality.
    public func transposed() -> Matrix {
        var out = Matrix(rows: cols, cols: rows)
        let r = rows, c = cols, block = 32
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                var i0 = 0
                while i0 < r {
                    var j0 = 0
                    while j0 < c {
                        for i in i0..<min(i0 + block, r) {
                            for j in j0..<min(j0 + block, c) { dst[j * r + i] = src[i * c + j] }
                        }
                        j0 += block
                    }
                    i0 += block
                }
            }
        }
        return out
    }

    /// Rows `range` as a new matrix.
    public func rows(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, cols: cols, data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }

    /// Rows at `indices`, in that order.
    public func gatherRows(_ indices: [Int]) -> Matrix {
        var out = Matrix(rows: indices.count, cols: cols)
        let c = cols
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for (k, i) in indices.enumerated() {
                    for j in 0..<c { dst[k * c + j] = src[i * c + j] }
                }
            }
        }
        return out
    }

    /// Reinterprets the storage with a new shape of the same element count.
    public func reshaped(rows newRows: Int, cols newCols: Int) -> Matrix {
        Matrix(rows: newRows, cols: newCols, data: data)
    }
}

extension Matrix: CustomStringConvertible {
    public var description: String {
        let shown = (0..<min(rows, 6)).map { i in
            (0..<min(cols, 8)).map { j in String(format: "%9.4f", Double(self[i, j])) }.joined(separator: " ")
                + (cols > 8 ? " ..." : "")
        }
        return "Matrix [\(rows), \(cols)]\n" + shown.joined(separator: "\n") + (rows > 6 ? "\n..." : "")
    }
}
