import Foundation
import UnsegCore
import UnsegImaging
import UnsegLinAlg
import UnsegStore

// What `unseg evaluate` scores: unseg's own predictions / proposals files, or maps another tool
// wrote: a folder of PNGs (matched to the store's images by name) or a plain `[N, H, W]` HDF5
// dataset. unseg's own files keep their strict checks (format attribute, store fingerprint);
// foreign maps are checked by what can be checked without provenance: one map per image, the
// store's label size (or an explicit --resize), the value range.

/// How foreign maps of another size are brought to the store's label size.
public enum MapResize: String, Sendable, CaseIterable {
    /// Sizes must match (the default: a silent resize changes the metric).
    case none
    /// Nearest neighbour, pixel centres (PIL NEAREST, torch nearest-exact): for label maps (ids are never mixed).
    case nearest
    /// Bilinear, align_corners=False (torch, PIL): for soft foreground maps only.
    case bilinear
}

/// Options for predictions that unseg did not write.
public struct ForeignMapsOptions: Sendable, Equatable {
    /// `--dataset`: read this `[N, H, W]` dataset of an HDF5 file as plain maps.
    public var dataset: String?
    /// `--resize`.
    public var resize: MapResize
    /// `--clusters`: how many ids foreign label maps use (default: the protocol's class count,
    /// or the export manifest's count).
    public var clusters: Int?
    /// `--suffix`: more file-name suffixes to ignore when matching PNGs to images.
    public var suffixes: [String]

    public init(dataset: String? = nil, resize: MapResize = .none, clusters: Int? = nil, suffixes: [String] = []) {
        self.dataset = dataset; self.resize = resize; self.clusters = clusters; self.suffixes = suffixes
    }
}

/// Where the maps came from, for the table, the JSON and the report.
public struct PredictionSource: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A file written by `unseg predict` / `unseg propose` (format attribute, store fingerprint checked).
        case unseg
        /// A folder of PNGs, one per image, matched by name.
        case pngFolder = "png-folder"
        /// A plain HDF5 dataset with no unseg attributes.
        case hdf5Dataset = "hdf5-dataset"
    }
    public var kind: Kind
    /// What was passed as --predictions.
    public var path: String
    /// One line: "PNG folder labels/ (500 files: 8-bit grey), matched by name" ...
    public var detail: String
    /// Whether the maps carry no provenance (anything but unseg's own files).
    public var isForeign: Bool { kind != .unseg }

    public var json: [String: Any] {
        ["path": path, "kind": kind.rawValue, "foreign": isForeign, "detail": detail]
    }
}

/// Per-image cluster (or class) ids at the store's label size, 255 = no prediction.
public final class SegmentationMaps: Sendable {
    /// Ids are `0..<clusterCount` (or 255).
    public let clusterCount: Int
    public let source: PredictionSource
    private let reader: @Sendable (Int) throws -> [UInt8]

    init(clusterCount: Int, source: PredictionSource, reader: @escaping @Sendable (Int) throws -> [UInt8]) {
        self.clusterCount = clusterCount; self.source = source; self.reader = reader
    }

    /// Image `i`'s ids `[H*W]` (row-major, the store's label size).
    public func ids(_ i: Int) throws -> [UInt8] { try reader(i) }
}

/// Per-image soft foreground maps at the store's label size, 0...255 = 0...1.
public final class ForegroundMaps: Sendable {
    public let source: PredictionSource
    private let reader: @Sendable (Int) throws -> [UInt8]

    init(source: PredictionSource, reader: @escaping @Sendable (Int) throws -> [UInt8]) {
        self.source = source; self.reader = reader
    }

    /// Image `i`'s map `[H*W]`.
    public func foreground(_ i: Int) throws -> [UInt8] { try reader(i) }
}

