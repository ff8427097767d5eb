import UnsegCore

/// Reads a proposals file written by `ProposeJob` / `unseg propose`, checked against its store.
///
/// Thread-safe (reads go through the HDF5 lock). Typical use by the fitting code:
/// ```
/// let props = try ProposalsFile(path: "P.h5", store: store)
/// let m = try props.labelResolutionMasks(i)   // [H*W], 0 = background, 1...K
/// ```
///
/// `@unchecked Sendable`: reads go through the HDF5 lock.
public final class ProposalsFile: Sendable {
    public let path: String
    /// Number of images `N`.
    public let count: Int
    /// Feature grid `h x w` of `/masks`.
    public let gridHeight: Int
    public let gridWidth: Int
    /// Image size `H x W` (of `/refined` when present, else of the store it was checked against).
    public let imageHeight: Int
    public let imageWidth: Int
    /// The method that made the masks (`method` attribute), e.g. "primaps".
    public let method: String
    /// The refinement (`refine` attribute): "none", "guided" or "crf".
    public let refine: String
    /// Whether `/refined` `[N, H, W]` is present.
    public var hasRefined: Bool { refinedMaps != nil }

    let file: LabelMapsFile
    let masksMap: LabelMapDataset
    let refinedMaps: LabelMapDataset?
    let foregroundMaps: LabelMapDataset?
    /// Whether `/foreground` `[N, H, W]` (a soft foreground map, `--method fiedler`) is present.
    public var hasForeground: Bool { foregroundMaps != nil }

    /// Opens `path` and checks it against `store`: same image count, `/masks` on the store's
    /// feature grid, `/refined` (if any) at the store's image size.
    /// - Throws: `StoreError` naming the proposals file, the dataset and the size that
    ///   disagrees ("/masks has 4 images but the store S.h5 has 6"; "maps are 8x8 but the store
    ///   S.h5 needs 10x10"), or that the file is not a proposals file.
    public convenience init(path: String, store: FeatureStore) throws {
        let l = store.layout
        try self.init(path: path, count: l.imageCount, grid: (l.gridHeight, l.gridWidth),
                      image: (l.imageHeight, l.imageWidth), storePath: store.path)
        try checkProvenance(attributes, file: path, store: store, remake: "`unseg propose --store \(store.path)`")
    }

    /// Opens `path` and checks it against the given sizes (`storePath` only for messages).
    public init(path: String, count: Int, grid: (height: Int, width: Int), image: (height: Int, width: Int),
                storePath: String) throws {
        self.path = path
        file = try LabelMapsFile(path: path, expect: .proposals)
        masksMap = try file.map("masks", count: count, height: grid.height, width: grid.width, storePath: storePath)
        refinedMaps = file.contains("refined")
            ? try file.map("refined", count: count, height: image.height, width: image.width, storePath: storePath) : nil
        foregroundMaps = file.contains("foreground")
            ? try file.map("foreground", count: count, height: image.height, width: image.width, storePath: storePath) : nil
        self.count = count
        gridHeight = grid.height
        gridWidth = grid.width
        imageHeight = image.height
        imageWidth = image.width
        let a = file.attributes
        method = try a.optionalString("method") ?? "unknown"
        refine = try a.optionalString("refine") ?? (refinedMaps == nil ? "none" : "unknown")
    }

    /// Root attributes (method, parameters, statistics).
    public var attributes: Attributes { file.attributes }

    /// The PriMaPs similarity threshold psi the masks were made with (nil for other methods or
    /// files that do not say).
    public var primapsThreshold: Double? {
        guard method == "primaps", attributes.has("threshold") else { return nil }
        return try? attributes.double("threshold")
    }

    private func check(_ i: Int) throws {
        guard i >= 0 && i < count else {
            throw StoreError(file: path, dataset: "/masks", "image index \(i) is out of range 0..<\(count)")
        }
    }

    /// Image `i`'s masks at feature resolution `[h*w]` row-major (0 = background, 1...K).
    public func masks(_ i: Int) throws -> [UInt8] {
        try check(i)
        return try masksMap.read(i)
    }

    /// Image `i`'s soft foreground map `[H*W]` (0...255 = 0...1). Errors when the file has none.
    public func foreground(_ i: Int) throws -> [UInt8] {
        try check(i)
        guard let f = foregroundMaps else {
            throw StoreError(file: path, dataset: "/foreground", "missing; foreground maps come from `unseg propose --method fiedler`")
        }
        return try f.read(i)
    }

