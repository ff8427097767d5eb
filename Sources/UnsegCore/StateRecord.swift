/// A serialisable snapshot of an algorithm's state: named arrays and scalars, nothing else.
///
/// The seam between algorithms and files: a fit stage saves itself as a `StateRecord`, the store
/// layer writes records into a checkpoint (one HDF5 group per stage) and reads them back exactly;
/// neither side knows the other's types. Names are plain identifiers (`running/directions`,
/// `adam/m`); a `/` makes a sub-group in the file.
public struct StateRecord: Sendable, Equatable {
    /// A named array with its shape (row-major; `shape.reduce(1, *) == values.count`).
    public enum Array: Sendable, Equatable {
        case float32([Float], shape: [Int])
        case float64([Double], shape: [Int])
        case int64([Int64], shape: [Int])
        case uint64([UInt64], shape: [Int])

        public var shape: [Int] {
            switch self {
            case .float32(_, let s), .float64(_, let s), .int64(_, let s), .uint64(_, let s): return s
            }
        }
    }

    /// A named scalar.
    public enum Scalar: Sendable, Equatable {
        case int(Int)
        case double(Double)
        case string(String)
    }

    public var arrays: [String: Array] = [:]
    public var scalars: [String: Scalar] = [:]
    /// Where the record came from, for messages (e.g. `/stages/primaps-em` in a checkpoint); not
    /// part of the content (`==` ignores it).
    public var origin: String = ""

    public static func == (a: StateRecord, b: StateRecord) -> Bool { a.arrays == b.arrays && a.scalars == b.scalars }

    /// `name` as the file shows it (`/stages/primaps-em/momentum/directions`).
    public func place(_ name: String) -> String { origin.isEmpty ? name : origin + "/" + name }

    public init(arrays: [String: Array] = [:], scalars: [String: Scalar] = [:]) {
        self.arrays = arrays
        self.scalars = scalars
    }

    // MARK: typed setters and getters (errors name the entry and what was found)

    public mutating func set(_ name: String, _ v: [Float], shape: [Int]? = nil) { arrays[name] = .float32(v, shape: shape ?? [v.count]) }
    public mutating func set(_ name: String, _ v: [Double]) { arrays[name] = .float64(v, shape: [v.count]) }
    public mutating func set(_ name: String, _ v: [Int64]) { arrays[name] = .int64(v, shape: [v.count]) }
    public mutating func set(_ name: String, _ v: [UInt64]) { arrays[name] = .uint64(v, shape: [v.count]) }
    public mutating func set(_ name: String, _ v: Int) { scalars[name] = .int(v) }
    public mutating func set(_ name: String, _ v: Double) { scalars[name] = .double(v) }
    public mutating func set(_ name: String, _ v: String) { scalars[name] = .string(v) }

    public func floats(_ name: String) throws -> (values: [Float], shape: [Int]) {
        guard case .float32(let v, let s)? = arrays[name] else { throw missing(name, "float32 array") }
        return (v, s)
    }
    public func doubles(_ name: String) throws -> [Double] {
        guard case .float64(let v, _)? = arrays[name] else { throw missing(name, "float64 array") }
        return v
    }
    public func int64s(_ name: String) throws -> [Int64] {
        guard case .int64(let v, _)? = arrays[name] else { throw missing(name, "int64 array") }
        return v
    }
    public func words(_ name: String) throws -> [UInt64] {
        guard case .uint64(let v, _)? = arrays[name] else { throw missing(name, "uint64 array") }
        return v
    }
    public func int(_ name: String) throws -> Int {
        guard case .int(let v)? = scalars[name] else { throw missing(name, "integer") }
        return v
    }
    public func double(_ name: String) throws -> Double {
        switch scalars[name] {
        case .double(let v)?: return v
        case .int(let v)?: return Double(v)
        default: throw missing(name, "number")
        }
    }
    public func string(_ name: String) throws -> String {
        guard case .string(let v)? = scalars[name] else { throw missing(name, "string") }
        return v
    }

    private func missing(_ name: String, _ what: String) -> KernelError {
        let found = arrays[name].map { "\($0)" } ?? scalars[name].map { "\($0)" }
        return KernelError("saved state: '\(place(name))' should be a \(what)" + (found.map { ", found \($0.prefix(60))" } ?? " but is missing"))
    }

    /// The record under `prefix/` of this one (names without the prefix).
    public func nested(_ prefix: String) -> StateRecord {
        let p = prefix + "/"
        var r = StateRecord()
        r.origin = (origin.isEmpty ? "" : origin) + "/" + prefix
        for (k, v) in arrays where k.hasPrefix(p) { r.arrays[String(k.dropFirst(p.count))] = v }
        for (k, v) in scalars where k.hasPrefix(p) { r.scalars[String(k.dropFirst(p.count))] = v }
        return r
    }

    /// Inserts `other` under `prefix/`.
    public mutating func insert(_ other: StateRecord, at prefix: String) {
        for (k, v) in other.arrays { arrays[prefix + "/" + k] = v }
        for (k, v) in other.scalars { scalars[prefix + "/" + k] = v }
    }
}