/// Opens `--predictions` for evaluation.
public enum PredictionInputs {
    /// Segmentation ids for `store`. `classCount` is the protocol's (the default id count of
    /// foreign label maps).
    public static func segmentation(path: String, store: FeatureStore, classCount: Int,
                                    options o: ForeignMapsOptions = .init(), threads: Int = 1) throws -> SegmentationMaps {
        if o.resize == .bilinear {
            throw StoreError(file: path, "--resize bilinear mixes ids of neighbouring pixels; label maps are resized with --resize nearest (bilinear is for --task saliency / corloc)")
        }
        let l = store.layout
        if let k = o.clusters, !(1...254).contains(k) {
            throw StoreError(file: path, "--clusters is \(k); it must be in 1...254 (255 means no prediction)")
        }
        switch try kind(of: path, options: o) {
        case .unseg:
            let p = try PredictionsFile(path: path, store: store)
            if let k = o.clusters, k != p.count {
                throw StoreError(file: path, "declares \(p.count) ids (attribute 'count') but --clusters says \(k); drop --clusters for unseg's own predictions")
            }
            let src = PredictionSource(kind: .unseg, path: path, detail: "unseg predictions (\(p.ids.rawValue), \(p.count) ids)")
            return SegmentationMaps(clusterCount: p.count, source: src) { try p.read($0) }
        case .folder:
            let folder = try PNGMapsFolder(path: path, store: store, task: .classes, options: o, threads: threads)
            let k = o.clusters ?? folder.manifestCount ?? classCount
            guard (1...254).contains(k) else {
                throw StoreError(file: path, "the export manifest declares \(k) ids; they must be in 1...254; pass --clusters")
            }
            let what = o.clusters != nil ? "--clusters" : folder.manifestCount != nil ? "the export manifest's count" : "the protocol's class count; pass --clusters for another"
            let src = PredictionSource(kind: .pngFolder, path: path, detail: folder.detail + "; \(k) ids (\(what))")
            let (H, W, resize) = (l.imageHeight, l.imageWidth, o.resize)
            return SegmentationMaps(clusterCount: k, source: src) { i in
                let (file, s) = try folder.read(i)
                let ids = try LabelValues.ids(s.firstChannel, maxSample: s.header.maxSample, clusters: k, idOption: what) {
                    "\(file) (image \(i), '\(folder.names[i])')"
                }
                return LabelValues.resized(ids, height: s.header.height, width: s.header.width, toHeight: H, toWidth: W, resize: resize)
            }
        case .plain(let name):
            let d = try plainDataset(path: path, name: name, store: store, resize: o.resize)
            guard !d.isFloat else {
                throw StoreError(file: path, dataset: d.dataset, "is \(d.elementType); label maps hold integer ids (uint8, uint16, ...); float maps are scored with --task saliency or corloc")
            }
            let k = o.clusters ?? classCount
            let what = o.clusters != nil ? "--clusters" : "the protocol's class count; pass --clusters for another"
            let src = PredictionSource(kind: .hdf5Dataset, path: path,
                                       detail: "plain HDF5 dataset \(d.dataset) [\(d.count), \(d.height), \(d.width)] \(d.elementType), no unseg attributes (foreign: counts and sizes checked, no provenance); \(k) ids (\(what))")
            let (H, W, resize) = (l.imageHeight, l.imageWidth, o.resize)
            let maxSample = d.elementType == "uint16" ? 65535 : 255
            return SegmentationMaps(clusterCount: k, source: src) { i in
                guard case .integers(let v) = try d.read(i) else { fatalError("integer dataset read as floats") }
                let ids = try LabelValues.ids(v, maxSample: maxSample, clusters: k, idOption: what) { "\(path):\(d.dataset) image \(i)" }
                return LabelValues.resized(ids, height: d.height, width: d.width, toHeight: H, toWidth: W, resize: resize)
            }
        }
    }

