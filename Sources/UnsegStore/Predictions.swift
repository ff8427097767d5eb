
/// What the ids in a predictions file are.
public enum PredictionIDs: String, Sendable {
    /// Cluster ids 0..<count, to be matched to classes by evaluation.
    case clusters
    /// Class ids of the store's protocol (already matched).
    case classes
}

extension LabelMapsWriter {
    /// A predictions file for `store`: `/predictions` uint8 `[N, H, W]` (255 = no prediction),
    /// with `ids` (clusters or classes), `count` (how many ids) and where they came from.
    public static func predictions(path: String, store: FeatureStore, ids: PredictionIDs, count: Int,
                                   attributes: [(String, AttributeValue)] = []) throws -> LabelMapsWriter {
        let l = store.layout
        return try LabelMapsWriter(path: path, format: .predictions,
                                   maps: [MapSpec(name: "predictions", count: l.imageCount, height: l.imageHeight, width: l.imageWidth)],
                                   attributes: [("ids", .string(ids.rawValue)), ("count", .int(count)),
                                                ("store", .string(store.path)), ("store_fingerprint", .string(try store.fingerprint))] + attributes)
    }
}

/// A predictions file (`unseg predict`), checked against the store it is evaluated or exported with.
///
/// `@unchecked Sendable`: reads go through the HDF5 lock.
public final class PredictionsFile: Sendable {
    public let path: String
    /// What the ids are (attribute `ids`).
    public let ids: PredictionIDs
    /// How many ids (attribute `count`): values are `0..<count` or 255 (no prediction).
    public let count: Int
    /// Every root attribute (method, checkpoint, prototypes, refine, ...).
    public let attributes: Attributes
    let map: LabelMapDataset

    /// Opens `path` and checks it against `store` (image count and size).
    public init(path: String, store: FeatureStore) throws {
        self.path = path
        let file = try LabelMapsFile(path: path, expect: .predictions)
        let a = file.attributes
        attributes = a
        guard a.has("count") else {
            throw StoreError(file: path, "missing root attribute 'count' (number of cluster or class ids); rewrite it with `unseg predict`")
        }
        let k = try a.int("count")
        guard (1...254).contains(k) else {
            throw StoreError(file: path, "attribute 'count' is \(k); it must be in 1...254 (255 means no prediction)")
        }
        count = k
        let idName = try a.optionalString("ids") ?? PredictionIDs.clusters.rawValue
        guard let i = PredictionIDs(rawValue: idName) else {
            throw StoreError(file: path, "attribute 'ids' is '\(idName)'; expected 'clusters' or 'classes'")
        }
        ids = i
        let l = store.layout
        map = try file.map("predictions", count: l.imageCount, height: l.imageHeight, width: l.imageWidth, storePath: store.path)
        try checkProvenance(a, file: path, store: store, remake: "`unseg predict --store \(store.path)`")
    }

    /// Image `i`'s ids `[H*W]`. Errors (naming the image) on an id outside `0..<count` other than 255.
    public func read(_ i: Int) throws -> [UInt8] {
        let p = try map.read(i)
        let bad: Int? = p.withUnsafeBufferPointer { b in
            var worst = -1
            for v in b where v != 255 && Int(v) >= count { worst = max(worst, Int(v)) }
            return worst >= 0 ? worst : nil
        }
        if let v = bad {
            throw StoreError(file: path, dataset: "/predictions",
                             "image \(i) holds id \(v) but the file declares \(count) ids (0..<\(count), 255 = none); the file is damaged or was edited; predict again")
        }
        return p
    }
}

/// Where a predictions file came from (root attributes `method`, `checkpoint`, `prototypes`, `refine`).
public struct PredictionsProvenance: Sendable, Equatable {
    public var method: String
    public var checkpoint: String
    public var prototypes: String
    public var refine: String
    public init(method: String, checkpoint: String, prototypes: String, refine: String) {
        self.method = method; self.checkpoint = checkpoint; self.prototypes = prototypes; self.refine = refine
    }
}

/// Writes a predictions file for a store (`unseg predict`): `/predictions` uint8 `[N, H, W]`.
/// Temporary name until `commit`.
public final class PredictionsWriter {
    let output: LabelMapsWriter
    public let count: Int

    public init(path: String, store: FeatureStore, ids: PredictionIDs, count: Int, provenance: PredictionsProvenance) throws {
        self.count = count
        output = try LabelMapsWriter.predictions(
            path: path, store: store, ids: ids, count: count,
            attributes: [("method", .string(provenance.method)), ("checkpoint", .string(provenance.checkpoint)),
                         ("prototypes", .string(provenance.prototypes)), ("refine", .string(provenance.refine))])
    }

    /// Image `index`'s ids `[H*W]`.
    public func write(_ index: Int, _ ids: [UInt8]) throws { try output.write("predictions", index: index, ids) }
    public func commit() throws { try output.commit() }
    public func discard() { output.discard() }
}

/// Refuses an output made from another store than `store` (its recorded `store_fingerprint`
/// differs). Files without the attribute (written by earlier versions) are accepted.
func checkProvenance(_ a: Attributes, file: String, store: FeatureStore, remake: String) throws {
    guard let recorded = try a.optionalString("store_fingerprint") else { return }
    let actual = try store.fingerprint
    if recorded != actual {
        let made = (try? a.optionalString("store")) ?? nil
        throw StoreError(file: file, "was made from another store\(made.map { " (\($0))" } ?? ""): its store fingerprint \(recorded) is not \(store.path)'s \(actual) (image count, grid, names or features differ); use the file made from this store, or make it again with \(remake)")
    }
}
