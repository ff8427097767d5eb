import CUnsegKernels

/// Conversion between IEEE 754 half precision (float16, how feature stores keep
/// features on disk) and `Float`. Widening is exact; narrowing rounds to nearest even.
///
/// Implemented in C (`Sources/CUnsegKernels/half.c`): F16C instructions with runtime
/// CPU dispatch, and an exact scalar fallback. `Float(Float16)` in Swift compiles to a
/// scalar library call on x86-64 and was the bottleneck of streaming float16 stores.
public enum Half {
    /// Whether the F16C instruction path is in use on this CPU.
    public static var usesF16C: Bool { unseg_has_f16c() != 0 }

    /// Converts `n` float16 values (raw bits) at `src` to Float at `dst`.
    @inlinable
    public static func toFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        unseg_half_to_float(src, dst, n)
    }

    /// Converts `n` Floats at `src` to float16 bits at `dst` (round to nearest even; overflow to inf).
    @inlinable
    public static func fromFloat(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, _ n: Int) {
        unseg_float_to_half(src, dst, n)
    }
}