    /// Soft foreground maps for `store` (saliency, CorLoc).
    public static func foreground(path: String, store: FeatureStore, task: EvaluationTask,
                                  options o: ForeignMapsOptions = .init(), threads: Int = 1) throws -> ForegroundMaps {
        if o.clusters != nil {
            throw StoreError(file: path, "--clusters counts the ids of label maps; --task \(task.rawValue) scores soft foreground maps; drop it")
        }
        let l = store.layout
        let (H, W, resize) = (l.imageHeight, l.imageWidth, o.resize)
        switch try kind(of: path, options: o) {
        case .unseg:
            let props = try ProposalsFile(path: path, store: store)
            guard props.hasForeground else {
                throw StoreError(file: path, dataset: "/foreground", "missing; --task \(task.rawValue) scores soft foreground maps: write them with `unseg propose --method fiedler`")
            }
            return ForegroundMaps(source: PredictionSource(kind: .unseg, path: path, detail: "unseg proposals /foreground")) { try props.foreground($0) }
        case .folder:
            let folder = try PNGMapsFolder(path: path, store: store, task: task, options: o, threads: threads)
            let src = PredictionSource(kind: .pngFolder, path: path, detail: folder.detail)
            return ForegroundMaps(source: src) { i in
                let (file, s) = try folder.read(i)
                if s.header.isColour && !s.coloursAreGrey {
                    throw StoreError(file: file, "image \(i) ('\(folder.names[i])') is a colour PNG (\(s.header.kind)) whose colours are not grey; saliency maps are grey PNGs (0-255 or 0/1)")
                }
                // Grey levels; a palette file's indices count as levels (0/1 masks saved with a palette).
                let soft = LabelValues.softFromIntegers(s.firstChannel.map(Int32.init), maxSample: s.header.maxSample)
                return try LabelValues.resizedSoft(soft, height: s.header.height, width: s.header.width, toHeight: H, toWidth: W, resize: resize)
            }
        case .plain(let name):
            let d = try plainDataset(path: path, name: name, store: store, resize: o.resize)
            let src = PredictionSource(kind: .hdf5Dataset, path: path,
                                       detail: "plain HDF5 dataset \(d.dataset) [\(d.count), \(d.height), \(d.width)] \(d.elementType), no unseg attributes (foreign: counts and sizes checked, no provenance)")
            let maxSample = d.elementType == "uint16" ? 65535 : 255
            return ForegroundMaps(source: src) { i in
                let soft: [Float]
                switch try d.read(i) {
                case .floats(let v):
                    if let j = v.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
                        throw StoreError(file: path, dataset: d.dataset, "image \(i) holds \(v[j]) at pixel \(j); float foreground maps must be in [0, 1]")
                    }
                    soft = v.map { $0 * 255 }
                case .integers(let v):
                    if let j = v.firstIndex(where: { $0 < 0 || Int($0) > maxSample }) {
                        throw StoreError(file: path, dataset: d.dataset, "image \(i) holds \(v[j]) at pixel \(j); integer foreground maps are 0/1 or 0-\(maxSample) (\(d.elementType))")
                    }
                    soft = LabelValues.softFromIntegers(v, maxSample: maxSample)
                }
                return try LabelValues.resizedSoft(soft, height: d.height, width: d.width, toHeight: H, toWidth: W, resize: resize)
            }
        }
    }

    enum Kind { case unseg, folder, plain(String) }

    /// A folder, a plain dataset (--dataset) or unseg's own file. A single PNG, a file with no
    /// `format` attribute and no --dataset, or --dataset with a folder are errors that say what to pass.
    static func kind(of path: String, options o: ForeignMapsOptions) throws -> Kind {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw StoreError(file: path, "does not exist; pass unseg's predictions file, a folder of PNGs (one per image) or an HDF5 file with --dataset NAME")
        }
        if isDir.boolValue {
            if o.dataset != nil {
                throw StoreError(file: path, "is a folder; --dataset names a dataset inside an HDF5 file: drop --dataset to read the folder's PNGs, or pass the HDF5 file")
            }
            return .folder
        }
        if let head = FileHandle(forReadingAtPath: path).map({ h -> Data in defer { try? h.close() }; return h.readData(ofLength: 8) }),
           head.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            throw StoreError(file: path, "is a single PNG; pass the folder that holds one PNG per image of the store")
        }
        if let d = o.dataset { return .plain(d) }
        let info = try PlainMapsDataset.describe(path: path)
        if info.format == nil {
            throw StoreError(file: path, "has no 'format' attribute, so unseg did not write it; to score another tool's maps pass --dataset NAME with its [N, H, W] dataset (the file holds "
                             + (info.datasets.isEmpty ? "no datasets" : info.datasets.joined(separator: ", ")) + ")")
        }
        return .unseg
    }

    static func plainDataset(path: String, name: String, store: FeatureStore, resize: MapResize) throws -> PlainMapsDataset {
        let d = try PlainMapsDataset(path: path, dataset: name)
        let l = store.layout
        if d.count != l.imageCount {
            throw StoreError(file: path, dataset: d.dataset, "has \(d.count) maps but the store \(store.path) has \(l.imageCount) images; one map per image, in the store's order (/names)")
        }
        if (d.height, d.width) != (l.imageHeight, l.imageWidth), resize == .none {
            throw StoreError(file: path, dataset: d.dataset, "maps are \(d.height)x\(d.width) but the store's labels are \(l.imageHeight)x\(l.imageWidth); pass --resize nearest (label maps) or --resize bilinear (soft maps) to resize them")
        }
        if d.height == 0 || d.width == 0 {
            throw StoreError(file: path, dataset: d.dataset, "maps are \(d.height)x\(d.width): empty")
        }
        return d
    }
}

