import UnsegHDF5

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
                                   attributes: [(String, HDF5AttributeValue)] = []) throws -> LabelMapsWriter {
        let l = store.layout
        return try LabelMapsWriter(path: path, format: .predictions,
                                   maps: [MapSpec(name: "predictions", count: l.imageCount, height: l.imageHeight, width: l.imageWidth)],
                                   attributes: [("ids", .string(ids.rawValue)), ("count", .int(count)),
                                                ("store", .string(store.path))] + attributes)
    }
}
