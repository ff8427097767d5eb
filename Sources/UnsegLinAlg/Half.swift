/// Conversion between IEEE 754 half precision (float16, how feature stores keep
/// features on disk) and `Float`. Exact: every float16 value is a Float.
///
/// Widening is done with integer SIMD on the bit patterns (normal numbers: shift and
/// re-bias the exponent; subnormals: mantissa x 2^-24; inf/NaN: maximal exponent),
/// because `Float(Float16)` compiles to a scalar library call on x86-64 without F16C
/// and was the bottleneck of streaming float16 stores (about 2 ns per value).
public enum Half {
    /// Converts `n` float16 values (raw bits) at `src` to Float at `dst`.
    @inlinable
    public static func toFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let raw = UnsafeRawPointer(src)
        let out = UnsafeMutableRawPointer(dst)
        while i + 16 <= n {
            let h = SIMD16<UInt32>(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self))
            out.storeBytes(of: widen(h), toByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        while i < n {
            var h = SIMD16<UInt32>(repeating: 0)
            h[0] = UInt32(src[i])
            dst[i] = widen(h)[0]
            i += 1
        }
    }

    @inlinable @inline(__always)
    static func widen(_ h: SIMD16<UInt32>) -> SIMD16<Float> {
        let sign = (h & 0x8000) &<< 16
        let em = h & 0x7FFF
        var bits = (em &<< 13) &+ 0x3800_0000                       // re-bias exponent 15 -> 127
        bits.replace(with: bits &+ 0x3800_0000, where: em .>= 0x7C00)  // inf / NaN -> exponent 255
        let sub = SIMD16<Float>(SIMD16<Int32>(truncatingIfNeeded: em)) * (1.0 / 16_777_216.0)
        bits.replace(with: unsafeBitCast(sub, to: SIMD16<UInt32>.self), where: em .< 0x0400)  // zero, subnormal
        return unsafeBitCast(bits | sign, to: SIMD16<Float>.self)
    }

    /// Converts `n` Floats at `src` to float16 bits at `dst` (round to nearest even; overflow to inf).
    @inlinable
    public static func fromFloat(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) {
        dst.withMemoryRebound(to: Float16.self, capacity: n) { h in
            for i in 0..<n { h[i] = Float16(src[i]) }
        }
    }
}