/// Value conversions shared by the PNG and HDF5 readers.
enum LabelValues {
    /// Ids from integer samples: `255` (and `maxSample` of a 16-bit source, 65535) is no
    /// prediction; anything else must be in `0..<clusters`.
    static func ids<T: BinaryInteger>(_ v: [T], maxSample: Int, clusters k: Int, idOption: String, where place: () -> String) throws -> [UInt8] {
        var out = [UInt8](repeating: 255, count: v.count)
        var bad: (Int, Int)?
        var badCount = 0
        for j in 0..<v.count {
            let x = Int(v[j])
            if x == 255 || (maxSample == 65535 && x == 65535) { continue }
            if x < 0 || x >= k {
                badCount += 1
                if bad == nil { bad = (j, x) }
                continue
            }
            out[j] = UInt8(x)
        }
        if let (j, x) = bad {
            let what = x < 0 ? "negative id \(x)" : "id \(x)"
            throw StoreError(file: place(), "holds \(what) (pixel \(j); \(badCount) such pixels) but there are \(k) ids, 0..<\(k) (\(idOption)); 255 means no prediction")
        }
        return out
    }

    /// Resizes ids to the store's label size when asked (sizes were checked up front).
    static func resized(_ ids: [UInt8], height h: Int, width w: Int, toHeight H: Int, toWidth W: Int, resize: MapResize) -> [UInt8] {
        if (h, w) == (H, W) { return ids }
        return NearestResampler.resample(ids, height: h, width: w, toHeight: H, toWidth: W, mode: .halfPixel)
    }

    /// Soft values on 0...255 from integer grey levels: a map whose values are all 0 or 1 is a
    /// binary mask (1 -> 255); otherwise levels are scaled by 255 / `maxSample`.
    static func softFromIntegers(_ v: [Int32], maxSample: Int) -> [Float] {
        let top = v.max() ?? 0
        let scale: Float = top <= 1 ? 255 : 255 / Float(maxSample)
        return v.map { Float($0) * scale }
    }

    /// Quantises soft values on 0...255 to bytes (nearest), resizing first when the sizes differ.
    static func resizedSoft(_ soft: [Float], height h: Int, width w: Int, toHeight H: Int, toWidth W: Int, resize: MapResize) throws -> [UInt8] {
        func q(_ x: [Float]) -> [UInt8] { x.map { UInt8(min(max($0.rounded(), 0), 255)) } }
        if (h, w) == (H, W) { return q(soft) }
        switch resize {
        case .bilinear:
            return q(Resize.bilinear(soft, width: w, height: h, channels: 1, toWidth: W, toHeight: H))
        case .nearest, .none:
            return NearestResampler.resample(q(soft), height: h, width: w, toHeight: H, toWidth: W, mode: .halfPixel)
        }
    }
}

/// A folder of PNGs, one per store image, matched by name (see `PredictionNames`), headers read
/// and checked up front (size, kind) so that every problem is reported before any scoring.
final class PNGMapsFolder: Sendable {
    let root: String
    /// The folder the PNGs were read from (`root`, or `root/labels` for an export).
    let folder: String
    /// The store's names (for messages).
    let names: [String]
    let files: [String]
    let headers: [PNGHeader]
    /// The id count an unseg export's manifest declares.
    let manifestCount: Int?
    let detail: String

