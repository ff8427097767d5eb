#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The C math library's scalar functions, in one place (exactly rounded as libm gives them;
/// the SIMD approximations are in `FastMath`).
public enum LibM {
    @inlinable public static func exp(_ x: Double) -> Double { _exp(x) }
    @inlinable public static func expf(_ x: Float) -> Float { _expf(x) }
    @inlinable public static func log(_ x: Double) -> Double { _log(x) }
    @inlinable public static func logf(_ x: Float) -> Float { _logf(x) }
    @inlinable public static func pow(_ x: Double, _ y: Double) -> Double { _pow(x, y) }
    @inlinable public static func cos(_ x: Double) -> Double { _cos(x) }
}

#if canImport(Glibc)
@usableFromInline func _exp(_ x: Double) -> Double { Glibc.exp(x) }
@usableFromInline func _expf(_ x: Float) -> Float { Glibc.expf(x) }
@usableFromInline func _log(_ x: Double) -> Double { Glibc.log(x) }
@usableFromInline func _logf(_ x: Float) -> Float { Glibc.logf(x) }
@usableFromInline func _pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
@usableFromInline func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#elseif canImport(Darwin)
@usableFromInline func _exp(_ x: Double) -> Double { Darwin.exp(x) }
@usableFromInline func _expf(_ x: Float) -> Float { Darwin.expf(x) }
@usableFromInline func _log(_ x: Double) -> Double { Darwin.log(x) }
@usableFromInline func _logf(_ x: Float) -> Float { Darwin.logf(x) }
@usableFromInline func _pow(_ x: Double, _ y: Double) -> Double { Darwin.pow(x, y) }
@usableFromInline func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