    /// Image `i`'s refined masks `[H*W]`, or nil when the file holds no `/refined`.
    public func refined(_ i: Int) throws -> [UInt8]? {
        try check(i)
        return try refinedMaps?.read(i)
    }

    /// Image `i`'s masks at label (image) resolution `[H*W]`: `/refined` when present, else the
    /// feature-resolution masks upsampled by nearest neighbour (pixel `(y, x)` takes cell
    /// `(y * h / H, x * w / W)`, i.e. its patch when `H = h * patch`). O(H W).
    public func labelResolutionMasks(_ i: Int) throws -> [UInt8] {
        if let r = try refined(i) { return r }
        return NearestResampler.resample(try masks(i), height: gridHeight, width: gridWidth,
                                         toHeight: imageHeight, toWidth: imageWidth)
    }

    /// Same as `labelResolutionMasks(i)`, first checking that `store` is the one this file was
    /// opened against (image count and sizes); throws a `StoreError` naming the mismatch otherwise.
    public func labelResolutionMasks(_ i: Int, store: FeatureStore) throws -> [UInt8] {
        let l = store.layout
        guard l.imageCount == count, l.gridHeight == gridHeight, l.gridWidth == gridWidth,
              l.imageHeight == imageHeight, l.imageWidth == imageWidth else {
            throw StoreError(file: path, "was opened for \(count) images of \(gridHeight)x\(gridWidth) cells / \(imageHeight)x\(imageWidth) pixels but the store \(store.path) has \(l.imageCount) images of \(l.gridHeight)x\(l.gridWidth) cells / \(l.imageHeight)x\(l.imageWidth) pixels; use the proposals made from this store")
        }
        return try labelResolutionMasks(i)
    }
}

/// Writes a proposals file for a store (`unseg propose`): `/masks` uint8 `[N, h, w]` and, when
/// refined, `/refined` uint8 `[N, H, W]`; root attributes `store`, `images`, `grid_height/width`,
/// `image_height/width`, the method's `parameters`, and at the end the mask statistics
/// (`mask_count_min/max/mean/total`, `empty_images`). Temporary name until `commit`.
public final class ProposalsWriter {
    let output: LabelMapsWriter
    let refined: Bool
    let foreground: Bool

    /// - foreground: also write `/foreground` uint8 `[N, H, W]`, a soft foreground map (0...255 = 0...1).
    public init(path: String, store: FeatureStore, refined: Bool, foreground: Bool = false,
                parameters: [(String, AttributeValue)]) throws {
        let l = store.layout
        var maps = [LabelMapsWriter.MapSpec(name: "masks", count: l.imageCount, height: l.gridHeight, width: l.gridWidth)]
        if refined { maps.append(.init(name: "refined", count: l.imageCount, height: l.imageHeight, width: l.imageWidth)) }
        if foreground { maps.append(.init(name: "foreground", count: l.imageCount, height: l.imageHeight, width: l.imageWidth)) }
        self.foreground = foreground
        let attrs: [(String, AttributeValue)] = [
            ("store", .string(store.path)), ("store_fingerprint", .string(try store.fingerprint)), ("images", .int(l.imageCount)),
            ("grid_height", .int(l.gridHeight)), ("grid_width", .int(l.gridWidth)),
            ("image_height", .int(l.imageHeight)), ("image_width", .int(l.imageWidth)),
        ] + parameters
        output = try LabelMapsWriter(path: path, format: .proposals, maps: maps, attributes: attrs)
        self.refined = refined
    }

    /// Image `index`: masks `[h*w]` (0 = background, 1...K) and, for a refined file, `[H*W]`.
    public func write(_ index: Int, masks: [UInt8], refined r: [UInt8]?, foreground f: [UInt8]? = nil) throws {
        try output.write("masks", index: index, masks)
        if refined, let r { try output.write("refined", index: index, r) }
        if foreground, let f { try output.write("foreground", index: index, f) }
    }

    /// Writes the mask statistics and renames the file into place.
    public func commit(maskCounts: [Int]) throws {
        let total = maskCounts.reduce(0, +)
        try output.setAttribute("mask_count_min", .int(maskCounts.min() ?? 0))
        try output.setAttribute("mask_count_max", .int(maskCounts.max() ?? 0))
        try output.setAttribute("mask_count_total", .int(total))
        try output.setAttribute("mask_count_mean", .double(maskCounts.isEmpty ? 0 : Double(total) / Double(maskCounts.count)))
        try output.setAttribute("empty_images", .int(maskCounts.filter { $0 == 0 }.count))
        try output.commit()
    }

    /// Abandons the output (the temporary file is removed).
    public func discard() { output.discard() }
}