    init(path: String, store: FeatureStore, task: EvaluationTask, options o: ForeignMapsOptions, threads: Int) throws {
        root = path
        // An unseg export: its manifest says where the label PNGs are and how many ids they hold.
        var folder = path
        var count: Int?
        let manifest = (path as NSString).appendingPathComponent("manifest.json")
        var fromExport = false
        if let data = FileManager.default.contents(atPath: manifest),
           let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           obj["format"] as? String == "unseg.export" {
            guard task == .classes else {
                throw StoreError(file: path, "is an `unseg export` folder of label maps; --task \(task.rawValue) scores soft foreground maps (grey PNGs)")
            }
            folder = (path as NSString).appendingPathComponent("labels")
            count = (obj["count"] as? NSNumber)?.intValue
            fromExport = true
        }
        self.folder = folder
        manifestCount = count
        let l = store.layout
        let storeNames = try store.names()
        names = storeNames
        let listing = try PredictionNames.listPNGs(folder)
        let matched = try PredictionNames.match(storeNames: storeNames, files: listing, suffixes: o.suffixes,
                                                folder: folder, storePath: store.path)
        files = matched.map { (folder as NSString).appendingPathComponent($0) }
        let paths = files
        let headers = try Parallel.tryMap(paths.count, threads: threads) { i -> PNGHeader in
            do { return try PNG.readHeader(paths[i]) } catch let e as ImagingError {
                throw StoreError(file: paths[i], "image \(i) ('\(storeNames[i])'): \(e.description)")
            }
        }
        self.headers = headers
        // Kinds and sizes, every file at once: the first few offenders are named.
        func listFew(_ idx: [Int], _ what: (Int) -> String) -> String {
            idx.prefix(5).map(what).joined(separator: ", ") + (idx.count > 5 ? ", ... (\(idx.count) in all)" : "")
        }
        if task == .classes {
            let colour = headers.indices.filter { headers[$0].isColour }
            if !colour.isEmpty {
                throw StoreError(file: folder, "\(colour.count) of \(headers.count) PNGs are colour images without a palette: "
                                 + listFew(colour) { "\(matched[$0]) (\(headers[$0].kind))" }
                                 + "; label maps are grey (8- or 16-bit, the value is the id) or palette PNGs (the index is the id): map colours to ids first")
            }
        }
        let (H, W) = (l.imageHeight, l.imageWidth)
        let wrong = headers.indices.filter { (headers[$0].height, headers[$0].width) != (H, W) }
        if !wrong.isEmpty && o.resize == .none {
            throw StoreError(file: folder, "\(wrong.count) of \(headers.count) PNGs are not the store's label size \(H)x\(W) (height x width): "
                             + listFew(wrong) { "\(matched[$0]) (\(headers[$0].height)x\(headers[$0].width))" }
                             + "; pass --resize nearest (label maps) or --resize bilinear (soft maps) to resize them, or write them at the labels' size")
        }
        let groups = Dictionary(grouping: headers.map(\.kind), by: { $0 })
        let kinds = groups.count == 1 ? groups.keys.first! : groups.map { "\($0.key) x\($0.value.count)" }.sorted().joined(separator: ", ")
        detail = "PNG folder \(folder)\(fromExport ? " (an unseg export's labels/)" : "") (\(files.count) files, \(kinds)), matched to the store's /names by name (foreign: no provenance)"
    }

    /// Image `i`'s file and samples.
    func read(_ i: Int) throws -> (String, PNGSamples) {
        do { return (files[i], try PNG.readSamples(files[i], header: headers[i])) } catch let e as ImagingError {
            throw StoreError(file: files[i], "image \(i) ('\(names[i])'): \(e.description)")
        }
    }
}

/// Matching PNG files to a store's image names.
///
/// A file matches image `i` when its stem (the name without `.png`) equals
/// 1. the image's exported stem (`FileNames.stems` of `/names`: what `unseg export` writes), or
/// 2. after normalising both: dropping an image extension (`.jpg`, `.png`, ...) and one known
///    suffix (`_leftImg8bit`, `_gtFine_labelIds`, `_pred`, `_mask`, ... and `--suffix`); for
///    names with folders, the last component counts too (`frankfurt/x` matches `x.png`).
/// Files may sit in subfolders (Cityscapes' `city/` layout). Hidden files are skipped; any other
/// non-PNG file, an image with no file, a file with no image, or an image with two files is an error.
public enum PredictionNames {
    /// Suffixes dropped before matching (the datasets' and common tools' conventions).
    public static let knownSuffixes = [
        "_leftImg8bit", "_gtFine_labelTrainIds", "_gtFine_labelIds", "_gtFine_color", "_labelTrainIds", "_labelIds",
        "_predictions", "_prediction", "_pred", "_saliency", "_sal", "_mask", "_labels", "_label", "_seg", "_color",
    ]
    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "ppm"]

