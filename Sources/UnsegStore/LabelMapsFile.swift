import Foundation
import UnsegHDF5

/// File kinds of the uint8 label-map outputs unseg writes (the `format` root attribute).
public enum LabelMapsFormat: String, Sendable, CaseIterable {
    /// `/predictions` uint8 `[N, H, W]`: cluster or class ids per pixel, 255 = no prediction.
    case predictions = "unseg.predictions"
    /// `/masks` uint8 `[N, h, w]` (0 = background, 1..K) and optionally `/refined` `[N, H, W]`.
    case proposals = "unseg.proposals"
}

/// Writes uint8 label-map datasets (one image per chunk, deflated) under a temporary
/// name; `commit()` renames the file into place. Attributes describe the content.
public final class LabelMapsWriter {
    public struct MapSpec: Sendable {
        public var name: String, count: Int, height: Int, width: Int
        public init(name: String, count: Int, height: Int, width: Int) {
            self.name = name; self.count = count; self.height = height; self.width = width
        }
    }

    public let path: String
    private var output: AtomicHDF5File?
    private var datasets: [String: (HDF5Dataset, MapSpec)] = [:]

    /// - attributes: root attributes besides `format` and `version` (method, parameters, source store, ...).
    public init(path: String, format: LabelMapsFormat, maps: [MapSpec], attributes: [(String, AttributeValue)]) throws {
        self.path = path
        do {
            let out = try atomicHDF5Output(path)
            let f = out.file!
            try f.setAttribute("format", format.rawValue)
            try f.setAttribute("version", 1)
            try f.write(attributes)
            for m in maps {
                let ds = try f.createDataset(m.name, type: .uint8, shape: [m.count, m.height, m.width],
                                             chunk: [1, max(m.height, 1), max(m.width, 1)], deflate: 4, shuffle: false)
                datasets[m.name] = (ds, m)
            }
            output = out
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: e.object, e.message)
        }
    }

    /// Writes image `index` of map `name` (`height * width` values).
    public func write(_ name: String, index: Int, _ values: [UInt8]) throws {
        guard let (ds, spec) = datasets[name] else { throw StoreError(file: path, dataset: "/" + name, "no such output dataset") }
        guard values.count == spec.height * spec.width else {
            throw StoreError(file: path, dataset: "/" + name,
                             "shape mismatch when writing: memory = [\(values.count)], destination = [\(spec.height), \(spec.width)]")
        }
        do { try ds.write(values, start: [index, 0, 0], count: [1, spec.height, spec.width]) } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: "/" + name, e.message)
        }
    }

    /// Sets a root attribute after creation (e.g. a summary computed at the end).
    public func setAttribute(_ name: String, _ value: AttributeValue) throws {
        do { try output?.file?.setAttribute(name, value.hdf5) } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
    }

    public func commit() throws {
        datasets = [:]
        do { try output?.commit() } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        if let o = output { Temporaries.unregister(o.temporaryPath) }
        output = nil
    }

    public func discard() {
        datasets = [:]
        output?.discard()
        output = nil
    }
}

/// Reads a label-maps output (predictions or proposals), checked against the store it belongs to.
///
/// `@unchecked Sendable`: owns an HDF5 file handle; every use goes through the HDF5 lock.
public final class LabelMapsFile: Sendable {
    public let path: String
    public let format: LabelMapsFormat
    /// Root attributes (method, parameters, source store, statistics).
    public let attributes: Attributes
    let file: HDF5File

    public init(path: String, expect: LabelMapsFormat) throws {
        self.path = path
        do { file = try HDF5File.open(path) } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        let fmt = file.hasAttribute("format") ? (try? file.stringAttribute("format")) ?? "" : ""
        guard let f = LabelMapsFormat(rawValue: fmt), f == expect else {
            let what = fmt.isEmpty ? "has no 'format' attribute" : "is a '\(fmt)' file"
            throw StoreError(file: path, "\(what), not '\(expect.rawValue)'; pass a file written by `unseg \(expect == .predictions ? "predict" : "propose")`")
        }
        format = f
        do { attributes = try file.readAttributes(path: path) } catch let e as HDF5Error { throw storeError(e, file: path) }
    }

    /// Opens map `name`, checking it is uint8 `[N, H, W]` with `N`, `H`, `W` as given.
    public func map(_ name: String, count: Int, height: Int, width: Int, storePath: String) throws -> LabelMapDataset {
        guard file.contains(name) else {
            throw StoreError(file: path, dataset: "/" + name, "missing")
        }
        let ds: HDF5Dataset
        do { ds = try file.dataset(name) } catch let e as HDF5Error { throw StoreError(file: path, dataset: "/" + name, e.message) }
        guard ds.elementType == .uint8, ds.shape.count == 3 else {
            throw StoreError(file: path, dataset: "/" + name, "is \(ds.elementType) \(ds.shape); expected uint8 [N, H, W]")
        }
        if ds.shape[0] != count {
            throw StoreError(file: path, dataset: "/" + name,
                             "has \(ds.shape[0]) images but the store \(storePath) has \(count); use the file made from this store")
        }
        if ds.shape[1] != height || ds.shape[2] != width {
            throw StoreError(file: path, dataset: "/" + name,
                             "maps are \(ds.shape[1])x\(ds.shape[2]) but the store \(storePath) needs \(height)x\(width); use the file made from this store")
        }
        return LabelMapDataset(path: path, name: name, dataset: ds)
    }

    public func contains(_ name: String) -> Bool { file.contains(name) }
}

/// One `[N, H, W]` uint8 map dataset, read one image at a time.
///
/// `@unchecked Sendable`: holds an HDF5 dataset handle; every read goes through the HDF5 lock.
public struct LabelMapDataset: Sendable {
    public let path: String
    public let name: String
    let dataset: HDF5Dataset

    public var count: Int { dataset.shape[0] }
    public var height: Int { dataset.shape[1] }
    public var width: Int { dataset.shape[2] }

    public func read(_ i: Int) throws -> [UInt8] {
        do { return try dataset.read(UInt8.self, start: [i, 0, 0], count: [1, height, width]) } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: "/" + name, "cannot read image \(i): \(e.message)")
        }
    }
}
