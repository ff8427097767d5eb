/// Vectorised reductions and row operations on `Float` buffers.
///
/// Plain Swift loops over `Float` do not vectorise a reduction (the compiler keeps
/// the sequential order); these use `SIMD16<Float>` accumulators, so results are
/// deterministic for a given length but may differ from a sequential sum in the
/// last bits.
/// Unaligned 8-lane load from `p`.
@inlinable @inline(__always) public func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
/// Unaligned 8-lane load from `p`.
@inlinable @inline(__always) public func load8(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}
/// Unaligned 8-lane store of `v` to `p`.
@inlinable @inline(__always) public func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

public enum Reduce {
    /// Sum of `n` floats at `p`.
    @inlinable
    public static func sum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 32 <= n {
            acc0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            acc1 += raw.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self)
            i += 32
        }
        var s = (acc0 + acc1).sum()
        while i < n { s += p[i]; i += 1 }
        return s
    }

    /// Dot product of `n` floats at `a` and `b`.
    @inlinable
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 32 <= n {
            acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            acc1 += ra.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self)
                * rb.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self)
            i += 32
        }
        var s = (acc0 + acc1).sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// Dot product of two equal-length arrays.
    public static func dot(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "dot length mismatch: \(a.count) vs \(b.count)")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                guard let x = pa.baseAddress, let y = pb.baseAddress else { return 0 }
                return dot(x, y, a.count)
            }
        }
    }

    /// Sum of an array.
    public static func sum(_ a: [Float]) -> Float {
        a.withUnsafeBufferPointer { p in p.baseAddress.map { sum($0, a.count) } ?? 0 }
    }

    /// Index of the largest of `n` values at `p` (first one on ties); -1 when `n == 0`.
    @inlinable
    public static func argmax(_ p: UnsafePointer<Float>, _ n: Int) -> Int {
        if n == 0 { return -1 }
        var best = 0
        var bv = p[0]
        var i = 1
        while i < n { if p[i] > bv { bv = p[i]; best = i }; i += 1 }
        return best
    }

    /// Index of the largest element (first one on ties); -1 for an empty array.
    public static func argmax(_ a: [Float]) -> Int {
        a.withUnsafeBufferPointer { p in p.baseAddress.map { argmax($0, a.count) } ?? -1 }
    }

    /// Row-wise argmax of `[rows, cols]` row-major values (first index on ties), `[rows]`. O(rows cols).
    public static func rowArgmax(_ m: [Float], rows: Int, cols: Int) -> [Int32] {
        precondition(m.count >= rows * cols, "rowArgmax: \(m.count) values for [\(rows), \(cols)]")
        var out = [Int32](repeating: 0, count: rows)
        m.withUnsafeBufferPointer { p in
            for i in 0..<rows { out[i] = Int32(argmax(p.baseAddress! + i * cols, cols)) }
        }
        return out
    }

    /// `q_i = softmax(x_i)` over the first `cols` entries of each of `rows` rows of stride `stride`
    /// (max-subtracted, libm `expf`). `x` and `q` may be the same buffer. O(rows cols).
    public static func softmaxRows(_ x: UnsafePointer<Float>, into q: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                   stride: Int) {
        for i in 0..<rows {
            let r = x + i * stride
            let o = q + i * stride
            var mx = r[0]
            for l in 1..<max(cols, 1) where r[l] > mx { mx = r[l] }
            var s: Float = 0
            for l in 0..<cols { let e = LibM.expf(r[l] - mx); o[l] = e; s += e }
            let inv = 1 / s
            for l in 0..<cols { o[l] *= inv }
        }
    }

    /// Row-wise softmax of `[rows, cols]` as a new array (see `softmaxRows`).
    public static func softmax(_ x: [Float], rows: Int, cols: Int) -> [Float] {
        precondition(x.count == rows * cols, "softmax: \(x.count) values for [\(rows), \(cols)]")
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { ob in
                softmaxRows(xb.baseAddress!, into: ob.baseAddress!, rows: rows, cols: cols, stride: cols)
            }
        }
        return out
    }
}

extension Matrix {
    /// Euclidean norm of each row, `[rows]`. O(rows * cols).
    public func rowNorms() -> [Float] {
        var out = [Float](repeating: 0, count: rows)
        let c = cols
        data.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress else { return }
            for i in 0..<rows { let r = base + i * c; out[i] = Reduce.dot(r, r, c).squareRoot() }
        }
        return out
    }

    /// Divides each row by `max(norm, eps)` in place (eps 1e-12 as in PyTorch's `F.normalize`).
    public mutating func normalizeRows(eps: Float = 1e-12) {
        let c = cols
        let r = rows
        data.withUnsafeMutableBufferPointer { p in
            guard let base = p.baseAddress else { return }
            for i in 0..<r {
                let row = base + i * c
                let n = Reduce.dot(row, row, c).squareRoot()
                let inv = 1 / max(n, eps)
                for j in 0..<c { row[j] *= inv }
            }
        }
    }

    /// A copy with L2-normalised rows.
    public func rowNormalized(eps: Float = 1e-12) -> Matrix {
        var m = self
        m.normalizeRows(eps: eps)
        return m
    }

    /// Mean of the rows, `[cols]`, accumulated in Double for accuracy. O(rows * cols).
    public func columnMeans() -> [Float] {
        var acc = [Double](repeating: 0, count: cols)
        let c = cols
        data.withUnsafeBufferPointer { p in
            for i in 0..<rows { for j in 0..<c { acc[j] += Double(p[i * c + j]) } }
        }
        let inv = rows > 0 ? 1 / Double(rows) : 0
        return acc.map { Float($0 * inv) }
    }

    /// Index of the largest entry of each row (first on ties), `[rows]`.
    public func rowArgmax() -> [Int] {
        var out = [Int](repeating: -1, count: rows)
        let c = cols
        data.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress else { return }
            for i in 0..<rows { out[i] = Reduce.argmax(base + i * c, c) }
        }
        return out
    }
}
