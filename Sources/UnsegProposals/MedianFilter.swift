import UnsegLinAlg

/// 3x3 median filter on maps stored row-major on a `height x width` grid, with reflect
/// padding as in the PriMaPs reference (`F.pad(mode: "reflect")`, then the median of the
/// 9 values; for 9 values the lower median torch returns is the middle one).
///
/// Reflect padding mirrors about the edge cell without repeating it: index -1 reads 1 and
/// index `n` reads `n - 2`. For a side of length 1 (where torch raises) the edge cell is
/// repeated instead. O(9 * cells) per map with a 19-exchange sorting network, no allocation
/// beyond the output.
public enum MedianFilter {
    /// Filters one map `[height * width]` (row-major) into `output` `[height * width]`.
    /// `input` and `output` must not overlap.
    public static func median3x3(_ input: UnsafePointer<Float>, height: Int, width: Int,
                                 into output: UnsafeMutablePointer<Float>) {
        if height <= 0 || width <= 0 { return }
        for y in 0..<height {
            let ym = reflect(y - 1, height), yp = reflect(y + 1, height)
            let r0 = input + ym * width, r1 = input + y * width, r2 = input + yp * width
            let out = output + y * width
            for x in 0..<width {
                let xm = reflect(x - 1, width), xp = reflect(x + 1, width)
                out[x] = median9(r0[xm], r0[x], r0[xp], r1[xm], r1[x], r1[xp], r2[xm], r2[x], r2[xp])
            }
        }
    }

    /// Filters each row of `maps` `[mapCount, height * width]` independently; returns the same shape.
    public static func median3x3(maps: Matrix, height: Int, width: Int) -> Matrix {
        precondition(maps.cols == height * width,
                     "median3x3: maps have \(maps.cols) columns but the grid is \(height) x \(width)")
        var out = Matrix(rows: maps.rows, cols: maps.cols)
        let n = maps.cols
        maps.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                for k in 0..<maps.rows { median3x3(s + k * n, height: height, width: width, into: d + k * n) }
            }
        }
        return out
    }

    /// Reflect-101 index into `0..<n` for `i` in `-1...n` (repeats the edge when `n == 1`).
    @inlinable
    static func reflect(_ i: Int, _ n: Int) -> Int {
        if n == 1 { return 0 }
        if i < 0 { return -i }
        if i >= n { return 2 * n - 2 - i }
        return i
    }

    /// Median of nine values: the classic 19 compare-exchange network (Paeth / Devillard).
    @inlinable
    static func median9(_ a0: Float, _ a1: Float, _ a2: Float, _ a3: Float, _ a4: Float,
                        _ a5: Float, _ a6: Float, _ a7: Float, _ a8: Float) -> Float {
        var p0 = a0, p1 = a1, p2 = a2, p3 = a3, p4 = a4, p5 = a5, p6 = a6, p7 = a7, p8 = a8
        @inline(__always) func s(_ a: inout Float, _ b: inout Float) { if a > b { swap(&a, &b) } }
        s(&p1, &p2); s(&p4, &p5); s(&p7, &p8); s(&p0, &p1); s(&p3, &p4); s(&p6, &p7)
        s(&p1, &p2); s(&p4, &p5); s(&p7, &p8); s(&p0, &p3); s(&p5, &p8); s(&p4, &p7)
        s(&p3, &p6); s(&p1, &p4); s(&p2, &p5); s(&p4, &p7); s(&p4, &p2); s(&p6, &p4)
        s(&p4, &p2)
        return p4
    }
}
