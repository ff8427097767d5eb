import Foundation
import UnsegHDF5
import CUnsegKernels
import UnsegCore
import UnsegLinAlg

/// The identity of a feature store (root attributes of the schema, version 1).
public struct StoreMetadata: Sendable, Equatable, Codable {
    public static let format = "unseg.feature-store"
    public static let version = 1

    public var backbone: String
    public var patchSize: Int
    public var dataset: String
    public var split: String
    /// Label protocol the `/labels` follow ("cityscapes27", ...); nil when none.
    public var labelProtocol: String?
    public var classNames: [String]?
    /// What the values of `/labels` are (root attribute `label_ids`; `class` when absent).
    public var labelIDs: LabelIDs

    public init(backbone: String, patchSize: Int, dataset: String, split: String,
                labelProtocol: String? = nil, classNames: [String]? = nil, labelIDs: LabelIDs = .class) {
        self.backbone = backbone
        self.patchSize = patchSize
        self.dataset = dataset
        self.split = split
        self.labelProtocol = labelProtocol
        self.classNames = classNames
        self.labelIDs = labelIDs
    }
}

/// What the values of a store's `/labels` are.
public enum LabelIDs: String, Sendable, Equatable, Codable, CaseIterable {
    /// The protocol's class ids 0..<n, 255 = ignore (the default).
    case `class`
    /// The dataset's own ids (Cityscapes labelIds, COCO-Stuff fine ids, Potsdam 6-class ids): the
    /// reader maps them through the protocol's table, so every consumer sees class ids.
    case raw
}

/// Everything about an open store that the algorithms need to know, checked against the schema.
public struct StoreLayout: Sendable, Equatable {
    public var imageCount: Int
    /// Feature grid: `gridHeight x gridWidth` cells of `channels` values.
    public var gridHeight: Int
    public var gridWidth: Int
    public var channels: Int
    /// `.float16` or `.float32`.
    public var featureType: FeatureType
    /// Image resolution `H x W` when `/images` or `/labels` exist; else the grid times the patch size.
    public var imageHeight: Int
    public var imageWidth: Int
    public var hasImages: Bool
    public var hasLabels: Bool
    public var hasNames: Bool
    /// `/features_flipped` `[N, h, w, C]`: features of the horizontally flipped images, flipped back.
    public var hasFlippedFeatures: Bool = false
    /// `/features_views` `[V, N, h, w, C]`: V photometrically augmented views (0 when absent).
    public var viewCount: Int = 0
    /// `/boxes` `[M, 5]` rows (image index, x0, y0, x1, y1 in image pixels).
    public var boxCount: Int = 0
    /// `/features_crops` `[C, N, h, w, C']`: features of C zoomed-in crops per image, each resized to
    /// the full input size (the Two Tricks paper's multi-scale views), boxes in `/crop_boxes` (0 when absent).
    public var cropCount: Int = 0
    /// `/features_backbone` `[N, h, w, D]` (a store written with a peer's head, `unseg-extract --head`:
    /// `/features` holds the head's code, these the backbone's features it read): D, or 0 when absent.
    public var backboneChannels: Int = 0

    public var cellCount: Int { gridHeight * gridWidth }
    public var pixelCount: Int { imageHeight * imageWidth }
}

/// Which features an open store serves as its `/features`.
public enum FeatureView: Sendable, Equatable {
    /// `/features` (for a peer's store: the head's code, what the prototypes are fitted on).
    case primary
    /// The features mask proposals are computed from: `/features_backbone` when the store has it
    /// (PriMaPs' masks on a peer's code come from the plain backbone, as the reference does), else
    /// `/features`. In this view the flipped and augmented views (code) are not offered.
    case masks
}

/// An open feature store (read-only): validated on open, read one image at a time.
///
/// Thread-safe: reads go through the HDF5 lock. Nothing here loads a whole
/// `/features` dataset; each read is one image's chunk.
public final class FeatureStore: Sendable {
    public let path: String
    public let metadata: StoreMetadata
    public let layout: StoreLayout
    /// Whether the file declared `format`/`version` (a bare user-written store does not).
    public let declaresFormat: Bool

