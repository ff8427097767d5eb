// Shared by prototype fitting (softmax over classes) and the dense CRF (softmax over labels).
/// Vectorised elementary functions for the hot loops of prototype fitting.
///
/// `exp` follows Cephes' `expf`: Cody-Waite range reduction `x = n ln2 + r`
/// (`ln2` split in a 9-bit high part, so `n * ln2_hi` is exact for |n| < 2^15),
/// a degree-6 polynomial for `e^r` on |r| <= ln2/2, and `2^n` built from the
/// exponent bits. Maximum relative error about 2e-7 over [-87, 88] (tested
/// against Double `exp`). Inputs are clamped to [-87.3, 88.7]: below, the result
/// is about 1.2e-38 instead of a denormal/zero (harmless in a softmax, whose
/// denominator is >= 1); NaN inputs give unspecified finite values.
public enum FastMath {
    /// Element-wise `e^x` for any lane count (SIMD4 on baseline x86-64 SSE, SIMD8 for AVX). See the
    /// type's note for accuracy. Generic and `@inlinable`, so each call site is specialised.
    @inlinable @inline(__always)
    public static func exp<V: SIMD>(_ x: V) -> V where V.Scalar == Float, V.MaskStorage.Scalar == Int32 {
        let lo = V(repeating: -87.33654), hi = V(repeating: 88.72283)
        var v = x.replacing(with: lo, where: x .< lo)
        v = v.replacing(with: hi, where: v .> hi)
        // n = round(x * log2(e)) via the 1.5 * 2^23 trick (round to nearest even, exact for |t| < 2^22).
        let magic = V(repeating: 12_582_912)
        let t = v * 1.442_695_04 + magic
        let n = t - magic
        // r = x - n ln2 in two steps (Cody-Waite); n * 0.693359375 is exact.
        var r = v - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        let z = r * r
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        let er = p * z + r + 1
        // 2^n from the integer in t's low mantissa bits: bits(t) - bits(magic) == n.
        // (MaskStorage of a Float vector is the Int32 vector of the same lane count.)
        let ti = unsafeBitCast(t, to: V.MaskStorage.self) &- V.MaskStorage(repeating: 0x4B40_0000)
        let scale = unsafeBitCast((ti &+ V.MaskStorage(repeating: 127)) &<< V.MaskStorage(repeating: 23), to: V.self)
        return er * scale
    }

    /// Scalar convenience over `exp(SIMD8)` (tests, non-hot paths).
    public static func exp(_ x: Float) -> Float { exp(SIMD8<Float>(repeating: x))[0] }
}