    /// Every PNG under `folder` (relative paths, sorted), skipping hidden entries. Errors: not a
    /// folder, unreadable, files that are not PNGs (named, the first few), no PNG at all.
    public static func listPNGs(_ folder: String) throws -> [String] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw StoreError(file: folder, "is not a folder; an unseg export keeps its label PNGs in labels/")
        }
        guard let walker = fm.enumerator(atPath: folder) else {
            throw StoreError(file: folder, "cannot list the folder; check its permissions")
        }
        var pngs: [String] = [], other: [String] = []
        while let rel = walker.nextObject() as? String {
            let last = (rel as NSString).lastPathComponent
            if last.hasPrefix(".") {
                if walker.fileAttributes?[.type] as? FileAttributeType == .typeDirectory { walker.skipDescendants() }
                continue
            }
            if walker.fileAttributes?[.type] as? FileAttributeType == .typeDirectory { continue }
            if (last as NSString).pathExtension.lowercased() == "png" { pngs.append(rel) } else { other.append(rel) }
        }
        if !other.isEmpty {
            other.sort()
            throw StoreError(file: folder, "holds \(other.count) file\(other.count == 1 ? "" : "s") that \(other.count == 1 ? "is" : "are") not PNG: "
                             + few(other) + "; a predictions folder holds one .png per image (in subfolders or not) and nothing else; move the others out")
        }
        if pngs.isEmpty {
            throw StoreError(file: folder, "holds no PNG files; write one PNG per image of the store (named after /names)")
        }
        return pngs.sorted()
    }

    /// Normalised key of a name: the last path component when `basename`, without an image
    /// extension and without one known suffix.
    static func key(_ name: String, suffixes: [String]) -> String {
        var s = name
        let ext = (s as NSString).pathExtension.lowercased()
        if imageExtensions.contains(ext) { s = (s as NSString).deletingPathExtension }
        for suf in suffixes where s.hasSuffix(suf) && s.count > suf.count {
            s.removeLast(suf.count)
            break
        }
        return s
    }

    /// For each store image, the file (an element of `files`) that holds its map.
    public static func match(storeNames: [String], files: [String], suffixes extra: [String] = [],
                             folder: String, storePath: String) throws -> [String] {
        let suffixes = (extra + knownSuffixes).sorted { $0.count > $1.count }
        let stems = FileNames.stems(storeNames)
        var exact: [String: Int] = [:]
        for (i, s) in stems.enumerated() { exact[s] = i }
        // Normalised keys; a key two images share is ambiguous and matches neither.
        var byKey: [String: Int] = [:], ambiguous = Set<String>()
        func add(_ k: String, _ i: Int) {
            if let j = byKey[k], j != i { ambiguous.insert(k) } else { byKey[k] = i }
        }
        for (i, n) in storeNames.enumerated() {
            add(key(stems[i], suffixes: suffixes), i)
            let base = (n as NSString).lastPathComponent
            if base != n { add(key(base, suffixes: suffixes), i) }
        }
        var owner = [[String]](repeating: [], count: storeNames.count)
        var extra: [String] = []
        for f in files {
            let stem = ((f as NSString).lastPathComponent as NSString).deletingPathExtension
            let relStem = (f as NSString).deletingPathExtension.replacingOccurrences(of: "/", with: "_")
            if let i = exact[stem] ?? exact[relStem] { owner[i].append(f); continue }
            let k = key(stem, suffixes: suffixes)
            if !ambiguous.contains(k), let i = byKey[k] { owner[i].append(f) } else { extra.append(f) }
        }
        let twice = owner.indices.filter { owner[$0].count > 1 }
        if !twice.isEmpty {
            throw StoreError(file: folder, "\(twice.count) image\(twice.count == 1 ? " has" : "s have") more than one PNG: "
                             + twice.prefix(5).map { "'\(storeNames[$0])': \(owner[$0].joined(separator: " and "))" }.joined(separator: "; ")
                             + (twice.count > 5 ? "; ..." : "") + "; keep one PNG per image")
        }
        let missing = owner.indices.filter { owner[$0].isEmpty }
        if !missing.isEmpty {
            throw StoreError(file: folder, "\(missing.count) of the store's \(storeNames.count) images \(missing.count == 1 ? "has" : "have") no PNG: "
                             + few(missing.map { storeNames[$0] })
                             + "; files are matched to \(storePath)'s /names by stem, with or without an extension and a suffix such as _leftImg8bit (`unseg help evaluate`; --suffix adds one)"
                             + (extra.isEmpty ? "" : "; unmatched PNGs: " + few(extra)))
        }
        if !extra.isEmpty {
            throw StoreError(file: folder, "\(extra.count) PNG\(extra.count == 1 ? "" : "s") match\(extra.count == 1 ? "es" : "") no image of \(storePath): "
                             + few(extra) + "; remove \(extra.count == 1 ? "it" : "them") or evaluate against the store the maps were made for")
        }
        return owner.map { $0[0] }
    }

    static func few(_ names: [String]) -> String {
        names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", ... (\(names.count) in all)" : "")
    }
}