    let file: HDF5File
    let features: HDF5Dataset
    /// `/features` whatever the view (the fingerprint reads it, so every view has the same one).
    let primary: HDF5Dataset
    /// The view this store was opened with, and the dataset it reads as features.
    public let view: FeatureView
    public var featuresName: String { features.objectPath }
    /// How `/features` chunks are decoded: by unseg on the calling thread (raw chunk read under the
    /// HDF5 lock, then inflate / unshuffle / widen outside it, so several threads decode at once),
    /// or by the HDF5 library (under its lock) for layouts and filters unseg does not decode.
    public let chunkDecoding: ChunkDecoding
    let images: HDF5Dataset?
    let labels: HDF5Dataset?
    let flipped: HDF5Dataset?
    let views: HDF5Dataset?
    let crops: HDF5Dataset?
    /// `/crop_boxes`, `[crop][image]`, validated on open (inside the image, sides of at least one patch).
    public let cropBoxes: [[CropBox]]
    let boxes: HDF5Dataset?
    /// Raw id -> class id table applied on read when `label_ids = raw`.
    let rawToClass: [UInt8]?

    /// Opens and validates the store at `path`. Errors name the file, the dataset and what to do.
    public init(path: String, view: FeatureView = .primary) throws {
        self.path = path
        self.view = view
        let file: HDF5File
        do { file = try HDF5File.open(path) } catch let e as HDF5Error {
            throw StoreError(file: path, e.message)
        }
        self.file = file
        func fail(_ ds: String?, _ msg: String) -> StoreError { StoreError(file: path, dataset: ds, msg) }

        // Root attributes.
        var declares = false
        if file.hasAttribute("format") {
            let f = try file.stringAttribute("format")
            guard f == StoreMetadata.format else {
                throw fail(nil, "format attribute is '\(f)', not '\(StoreMetadata.format)'; this is not a feature store (an unseg output file?)")
            }
            declares = true
        }
        if file.hasAttribute("version") {
            let v = try file.intAttribute("version")
            guard v == StoreMetadata.version else {
                throw fail(nil, "feature-store version \(v) is not supported (this unseg reads version \(StoreMetadata.version)); upgrade unseg or rewrite the store")
            }
        }
        declaresFormat = declares

        guard file.contains("features") else {
            throw fail("/features", "missing; a feature store needs /features [N, h, w, C] (float16 or float32), see Docs/feature-store.md")
        }
        guard file.isDataset("features") else {
            throw fail("/features", "is a group, not a dataset [N, h, w, C]")
        }
        let feats = try file.dataset("features")
        guard feats.shape.count == 4 else {
            throw fail("/features", "has rank \(feats.shape.count) (shape \(feats.shape)); expected rank 4 [N, h, w, C] with channels last")
        }
        guard feats.elementType == .float16 || feats.elementType == .float32 else {
            throw fail("/features", "has element type \(feats.elementType); expected float16 or float32")
        }
        let (n, h, w, c) = (feats.shape[0], feats.shape[1], feats.shape[2], feats.shape[3])
        guard h > 0, w > 0, c > 0 else {
            throw fail("/features", "has an empty dimension (shape \(feats.shape))")
        }
        guard n > 0 else {
            throw fail("/features", "holds no images (shape \(feats.shape)); there is nothing to do with this store; extract features of at least one image")
        }
        guard h <= Self.maxGridSide, w <= Self.maxGridSide, c <= Self.maxChannels else {
            throw fail("/features", "has shape \(feats.shape): a \(h)x\(w) grid of \(c) channels per image is beyond what unseg handles (grid sides up to \(Self.maxGridSide), up to \(Self.maxChannels) channels); check the layout is [N, h, w, C] with channels last")
        }
        primary = feats
        var backbone: HDF5Dataset?
        if file.contains("features_backbone") {
            let ds = try file.dataset("features_backbone")
            guard ds.shape.count == 4, ds.shape[0] == n, ds.shape[1] == h, ds.shape[2] == w, ds.shape[3] >= 1,
                  ds.shape[3] <= Self.maxChannels else {
                throw fail("/features_backbone", "has shape \(ds.shape); expected [\(n), \(h), \(w), D]: the backbone features of the same images on the grid of /features (written by `unseg-extract --head`)")
            }
            guard ds.elementType == .float16 || ds.elementType == .float32 else {
                throw fail("/features_backbone", "has element type \(ds.elementType); expected float16 or float32 like /features")
            }
            backbone = ds
        }
        let served = view == .masks ? (backbone ?? feats) : feats
        features = served
        chunkDecoding = ChunkDecoding(served, chunk: [1, h, w, served.shape[3]])

        guard file.hasAttribute("patch_size") else {
            throw fail(nil, "missing root attribute 'patch_size' (image pixels per feature cell, e.g. 8 for ViT-S/8); add it with h5py: f.attrs['patch_size'] = 8")
        }
        let patch = try file.intAttribute("patch_size")
        guard patch > 0, patch <= Self.maxPatchSize else {
            throw fail(nil, "patch_size is \(patch); it must be an integer in 1...\(Self.maxPatchSize) (8 for ViT-S/8, 14 for DINOv2, 16 for ViT-S/16); fix the attribute")
        }
        let (ih, o1) = h.multipliedReportingOverflow(by: patch), (iw, o2) = w.multipliedReportingOverflow(by: patch)
        let (px, o3) = ih.multipliedReportingOverflow(by: iw)
        guard !o1, !o2, !o3, px <= Self.maxImagePixels else {
            throw fail(nil, "patch_size \(patch) makes the \(h)x\(w) feature grid an image of \(o1 || o2 ? "more than 2^63" : "\(ih)x\(iw)") pixels, beyond the \(Self.maxImagePixels) pixels unseg handles per image; fix patch_size")
        }

        func optString(_ name: String) throws -> String? { file.hasAttribute(name) ? try file.stringAttribute(name) : nil }
        let idsName = try optString("label_ids") ?? LabelIDs.class.rawValue
        guard let ids = LabelIDs(rawValue: idsName) else {
            throw fail(nil, "label_ids is '\(idsName)'; it must be 'class' (labels hold the protocol's class ids) or 'raw' (the dataset's own ids, mapped through the protocol)")
        }
        let meta = StoreMetadata(
            backbone: try optString("backbone") ?? "unknown",
            patchSize: patch,
            dataset: try optString("dataset") ?? "unknown",
            split: try optString("split") ?? "unknown",
            labelProtocol: try optString("protocol"),
            classNames: file.hasAttribute("class_names") ? try file.stringArrayAttribute("class_names") : nil,
            labelIDs: ids)
        metadata = meta
        if ids == .raw {
            guard let name = meta.labelProtocol, LabelProtocol.knownNames.contains(name),
                  let proto = try? LabelProtocol.named(name) else {
                throw fail(nil, "label_ids is 'raw' but the store names \(meta.labelProtocol.map { "the protocol '\($0)'" } ?? "no protocol"); raw ids can only be mapped through a known protocol (\(LabelProtocol.knownNames.joined(separator: ", "))); set the 'protocol' attribute or write class ids with label_ids = 'class'")
            }
            rawToClass = proto.rawToClass
        } else {
            rawToClass = nil
        }

        var imgH = h * patch, imgW = w * patch
        var imagesDS: HDF5Dataset?
        if file.contains("images") {
            let ds = try file.dataset("images")
            guard ds.shape.count == 4, ds.shape[3] == 3 else {
                throw fail("/images", "has shape \(ds.shape); expected [N, H, W, 3] uint8 RGB")
            }
            guard ds.elementType == .uint8 else { throw fail("/images", "has element type \(ds.elementType); expected uint8") }
            guard ds.shape[0] == n else {
                throw fail("/images", "has \(ds.shape[0]) images but /features has \(n); both must hold the same images in the same order")
            }
            imgH = ds.shape[1]; imgW = ds.shape[2]
            imagesDS = ds
        }
        var labelsDS: HDF5Dataset?
        if file.contains("labels") {
            let ds = try file.dataset("labels")
            guard ds.shape.count == 3 else { throw fail("/labels", "has shape \(ds.shape); expected [N, H, W] uint8 (255 = ignore)") }
            guard ds.elementType == .uint8 else { throw fail("/labels", "has element type \(ds.elementType); expected uint8 (255 = ignore)") }
            guard ds.shape[0] == n else {
                throw fail("/labels", "has \(ds.shape[0]) label maps but /features has \(n) images; labels shape must match the images")
            }
            if let im = imagesDS, ds.shape[1] != im.shape[1] || ds.shape[2] != im.shape[2] {
                throw fail("/labels", "are \(ds.shape[1])x\(ds.shape[2]) but /images are \(im.shape[1])x\(im.shape[2]); labels must have the image resolution")
            }
            imgH = ds.shape[1]; imgW = ds.shape[2]
            labelsDS = ds
        }
        if imagesDS != nil || labelsDS != nil {
            guard imgH == h * patch, imgW == w * patch else {
                throw fail(nil, "patch_size \(patch) is inconsistent: \(h)x\(w) feature cells x \(patch) = \(h * patch)x\(w * patch) pixels, but images/labels are \(imgH)x\(imgW); fix patch_size or resize the images and labels to \(h * patch)x\(w * patch)")
            }
        }
        var hasNames = false
        if file.contains("names") {
            let ds = try file.dataset("names")
            switch ds.elementType {
            case .variableString, .fixedString: break
            default: throw fail("/names", "has element type \(ds.elementType); expected strings")
            }
            guard ds.shape == [n] else { throw fail("/names", "has shape \(ds.shape); expected [\(n)], one name per image") }
            hasNames = true
        }
        func sameAsFeatures(_ name: String, leading: [Int]) throws -> HDF5Dataset? {
            guard file.contains(name) else { return nil }
            let ds = try file.dataset(name)
            let want = leading + [n, h, w, c]
            guard ds.shape.count == want.count, ds.shape.dropFirst(leading.count).elementsEqual([n, h, w, c]),
                  leading.isEmpty || (ds.shape[0] >= 1 && ds.shape[0] <= 1024) else {
                throw fail("/" + name, "has shape \(ds.shape); expected \(leading.isEmpty ? "" : "[V, ")\(leading.isEmpty ? "[" : "")\(n), \(h), \(w), \(c)] like /features")
            }
            guard ds.elementType == .float16 || ds.elementType == .float32 else {
                throw fail("/" + name, "has element type \(ds.elementType); expected float16 or float32 like /features")
            }
            return ds
        }
        let codeViews = view == .masks && backbone != nil   // the masks view serves the backbone, not the code
        let flippedDS = try sameAsFeatures("features_flipped", leading: [])
        let viewsDS = file.contains("features_views") ? try sameAsFeatures("features_views", leading: [file.dataset("features_views").shape.first ?? 0]) : nil
        flipped = codeViews ? nil : flippedDS
        views = codeViews ? nil : viewsDS
        let cropsDS = file.contains("features_crops") ? try sameAsFeatures("features_crops", leading: [file.dataset("features_crops").shape.first ?? 0]) : nil
        let boxesOfCrops = try Self.readCropBoxes(file, crops: cropsDS, images: n, width: imgW, height: imgH, patch: patch, fail: fail)
        crops = codeViews ? nil : cropsDS
        cropBoxes = codeViews ? [] : boxesOfCrops
        var boxesDS: HDF5Dataset?
        if file.contains("boxes") {
            let ds = try file.dataset("boxes")
            guard ds.shape.count == 2, ds.shape[1] == 5 else {
                throw fail("/boxes", "has shape \(ds.shape); expected [M, 5] rows of image index, x0, y0, x1, y1")
            }
            guard ds.elementType == .float32 || ds.elementType == .float64 else {
                throw fail("/boxes", "has element type \(ds.elementType); expected float32")
            }
            boxesDS = ds
        }
        boxes = boxesDS
        images = imagesDS
        labels = labelsDS
        layout = StoreLayout(imageCount: n, gridHeight: h, gridWidth: w, channels: served.shape[3],
                             featureType: served.elementType == .float16 ? .float16 : .float32,
                             imageHeight: imgH, imageWidth: imgW, hasImages: imagesDS != nil, hasLabels: labelsDS != nil,
                             hasNames: hasNames, hasFlippedFeatures: flipped != nil,
                             viewCount: views?.shape[0] ?? 0, boxCount: boxesDS?.shape[0] ?? 0, cropCount: crops?.shape[0] ?? 0,
                             backboneChannels: backbone?.shape[3] ?? 0)
    }

    /// `/crop_boxes` `[C, N, 4]` (x0, y0, x1, y1 in pixels of the stored image, exclusive ends), read
    /// and checked: present exactly when `/features_crops` is, as many crops and images, every box
    /// finite, inside the `width x height` image, sides of at least one patch (`unseg-extract --crops`
    /// draws them so). Errors name the crop, the image and the box.
    static func readCropBoxes(_ file: HDF5File, crops: HDF5Dataset?, images n: Int, width: Int, height: Int, patch: Int,
                              fail: (String?, String) -> StoreError) throws -> [[CropBox]] {
        let has = file.contains("crop_boxes")
        guard let crops else {
            if has { throw fail("/crop_boxes", "present without /features_crops; write both with `unseg-extract --crops C`, or delete /crop_boxes") }
            return []
        }
        guard has else {
            throw fail("/crop_boxes", "missing; /features_crops needs the crops' boxes [\(crops.shape[0]), \(n), 4] (x0, y0, x1, y1 in pixels); extract again with `unseg-extract --crops C`")
        }
        let ds = try file.dataset("crop_boxes")
        let c = crops.shape[0]
        guard ds.shape == [c, n, 4] else {
            throw fail("/crop_boxes", "has shape \(ds.shape); expected [\(c), \(n), 4] (one box x0, y0, x1, y1 per crop of /features_crops and image)")
        }
        guard ds.elementType == .float32 || ds.elementType == .float64 else {
            throw fail("/crop_boxes", "has element type \(ds.elementType); expected float32 (or float64)")
        }
        var raw = [Float](repeating: 0, count: c * n * 4)
        try raw.withUnsafeMutableBytes { try ds.read(into: $0.baseAddress!, memoryType: .float32) }
        var out: [[CropBox]] = []
        out.reserveCapacity(c)
        for k in 0..<c {
            var row: [CropBox] = []
            row.reserveCapacity(n)
            for i in 0..<n {
                let o = (k * n + i) * 4
                let b = CropBox(x0: raw[o], y0: raw[o + 1], x1: raw[o + 2], y1: raw[o + 3])
                if let why = b.problem(width: width, height: height, patch: patch) {
                    throw fail("/crop_boxes", "crop \(k) of image \(i) is (x0 \(b.x0), y0 \(b.y0), x1 \(b.x1), y1 \(b.y1)): \(why); the boxes do not belong to these crops: extract again with `unseg-extract --crops C`")
                }
                row.append(b)
            }
            out.append(row)
        }
        return out
    }

    /// Largest values a store may declare (checked before any arithmetic with them).
    public static let maxPatchSize = 1024
    public static let maxGridSide = 4096
    public static let maxChannels = 65536
    public static let maxImagePixels = 1 << 28

    /// Number of images.
    public var count: Int { layout.imageCount }

    /// A cheap content fingerprint of the store: FNV-1a over the image count, grid, channels,
    /// patch size, every name and the features of the first cell of images 0, N/2 and N-1.
    /// Outputs record it and readers compare it, so a file made from another store is refused.
    public var fingerprint: String {
        get throws {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            func mix(_ bytes: UnsafeRawBufferPointer) { for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 } }
            let l = layout, c = primary.shape[3]
            for v in [l.imageCount, l.gridHeight, l.gridWidth, c, metadata.patchSize] { withUnsafeBytes(of: Int64(v)) { mix($0) } }
            for name in try names() {
                Array(name.utf8).withUnsafeBytes { mix($0) }
                withUnsafeBytes(of: UInt8(0)) { mix($0) }
            }
            for i in Set([0, l.imageCount / 2, l.imageCount - 1]).sorted() {
                try firstCell(i).withUnsafeBytes { mix($0) }
            }
            let s = String(h, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
    }

    /// The `C` values of cell 0 of image `i` in `/features` (whatever the view), as Float.
    private func firstCell(_ i: Int) throws -> [Float] {
        let c = primary.shape[3]
        var out = [Float](repeating: 0, count: c)
        do {
            if primary.elementType == .float16 {
                var bits = [UInt16](repeating: 0, count: c)
                try bits.withUnsafeMutableBytes { try primary.read(into: $0.baseAddress!, memoryType: .float16, start: [i, 0, 0, 0], count: [1, 1, 1, c]) }
                bits.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { Half.toFloat(b.baseAddress!, $0.baseAddress!, c) } }
            } else {
                try out.withUnsafeMutableBytes { try primary.read(into: $0.baseAddress!, memoryType: .float32, start: [i, 0, 0, 0], count: [1, 1, 1, c]) }
            }
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: "/features", "cannot read image \(i): \(e.message)")
        }
        return out
    }

    /// The peer's cluster-probe centroids `/peer_clusters` `[K, C]` (written by `unseg-extract --head`),
    /// nil when the store has none. Errors name the dataset: wrong rank, a width that is not the
    /// code's, a non-finite or all-zero centroid.
    public func peerClusters() throws -> Matrix? {
        guard file.contains("peer_clusters") else { return nil }
        let ds = try file.dataset("peer_clusters")
        let c = primary.shape[3]
        guard ds.shape.count == 2, ds.shape[0] >= 1, ds.shape[0] <= 255, ds.shape[1] == c else {
            throw StoreError(file: path, dataset: "/peer_clusters", "has shape \(ds.shape); expected [K, \(c)]: K centroids (1...255) as wide as /features (the peer's code)")
        }
        guard ds.elementType == .float32 || ds.elementType == .float64 || ds.elementType == .float16 else {
            throw StoreError(file: path, dataset: "/peer_clusters", "has element type \(ds.elementType); expected float32")
        }
        var m = Matrix(rows: ds.shape[0], cols: c)
        try m.data.withUnsafeMutableBytes { try ds.read(into: $0.baseAddress!, memoryType: .float32) }
        if let bad = Finite.describeFirstNonFinite(m.data, cols: c) {
            throw StoreError(file: path, dataset: "/peer_clusters", "\(bad); the file is damaged: extract it again")
        }
        if let zero = m.rowNorms().firstIndex(where: { $0 == 0 }) {
            throw StoreError(file: path, dataset: "/peer_clusters", "centroid \(zero) is all zeros, which defines no direction; the file is damaged: extract it again")
        }
        return m
    }

    private func checkIndex(_ i: Int) throws {
        guard i >= 0 && i < count else {
            throw StoreError(file: path, dataset: "/features", "image index \(i) is out of range 0..<\(count)")
        }
    }

    /// Reads image `i`'s features `[h*w, C]` as Float into `dst` (`h*w*C` floats).
    /// float16 is read raw (no HDF5 conversion) and widened with SIMD; `scratch` holds
    /// the half bits (`h*w*C` UInt16) and may be reused across calls.
    public func readFeatures(_ i: Int, into dst: UnsafeMutablePointer<Float>, scratch: inout [UInt16]) throws {
        try readFeatures(i, from: features, view: nil, into: dst, scratch: &scratch)
    }

    /// Which features to read: the stored ones, the flipped-back ones, or augmented view `v`.
    public enum FeatureSource: Sendable, Equatable {
        case plain
        case flipped
        case view(Int)
        /// Zoomed-in crop `c` (`/features_crops`); its box is `cropBoxes[c][i]`.
        case crop(Int)
    }

    /// Image `i`'s features from `source` as a `[h*w, C]` matrix. Errors when the store lacks
    /// the dataset.
    public func features(_ i: Int, source: FeatureSource) throws -> Matrix {
        var m = Matrix(rows: layout.cellCount, cols: layout.channels)
        var scratch: [UInt16] = []
        let (ds, view): (HDF5Dataset?, Int?)
        let name: String
        switch source {
        case .plain: (ds, view, name) = (features, nil, "/features")
        case .flipped: (ds, view, name) = (flipped, nil, "/features_flipped")
        case .view(let v):
            (ds, view, name) = (views, v, "/features_views")
            guard v >= 0 && v < layout.viewCount || views == nil else {
                throw StoreError(file: path, dataset: name, "view \(v) is out of range 0..<\(layout.viewCount)")
            }
        case .crop(let c):
            (ds, view, name) = (crops, c, "/features_crops")
            guard c >= 0 && c < layout.cropCount || crops == nil else {
                throw StoreError(file: path, dataset: name, "crop \(c) is out of range 0..<\(layout.cropCount)")
            }
        }
        guard let d = ds else {
            let option: String
            switch source { case .flipped: option = "--flip"; case .crop: option = "--crops C"; default: option = "--views V" }
            throw StoreError(file: path, dataset: name, "missing; write it with `unseg-extract \(option)`, or do without it")
        }
        try m.data.withUnsafeMutableBufferPointer { try readFeatures(i, from: d, view: view, into: $0.baseAddress!, scratch: &scratch) }
        return m
    }

    /// Image `i`'s `/features` chunk as stored (compressed), for `decode(_:into:)` on any thread;
    /// nil when unseg does not decode this store's chunks itself (`chunkDecoding == .library`) or
    /// this chunk skipped a filter. One read under the HDF5 lock.
    public func encodedFeatures(_ i: Int) throws -> EncodedFeatures? {
        try checkIndex(i)
        guard chunkDecoding != .library else { return nil }
        // A chunk that was never written (the library reads the fill value), or any chunk the raw
        // read cannot serve, goes through the library: its read gives the answer or the error.
        guard let raw = try? features.readRawChunk(offset: [i, 0, 0, 0]), raw.filterMask == 0, !raw.bytes.isEmpty else { return nil }
        return EncodedFeatures(index: i, bytes: raw.bytes)
    }

    /// Decodes a chunk from `encodedFeatures` into `[h*w, C]` Floats (no HDF5 call, no lock).
    /// Bit-identical to the library's read. Errors name the image for a damaged chunk or a
    /// non-finite value.
    public func decode(_ e: EncodedFeatures) throws -> Matrix {
        let l = layout
        let n = l.cellCount * l.channels, size = layout.featureType.size, bytes = n * size
        var inflateFailed = false
        // No zero-filling: every byte is written by inflate / unshuffle / widening.
        let data = [Float](unsafeUninitializedCapacity: n) { out, count in
            count = n
            let dst = UnsafeMutableRawPointer(out.baseAddress!)
            let shuffled = chunkDecoding == .shuffleDeflate
            // Where inflate writes: straight into the result for unshuffled float32, else a scratch.
            let needsScratch = shuffled || size == 2
            let scratch: UnsafeMutableRawPointer = needsScratch ? .allocate(byteCount: bytes * (shuffled && size == 2 ? 2 : 1), alignment: 16) : dst
            defer { if needsScratch { scratch.deallocate() } }
            let ok = e.bytes.withUnsafeBufferPointer { src in
                unseg_inflate(src.baseAddress!, src.count, scratch.assumingMemoryBound(to: UInt8.self), bytes) == 0
            }
            guard ok else { inflateFailed = true; return }
            if size == 4 {
                if shuffled {
                    unseg_unshuffle(scratch.assumingMemoryBound(to: UInt8.self), dst.assumingMemoryBound(to: UInt8.self), n, 4, bytes)
                }
            } else {
                var halves = scratch
                if shuffled {
                    halves = scratch + bytes
                    unseg_unshuffle(scratch.assumingMemoryBound(to: UInt8.self), halves.assumingMemoryBound(to: UInt8.self), n, 2, bytes)
                }
                Half.toFloat(halves.assumingMemoryBound(to: UInt16.self), out.baseAddress!, n)
            }
        }
        guard !inflateFailed else {
            throw StoreError(file: path, dataset: "/features", "image \(e.index): the compressed chunk is damaged (it does not inflate to \(bytes) bytes); the file is corrupt: extract the features again")
        }
        try data.withUnsafeBufferPointer { try checkFinite($0.baseAddress!, n, image: e.index, dataset: "/features") }
        return Matrix(rows: l.cellCount, cols: l.channels, data: data)
    }

    func checkFinite(_ p: UnsafePointer<Float>, _ n: Int, image i: Int, dataset: String) throws {
        // x - x is 0 for finite x and NaN for NaN / inf: one SIMD pass, no branch per value.
        var acc = SIMD8<Float>()
        var k = 0
        while k + 8 <= n { let v = UnsafeRawPointer(p + k).loadUnaligned(as: SIMD8<Float>.self); acc += v - v; k += 8 }
        var tail: Float = 0
        while k < n { tail += p[k] - p[k]; k += 1 }
        if !(acc.sum() + tail).isNaN { return }
        var bad = -1
        k = 0
        while k < n { if !p[k].isFinite { bad = k; break }; k += 1 }
        if bad >= 0 {
            throw StoreError(file: path, dataset: dataset,
                             "image \(i) has a non-finite value (\(p[bad])) at cell \(bad / layout.channels), channel \(bad % layout.channels); the features are damaged: extract them again, or write a store without this image")
        }
    }

    /// Image `i`'s features read by the HDF5 library whatever `chunkDecoding` says (the reference
    /// the tests compare unseg's own decoding with).
    func libraryFeatures(_ i: Int) throws -> Matrix {
        var m = Matrix(rows: layout.cellCount, cols: layout.channels)
        var scratch: [UInt16] = []
        try m.data.withUnsafeMutableBufferPointer { try readFeatures(i, from: features, view: nil, into: $0.baseAddress!, scratch: &scratch, forceLibrary: true) }
        return m
    }

    func readFeatures(_ i: Int, from dataset: HDF5Dataset, view: Int?, into dst: UnsafeMutablePointer<Float>,
                      scratch: inout [UInt16], forceLibrary: Bool = false) throws {
        try checkIndex(i)
        let l = layout
        let n = l.cellCount * l.channels
        if dataset === features, view == nil, !forceLibrary, let e = try encodedFeatures(i) {
            let m = try decode(e)
            m.data.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: n) }
            return
        }
        let start = (view.map { [$0] } ?? []) + [i, 0, 0, 0], cnt = (view == nil ? [] : [1]) + [1, l.gridHeight, l.gridWidth, l.channels]
        let features = dataset
        let isHalf = dataset.elementType == .float16
        do {
            if isHalf {
                if scratch.count < n { scratch = [UInt16](repeating: 0, count: n) }
                try scratch.withUnsafeMutableBytes { try features.read(into: $0.baseAddress!, memoryType: .float16, start: start, count: cnt) }
                scratch.withUnsafeBufferPointer { Half.toFloat($0.baseAddress!, dst, n) }
            } else {
                try features.read(into: UnsafeMutableRawPointer(dst), memoryType: .float32, start: start, count: cnt)
            }
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: dataset.objectPath, "cannot read image \(i): \(e.message)" + (e.stack.last.map { " (HDF5: \($0))" } ?? ""))
        }
        // NaN / inf never enter an algorithm: they would pass silently through argmax and sums.
        try checkFinite(dst, n, image: i, dataset: dataset.objectPath)
    }

    /// Image `i`'s features as a `[h*w, C]` matrix.
    public func features(_ i: Int) throws -> Matrix {
        var m = Matrix(rows: layout.cellCount, cols: layout.channels)
        var scratch: [UInt16] = []
        try m.data.withUnsafeMutableBufferPointer { try readFeatures(i, into: $0.baseAddress!, scratch: &scratch) }
        return m
    }

    /// The object boxes `[M]` (image index, x0, y0, x1, y1), empty when the store has none.
    public func boxList() throws -> [(image: Int, x0: Float, y0: Float, x1: Float, y1: Float)] {
        guard let ds = boxes, boxCount > 0 else { return [] }
        let v = try wrap("/boxes") { try ds.read(Float.self) }
        return try (0..<boxCount).map { r in
            let b = Array(v[(r * 5)..<(r * 5 + 5)])
            guard b.allSatisfy(\.isFinite), b[0] >= 0, b[0] < Float(count), b[0] == b[0].rounded() else {
                throw StoreError(file: path, dataset: "/boxes", "row \(r) is \(b); expected an image index in 0..<\(count) and finite coordinates")
            }
            return (Int(b[0]), b[1], b[2], b[3], b[4])
        }
    }

    var boxCount: Int { layout.boxCount }

    /// Image `i` as RGB bytes `[H*W*3]`. Errors when the store has no `/images`.
    public func image(_ i: Int) throws -> [UInt8] {
        try checkIndex(i)
        guard let ds = images else {
            throw StoreError(file: path, dataset: "/images", "missing; this step needs the RGB images in the store (write /images [N, H, W, 3] uint8)")
        }
        return try wrap("/images") { try ds.read(UInt8.self, start: [i, 0, 0, 0], count: [1, layout.imageHeight, layout.imageWidth, 3]) }
    }

    /// Image `i`'s labels `[H*W]` as the protocol's class ids (255 = ignore): raw ids
    /// (`label_ids = raw`) are mapped through the protocol here, so no consumer sees them.
    /// Errors when the store has no `/labels`.
    public func labels(_ i: Int) throws -> [UInt8] {
        try checkIndex(i)
        guard let ds = labels else {
            throw StoreError(file: path, dataset: "/labels", "missing; evaluation needs ground-truth labels [N, H, W] uint8 in the store")
        }
        var y = try wrap("/labels") { try ds.read(UInt8.self, start: [i, 0, 0], count: [1, layout.imageHeight, layout.imageWidth]) }
        if let lut = rawToClass {
            lut.withUnsafeBufferPointer { t in y.withUnsafeMutableBufferPointer { p in for j in 0..<p.count { p[j] = t[Int(p[j])] } } }
        }
        return y
    }

    /// One name per image: `/names` when present, else "000000", "000001", ...
    public func names() throws -> [String] {
        if layout.hasNames {
            return try wrap("/names") { try file.dataset("names").readStrings() }
        }
        return (0..<count).map { String(format: "%06d", $0) }
    }

    private func wrap<T>(_ ds: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: ds, e.message + (e.stack.last.map { " (HDF5: \($0))" } ?? ""))
        }
    }
}

/// A `/features` chunk as stored (compressed), read under the HDF5 lock, decoded anywhere.
public struct EncodedFeatures: Sendable {
    public let index: Int
    let bytes: [UInt8]
}

/// Who decodes a store's `/features` chunks.
public enum ChunkDecoding: Sendable, Equatable {
    /// The HDF5 library (uncompressed data, other layouts, or filters unseg does not decode).
    case library
    /// unseg: deflate only.
    case deflate
    /// unseg: shuffle, then deflate (h5py's `compression="gzip", shuffle=True`).
    case shuffleDeflate

    init(_ ds: HDF5Dataset, chunk: [Int]) {
        guard ds.chunkShape == chunk, ds.isLittleEndianIEEEFloat,
              ds.storedElementSize == (ds.elementType == .float16 ? 2 : 4) else { self = .library; return }
        switch ds.filterIDs {
        case [1]: self = .deflate
        case [2, 1]: self = .shuffleDeflate
        default: self = .library
        }
    }
}
