import Foundation
import UnsegCore
import UnsegHDF5

/// The checkpoint file format (`unseg.checkpoint`, version 2): a generic container.
///
/// Root attributes say what the file is and where the run stands (`format`, `version`, `recipe`,
/// `stage`, `step`, `store`, ...); `state` holds the serialised state of every stage, one HDF5
/// group per stage (`/stages/<name>/...`), plus the run's history (`/history/...`). Scalars of
/// the state become attributes of the group that holds them; arrays become datasets. Written
/// under a temporary name and renamed; read back exactly (bit-identical arrays).
public struct CheckpointFile: Sendable, Equatable {
    public static let format = "unseg.checkpoint"
    public static let version = 2

    /// Root attributes besides `format` and `version`.
    public var attributes: Attributes
    /// Everything else: arrays and scalars with `/`-separated names.
    public var state: StateRecord

    public init(path: String, attributes: [(String, AttributeValue)] = [], state: StateRecord = StateRecord()) {
        self.attributes = Attributes(path: path, entries: attributes)
        self.state = state
    }

    /// Writes the checkpoint atomically. Arrays and groups are written in sorted name order, so the
    /// same content gives the same bytes.
    public func write(to path: String) throws {
        do {
            let out = try AtomicHDF5File(path: path)
            let f = out.file!
            try f.setAttribute("format", Self.format)
            try f.setAttribute("version", Self.version)
            try f.write(attributes.entries.filter { $0.0 != "format" && $0.0 != "version" })
            for name in state.arrays.keys.sorted() {
                try Self.writeArray(f, name, state.arrays[name]!)
            }
            // Scalars: attributes of their group (created if it holds no array).
            var byGroup: [String: [(String, StateRecord.Scalar)]] = [:]
            for (k, v) in state.scalars {
                let parts = k.split(separator: "/", omittingEmptySubsequences: false)
                let group = parts.dropLast().joined(separator: "/")
                byGroup[group, default: []].append((String(parts.last!), v))
            }
            for g in byGroup.keys.sorted() {
                let loc: HDF5Location = g.isEmpty ? f : try Self.ensureGroup(f, g)
                for (k, v) in byGroup[g]!.sorted(by: { $0.0 < $1.0 }) {
                    let name = g.isEmpty ? "state:" + k : k
                    switch v {
                    case .int(let i): try loc.setAttribute(name, .int(i))
                    case .double(let d): try loc.setAttribute(name, .double(d))
                    case .string(let s): try loc.setAttribute(name, .string(s))
                    }
                }
            }
            try out.commit()
        } catch let e as HDF5Error {
            throw storeError(e, file: path, "cannot write the checkpoint: ")
        }
    }

    static func ensureGroup(_ f: HDF5File, _ path: String) throws -> HDF5Group {
        var loc: HDF5Location = f
        var last: HDF5Group?
        for part in path.split(separator: "/") {
            let name = String(part)
            let g = loc.contains(name) ? try loc.group(name) : try loc.createGroup(name)
            loc = g
            last = g
        }
        return last!
    }

    static func writeArray(_ f: HDF5File, _ name: String, _ a: StateRecord.Array) throws {
        switch a {
        case .float32(let v, let s): try put(f, name, v, s)
        case .float64(let v, let s): try put(f, name, v, s)
        case .int64(let v, let s): try put(f, name, v, s)
        case .uint64(let v, let s): try put(f, name, v, s)
        }
    }

    static func put<T: HDF5Scalar>(_ f: HDF5File, _ name: String, _ v: [T], _ shape: [Int]) throws {
        let d = try f.createDataset(name, type: T.hdf5Type, shape: shape)
        if !v.isEmpty { try d.write(v) }
    }

    /// Reads a checkpoint. Errors name the file and what is wrong: not a checkpoint, another
    /// version, damaged.
    public static func read(path: String) throws -> CheckpointFile {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(file: path, "no such checkpoint; run `unseg fit ... --checkpoint \(path)` first")
        }
        let f: HDF5File
        do { f = try HDF5File.open(path) } catch let e as HDF5Error { throw storeError(e, file: path) }
        do {
            let attrs = try f.readAttributes(path: path)
            let fmt = try attrs.optionalString("format") ?? ""
            guard fmt == format else {
                throw StoreError(file: path, "is \(fmt.isEmpty ? "not an unseg file (no 'format' attribute)" : "a '\(fmt)' file"), not a checkpoint ('\(format)'); pass the file `unseg fit --checkpoint` wrote")
            }
            let v = try attrs.int("version")
            guard v == version else {
                throw StoreError(file: path, "checkpoint version \(v) is not supported (this unseg reads version \(version)); fit again with this version")
            }
            var state = StateRecord()
            for (k, value) in attrs.entries where k.hasPrefix("state:") {
                if let s = scalar(value) { state.scalars[String(k.dropFirst("state:".count))] = s }
            }
            try readGroup(f, prefix: "", into: &state, path: path)
            return CheckpointFile(path: path, attributes: attrs.entries.filter { !$0.0.hasPrefix("state:") }, state: state)
        } catch let e as HDF5Error {
            throw storeError(e, file: path, "damaged or incomplete checkpoint: ")
        }
    }

    static func scalar(_ v: AttributeValue) -> StateRecord.Scalar? {
        switch v {
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        default: return nil
        }
    }

    static func readGroup(_ loc: HDF5Location, prefix: String, into state: inout StateRecord, path: String) throws {
        for name in try loc.memberNames() {
            let full = prefix.isEmpty ? name : prefix + "/" + name
            if loc.isDataset(name) {
                let d = try loc.dataset(name)
                let shape = d.shape
                let n = d.elementCount
                switch d.elementType {
                case .float32: state.arrays[full] = .float32(n == 0 ? [] : try d.read(Float.self), shape: shape)
                case .float64: state.arrays[full] = .float64(n == 0 ? [] : try d.read(Double.self), shape: shape)
                case .int64: state.arrays[full] = .int64(n == 0 ? [] : try d.read(Int64.self), shape: shape)
                case .uint64: state.arrays[full] = .uint64(n == 0 ? [] : try d.read(UInt64.self), shape: shape)
                default:
                    throw StoreError(file: path, dataset: "/" + full, "has element type \(d.elementType); a checkpoint holds float32, float64, int64 and uint64 arrays only")
                }
            } else {
                let g = try loc.group(name)
                for (k, v) in try g.readAttributes(path: path).entries {
                    if let s = scalar(v) { state.scalars[full + "/" + k] = s }
                }
                try readGroup(g, prefix: full, into: &state, path: path)
            }
        }
    }
}
