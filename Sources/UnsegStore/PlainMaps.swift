import Foundation
import UnsegHDF5

/// A `[N, H, W]` dataset of per-image maps in an HDF5 file that no unseg command wrote (h5py
/// output of another tool: STEGO / HP predictions, a downstream network's, saliency maps).
/// Integer datasets (any width, signed or not) hold ids; float datasets (16, 32, 64 bit) hold
/// soft values. No `format` attribute and no provenance are needed: the caller checks the image
/// count and the map size against the store instead.
///
/// `@unchecked Sendable`: owns an HDF5 dataset handle; every read goes through the HDF5 lock.
public final class PlainMapsDataset: Sendable {
    /// One image's values: integers (ids, grey levels) widened to Int32 (HDF5 converts;
    /// 64-bit values beyond Int32 saturate, which every caller rejects as out of range), or floats.
    public enum Values: Sendable {
        case integers([Int32])
        case floats([Float])
    }

    public let path: String
    /// The dataset's path inside the file ("/pred").
    public let dataset: String
    /// The stored element type ("uint8", "int64", "float32", ...).
    public let elementType: String
    public let isFloat: Bool
    public let count: Int
    public let height: Int
    public let width: Int
    let file: HDF5File
    let ds: HDF5Dataset

    /// What an HDF5 file holds, for messages: its `format` attribute (nil when absent) and
    /// every dataset with its shape and type ("/pred [500, 320, 320] uint8").
    public static func describe(path: String) throws -> (format: String?, datasets: [String]) {
        let f: HDF5File
        do { f = try HDF5File.open(path) } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        let fmt = f.hasAttribute("format") ? (try? f.stringAttribute("format")) : nil
        var out: [String] = []
        func walk(_ loc: HDF5Location, _ prefix: String) throws {
            for name in try loc.memberNames() {
                let p = prefix + "/" + name
                if loc.isDataset(name) {
                    let d = try loc.dataset(name)
                    out.append("\(p) \(d.shape) \(d.elementType)")
                } else if let g = try? loc.group(name) {
                    try walk(g, p)
                }
                if out.count >= 20 { return }
            }
        }
        do { try walk(f, "") } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        return (fmt, out)
    }

    /// Opens dataset `name` of `path` (with or without a leading "/"; groups allowed, "/a/b").
    /// Errors: file not HDF5, no such dataset (listing those there are), rank other than 3,
    /// a type that is neither integer nor float.
    public init(path: String, dataset name: String) throws {
        self.path = path
        let key = name.hasPrefix("/") ? String(name.dropFirst()) : name
        dataset = "/" + key
        do { file = try HDF5File.open(path) } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        guard !key.isEmpty, file.contains(key), file.isDataset(key) else {
            let there = (try? Self.describe(path: path).datasets) ?? []
            throw StoreError(file: path, dataset: "/" + key,
                             "no such dataset; the file holds " + (there.isEmpty ? "no datasets" : there.joined(separator: ", "))
                             + "; pass the one with the maps [N, H, W] as --dataset")
        }
        do { ds = try file.dataset(key) } catch let e as HDF5Error { throw StoreError(file: path, dataset: dataset, e.message) }
        let t = ds.elementType
        elementType = t.description
        switch t {
        case .uint8, .int8, .uint16, .int16, .uint32, .int32, .uint64, .int64: isFloat = false
        case .float16, .float32, .float64: isFloat = true
        default:
            throw StoreError(file: path, dataset: dataset, "is \(t); per-image maps must be integers (ids, grey levels) or floats (soft maps in [0, 1])")
        }
        let s = ds.shape
        guard s.count == 3 else {
            throw StoreError(file: path, dataset: dataset, "has shape \(s); expected [N, H, W] (one map per image; squeeze a channel axis first)")
        }
        (count, height, width) = (s[0], s[1], s[2])
    }

    /// Image `i`'s values `[height * width]`, row-major.
    public func read(_ i: Int) throws -> Values {
        precondition(i >= 0 && i < count, "PlainMapsDataset.read: image \(i) of \(count)")
        do {
            if isFloat { return .floats(try ds.read(Float.self, start: [i, 0, 0], count: [1, height, width])) }
            return .integers(try ds.read(Int32.self, start: [i, 0, 0], count: [1, height, width]))
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: dataset, "cannot read image \(i): \(e.message)")
        }
    }
}
