import CHDF5

/// The element types unseg reads and writes.
public enum HDF5ElementType: Equatable, Sendable, CustomStringConvertible {
    case float16, float32, float64
    case uint8, int8, uint16, int16, uint32, int32, uint64, int64
    /// Variable-length UTF-8 (or ASCII) string.
    case variableString
    /// Fixed-length string of this many bytes.
    case fixedString(Int)
    /// Anything else (compound, enum, ...), with HDF5's class name.
    case other(String)

    public var description: String {
        switch self {
        case .float16: return "float16"
        case .float32: return "float32"
        case .float64: return "float64"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .variableString: return "string (variable length)"
        case .fixedString(let n): return "string (fixed, \(n) bytes)"
        case .other(let s): return s
        }
    }

    /// Bytes per element in memory (pointer size for variable strings).
    public var byteSize: Int {
        switch self {
        case .float16, .uint16, .int16: return 2
        case .float32, .uint32, .int32: return 4
        case .float64, .uint64, .int64: return 8
        case .uint8, .int8: return 1
        case .variableString: return MemoryLayout<UnsafeMutablePointer<CChar>>.size
        case .fixedString(let n): return n
        case .other: return 0
        }
    }

    public var isFloat: Bool { self == .float16 || self == .float32 || self == .float64 }
    public var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .uint32, .int32, .uint64, .int64: return true
        default: return false
        }
    }

    /// The HDF5 type to use in files and memory (little-endian IEEE / standard ints).
    /// The caller owns the returned id (a copy) and must close it.
    func makeType() -> hid_t {
        switch self {
        case .float16:
            // IEEE 754 binary16, little-endian: what h5py/numpy write for float16
            // (HDF5 1.10 has no predefined half type).
            let t = H5Tcopy(unseg_H5T_IEEE_F32LE())
            H5Tset_fields(t, 15, 10, 5, 0, 10)
            H5Tset_size(t, 2)
            H5Tset_ebias(t, 15)
            return t
        case .float32: return H5Tcopy(unseg_H5T_NATIVE_FLOAT())
        case .float64: return H5Tcopy(unseg_H5T_NATIVE_DOUBLE())
        case .uint8: return H5Tcopy(unseg_H5T_NATIVE_UINT8())
        case .int8: return H5Tcopy(unseg_H5T_NATIVE_INT8())
        case .uint16: return H5Tcopy(unseg_H5T_NATIVE_UINT16())
        case .int16: return H5Tcopy(unseg_H5T_NATIVE_INT16())
        case .uint32: return H5Tcopy(unseg_H5T_NATIVE_UINT32())
        case .int32: return H5Tcopy(unseg_H5T_NATIVE_INT32())
        case .uint64: return H5Tcopy(unseg_H5T_NATIVE_UINT64())
        case .int64: return H5Tcopy(unseg_H5T_NATIVE_INT64())
        case .variableString:
            let t = H5Tcopy(unseg_H5T_C_S1())
            H5Tset_size(t, unseg_H5T_VARIABLE())
            H5Tset_cset(t, H5T_CSET_UTF8)
            return t
        case .fixedString(let n):
            let t = H5Tcopy(unseg_H5T_C_S1())
            H5Tset_size(t, max(n, 1))
            return t
        case .other: return -1
        }
    }

    /// Classifies a file or memory type id.
    static func from(typeID t: hid_t) -> HDF5ElementType {
        let size = H5Tget_size(t)
        switch H5Tget_class(t) {
        case H5T_FLOAT:
            switch size {
            case 2: return .float16
            case 4: return .float32
            case 8: return .float64
            default: return .other("float\(size * 8)")
            }
        case H5T_INTEGER:
            let signed = H5Tget_sign(t) == H5T_SGN_2
            switch (size, signed) {
            case (1, false): return .uint8
            case (1, true): return .int8
            case (2, false): return .uint16
            case (2, true): return .int16
            case (4, false): return .uint32
            case (4, true): return .int32
            case (8, false): return .uint64
            case (8, true): return .int64
            default: return .other("int\(size * 8)")
            }
        case H5T_STRING:
            return H5Tis_variable_str(t) > 0 ? .variableString : .fixedString(size)
        case H5T_COMPOUND: return .other("compound")
        case H5T_ENUM: return .other("enum")
        case H5T_ARRAY: return .other("array")
        case H5T_VLEN: return .other("vlen sequence")
        case H5T_OPAQUE: return .other("opaque")
        case H5T_REFERENCE: return .other("reference")
        case H5T_BITFIELD: return .other("bitfield")
        default: return .other("unknown type")
        }
    }
}

/// Swift scalar types that map to an HDF5 numeric element type.
public protocol HDF5Scalar {
    static var hdf5Type: HDF5ElementType { get }
    init()
}
extension Float: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .float32 } }
extension Double: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .float64 } }
extension UInt8: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .uint8 } }
extension Int8: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .int8 } }
extension UInt16: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .uint16 } }
extension Int16: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .int16 } }
extension UInt32: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .uint32 } }
extension Int32: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .int32 } }
extension UInt64: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .uint64 } }
extension Int64: HDF5Scalar { public static var hdf5Type: HDF5ElementType { .int64 } }
