import UnsegHDF5

/// The value of a root attribute of a file unseg reads or writes (the store layer's own type:
/// no HDF5 type crosses this layer).
public enum AttributeValue: Equatable, Sendable, CustomStringConvertible {
    case string(String)
    case strings([String])
    case int(Int)
    case ints([Int])
    case double(Double)
    case doubles([Double])

    public var description: String { hdf5.description }

    var hdf5: HDF5AttributeValue {
        switch self {
        case .string(let s): return .string(s)
        case .strings(let a): return .strings(a)
        case .int(let i): return .int(i)
        case .ints(let a): return .ints(a)
        case .double(let d): return .double(d)
        case .doubles(let a): return .doubles(a)
        }
    }

    init?(_ v: HDF5AttributeValue) {
        switch v {
        case .string(let s): self = .string(s)
        case .strings(let a): self = .strings(a)
        case .int(let i): self = .int(i)
        case .ints(let a): self = .ints(a)
        case .double(let d): self = .double(d)
        case .doubles(let a): self = .doubles(a)
        case .unsupported: return nil
        }
    }
}

/// The root attributes of a file, in file order, with typed getters whose errors name the file
/// and the attribute.
public struct Attributes: Sendable, Equatable {
    /// The file they were read from (for messages).
    public let path: String
    public private(set) var entries: [(String, AttributeValue)]

    public static func == (a: Attributes, b: Attributes) -> Bool {
        a.path == b.path && a.entries.map(\.0) == b.entries.map(\.0) && a.entries.map(\.1) == b.entries.map(\.1)
    }

    public init(path: String, entries: [(String, AttributeValue)] = []) {
        self.path = path
        self.entries = entries
    }

    public subscript(_ name: String) -> AttributeValue? {
        entries.first { $0.0 == name }?.1
    }

    public func has(_ name: String) -> Bool { self[name] != nil }

    public mutating func set(_ name: String, _ v: AttributeValue) {
        if let i = entries.firstIndex(where: { $0.0 == name }) { entries[i].1 = v } else { entries.append((name, v)) }
    }

    private func missing(_ name: String) -> StoreError {
        StoreError(file: path, "missing root attribute '\(name)'; this file was not written by this version of unseg, or was edited")
    }
    private func wrong(_ name: String, _ v: AttributeValue, _ want: String) -> StoreError {
        StoreError(file: path, "root attribute '\(name)' is \(v), expected \(want)")
    }

    public func string(_ name: String) throws -> String {
        guard let v = self[name] else { throw missing(name) }
        guard case .string(let s) = v else { throw wrong(name, v, "a string") }
        return s
    }
    public func int(_ name: String) throws -> Int {
        guard let v = self[name] else { throw missing(name) }
        switch v {
        case .int(let i): return i
        case .ints(let a) where a.count == 1: return a[0]
        default: throw wrong(name, v, "an integer")
        }
    }
    public func double(_ name: String) throws -> Double {
        guard let v = self[name] else { throw missing(name) }
        switch v {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: throw wrong(name, v, "a number")
        }
    }
    public func ints(_ name: String) throws -> [Int] {
        guard let v = self[name] else { throw missing(name) }
        switch v {
        case .ints(let a): return a
        case .int(let i): return [i]
        default: throw wrong(name, v, "integers")
        }
    }
    public func strings(_ name: String) throws -> [String] {
        guard let v = self[name] else { throw missing(name) }
        switch v {
        case .strings(let a): return a
        case .string(let s): return [s]
        default: throw wrong(name, v, "strings")
        }
    }
    public func optionalString(_ name: String) throws -> String? { has(name) ? try string(name) : nil }
    public func optionalInt(_ name: String) throws -> Int? { has(name) ? try int(name) : nil }
}

extension HDF5Object {
    /// All attributes of this object (unsupported types left out).
    func readAttributes(path: String) throws -> Attributes {
        var a = Attributes(path: path)
        for name in try attributeNames() {
            if let v = AttributeValue(try attribute(name)) { a.set(name, v) }
        }
        return a
    }

    func write(_ entries: [(String, AttributeValue)]) throws {
        for (k, v) in entries { try setAttribute(k, v.hdf5) }
    }
}

/// HDF5 errors rephrased as store errors (file, object, HDF5's innermost message).
func storeError(_ e: HDF5Error, file: String, _ prefix: String = "") -> StoreError {
    StoreError(file: file, dataset: e.object, prefix + e.message + (e.stack.last.map { " (HDF5: \($0))" } ?? ""))
}

/// Element type of the feature datasets.
public enum FeatureType: String, Sendable, Equatable, CaseIterable {
    case float16, float32

    var hdf5: HDF5ElementType { self == .float16 ? .float16 : .float32 }
    /// Bytes per value.
    public var size: Int { self == .float16 ? 2 : 4 }
}

/// The HDF5 library this build links (for benchmark and bug-report headers).
public var hdf5LibraryVersion: String { HDF5.libraryVersion }
