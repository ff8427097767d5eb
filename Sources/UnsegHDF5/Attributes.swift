import CHDF5
import Foundation

/// An attribute's value as read back, for printing and schema checks.
public enum HDF5AttributeValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case strings([String])
    case int(Int)
    case ints([Int])
    case double(Double)
    case doubles([Double])
    case unsupported(String)

    public var description: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .strings(let a): return "[" + a.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        case .int(let i): return "\(i)"
        case .ints(let a): return "\(a)"
        case .double(let d): return "\(d)"
        case .doubles(let a): return "\(a)"
        case .unsupported(let s): return "<\(s)>"
        }
    }
}

extension HDF5Object {
    /// Names of the attributes on this object.
    public func attributeNames() throws -> [String] {
        try HDF5.locked {
            var info = H5O_info_t()
            try HDF5.check(H5Oget_info2(handle.id, &info, UInt32(H5O_INFO_NUM_ATTRS)), file: filePath, object: objectPath, "cannot list attributes")
            var names: [String] = []
            for i in 0..<info.num_attrs {
                let n = H5Aget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, unseg_H5P_DEFAULT())
                if n < 0 { throw HDF5Error(file: filePath, object: objectPath, message: "cannot read attribute names", stack: HDF5.takeErrorStack()) }
                var buf = [CChar](repeating: 0, count: n + 1)
                H5Aget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, n + 1, unseg_H5P_DEFAULT())
                names.append(cString(buf))
            }
            return names
        }
    }

    /// Whether attribute `name` exists.
    public func hasAttribute(_ name: String) -> Bool {
        HDF5.locked {
            let r = H5Aexists(handle.id, name)
            if r < 0 { _ = HDF5.takeErrorStack() }
            return r > 0
        }
    }

    private var attrPlace: String { objectPath == "/" ? "/" : objectPath }

    /// Reads attribute `name` whatever its type (scalars, 1-D arrays of numbers or strings).
    public func attribute(_ name: String) throws -> HDF5AttributeValue {
        try HDF5.locked {
            guard hasAttribute(name) else {
                throw HDF5Error(file: filePath, object: attrPlace, message: "missing attribute '\(name)'")
            }
            let aid = try HDF5.check(H5Aopen(handle.id, name, unseg_H5P_DEFAULT()), file: filePath, object: attrPlace, "cannot open attribute '\(name)'")
            defer { H5Aclose(aid) }
            let ftype = H5Aget_type(aid)
            defer { H5Tclose(ftype) }
            let space = H5Aget_space(aid)
            defer { H5Sclose(space) }
            let count = Int(H5Sget_simple_extent_npoints(space))
            let isScalar = H5Sget_simple_extent_type(space) == H5S_SCALAR
            let where_ = "\(attrPlace) attribute '\(name)'"
            switch HDF5ElementType.from(typeID: ftype) {
            case .variableString, .fixedString:
                let s = try readStringData(typeID: ftype, spaceID: space, count: count, file: filePath, object: where_) { mtype, buf in
                    H5Aread(aid, mtype, buf)
                }
                return isScalar ? .string(s.first ?? "") : .strings(s)
            case let t where t.isInteger:
                var v = [Int64](repeating: 0, count: max(count, 1))
                let mtype = HDF5ElementType.int64.makeType()
                defer { H5Tclose(mtype) }
                try HDF5.check(H5Aread(aid, mtype, &v), file: filePath, object: where_, "cannot read")
                return isScalar ? .int(Int(v[0])) : .ints(v.prefix(count).map { Int($0) })
            case let t where t.isFloat:
                var v = [Double](repeating: 0, count: max(count, 1))
                let mtype = HDF5ElementType.float64.makeType()
                defer { H5Tclose(mtype) }
                try HDF5.check(H5Aread(aid, mtype, &v), file: filePath, object: where_, "cannot read")
                return isScalar ? .double(v[0]) : .doubles(Array(v.prefix(count)))
            case let t:
                return .unsupported(t.description)
            }
        }
    }

    /// A string attribute (scalar, or a one-element array).
    public func stringAttribute(_ name: String) throws -> String {
        switch try attribute(name) {
        case .string(let s): return s
        case .strings(let a) where a.count == 1: return a[0]
        case let other:
            throw HDF5Error(file: filePath, object: attrPlace, message: "attribute '\(name)' should be a string, found \(other)")
        }
    }

    /// An integer attribute (scalar, a one-element array, or an integral float).
    public func intAttribute(_ name: String) throws -> Int {
        switch try attribute(name) {
        case .int(let i): return i
        case .ints(let a) where a.count == 1: return a[0]
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return Int(d)
        case let other:
            throw HDF5Error(file: filePath, object: attrPlace, message: "attribute '\(name)' should be an integer, found \(other)")
        }
    }

    /// A floating-point attribute (integers accepted).
    public func doubleAttribute(_ name: String) throws -> Double {
        switch try attribute(name) {
        case .double(let d): return d
        case .doubles(let a) where a.count == 1: return a[0]
        case .int(let i): return Double(i)
        case let other:
            throw HDF5Error(file: filePath, object: attrPlace, message: "attribute '\(name)' should be a number, found \(other)")
        }
    }

    /// A string-array attribute (a scalar string gives one element).
    public func stringArrayAttribute(_ name: String) throws -> [String] {
        switch try attribute(name) {
        case .strings(let a): return a
        case .string(let s): return [s]
        case let other:
            throw HDF5Error(file: filePath, object: attrPlace, message: "attribute '\(name)' should be a list of strings, found \(other)")
        }
    }

    /// A numeric-array attribute as Doubles.
    public func doubleArrayAttribute(_ name: String) throws -> [Double] {
        switch try attribute(name) {
        case .doubles(let a): return a
        case .ints(let a): return a.map(Double.init)
        case .double(let d): return [d]
        case .int(let i): return [Double(i)]
        case let other:
            throw HDF5Error(file: filePath, object: attrPlace, message: "attribute '\(name)' should be a list of numbers, found \(other)")
        }
    }

    /// An integer-array attribute.
    public func intArrayAttribute(_ name: String) throws -> [Int] {
        switch try attribute(name) {
        case .ints(let a): return a
        case .int(let i): return [i]
        case let other:
            throw HDF5Error(file: filePath, object: attrPlace, message: "attribute '\(name)' should be a list of integers, found \(other)")
        }
    }

    /// Writes (or replaces) attribute `name`.
    public func setAttribute(_ name: String, _ value: HDF5AttributeValue) throws {
        try HDF5.locked {
            if hasAttribute(name) {
                try HDF5.check(H5Adelete(handle.id, name), file: filePath, object: attrPlace, "cannot replace attribute '\(name)'")
            }
            let where_ = "\(attrPlace) attribute '\(name)'"
            func create(_ type: HDF5ElementType, count: Int?, _ write: (hid_t, hid_t) throws -> Void) throws {
                let space: hid_t
                if let n = count {
                    var d = [hsize_t(n)]
                    space = H5Screate_simple(1, &d, nil)
                } else {
                    space = H5Screate(H5S_SCALAR)
                }
                defer { H5Sclose(space) }
                let t = type.makeType()
                defer { H5Tclose(t) }
                let aid = try HDF5.check(H5Acreate2(handle.id, name, t, space, unseg_H5P_DEFAULT(), unseg_H5P_DEFAULT()),
                                         file: filePath, object: where_, "cannot create")
                defer { H5Aclose(aid) }
                try write(aid, t)
            }
            switch value {
            case .string(let s):
                try create(.variableString, count: nil) { aid, t in
                    try withCStringArray([s]) { p in try HDF5.check(H5Awrite(aid, t, p), file: filePath, object: where_, "cannot write") }
                }
            case .strings(let a):
                try create(.variableString, count: a.count) { aid, t in
                    try withCStringArray(a) { p in try HDF5.check(H5Awrite(aid, t, p), file: filePath, object: where_, "cannot write") }
                }
            case .int(let i):
                var v = Int64(i)
                try create(.int64, count: nil) { aid, t in try HDF5.check(H5Awrite(aid, t, &v), file: filePath, object: where_, "cannot write") }
            case .ints(let a):
                let v = a.map { Int64($0) }
                try create(.int64, count: a.count) { aid, t in
                    try v.withUnsafeBytes { p in try HDF5.check(H5Awrite(aid, t, p.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!), file: filePath, object: where_, "cannot write") }
                }
            case .double(let d):
                var v = d
                try create(.float64, count: nil) { aid, t in try HDF5.check(H5Awrite(aid, t, &v), file: filePath, object: where_, "cannot write") }
            case .doubles(let a):
                try create(.float64, count: a.count) { aid, t in
                    try a.withUnsafeBytes { p in try HDF5.check(H5Awrite(aid, t, p.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!), file: filePath, object: where_, "cannot write") }
                }
            case .unsupported(let s):
                throw HDF5Error(file: filePath, object: where_, message: "cannot write an attribute of type \(s)")
            }
        }
    }

    public func setAttribute(_ name: String, _ s: String) throws { try setAttribute(name, .string(s)) }
    public func setAttribute(_ name: String, _ i: Int) throws { try setAttribute(name, .int(i)) }
    public func setAttribute(_ name: String, _ d: Double) throws { try setAttribute(name, .double(d)) }
    public func setAttribute(_ name: String, _ a: [String]) throws { try setAttribute(name, .strings(a)) }
}
