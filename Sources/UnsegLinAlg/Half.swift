/// Conversion between IEEE 754 half precision (float16, how feature stores keep
/// features on disk) and `Float`. Exact: every float16 value is a Float.
public enum Half {
    /// Converts `n` float16 values (raw bits) at `src` to Float at `dst`.
    @inlinable
    public static func toFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        src.withMemoryRebound(to: Float16.self, capacity: n) { h in
            var i = 0
            while i + 8 <= n {
                let v = UnsafeRawPointer(h + i).loadUnaligned(as: SIMD8<Float16>.self)
                UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD8<Float>(v), as: SIMD8<Float>.self)
                i += 8
            }
            while i < n { dst[i] = Float(h[i]); i += 1 }
        }
    }

    /// Converts `n` Floats at `src` to float16 bits at `dst` (round to nearest even; overflow to inf).
    @inlinable
    public static func fromFloat(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) {
        dst.withMemoryRebound(to: Float16.self, capacity: n) { h in
            for i in 0..<n { h[i] = Float16(src[i]) }
        }
    }
}
