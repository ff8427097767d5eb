import Foundation
import UnsegEvaluation
import UnsegImaging
import UnsegLinAlg
import UnsegStore
import UnsegCore

/// What `unseg export` does, as a library call (see `ExportJob.run`).
public struct ExportOptions: Sendable {
    public var predictionsPath: String
    public var storePath: String
    /// Output directory (created if needed).
    public var outDir: String
    /// JSON written by `unseg evaluate --json`: its "matching" array maps cluster k to class
    /// `matching[k]` (-1 = unmatched -> 255). Without it the PNGs hold the file's ids.
    public var matchingFrom: String?
    /// Side-by-side pictures for this many images, spread evenly over the store.
    public var sample: Int
    public var threads: Int
    public var progress: ProgressSink?

    public init(predictionsPath: String, storePath: String, outDir: String, matchingFrom: String? = nil,
                sample: Int = 16, threads: Int = 1, progress: ProgressSink? = nil) {
        self.predictionsPath = predictionsPath; self.storePath = storePath; self.outDir = outDir
        self.matchingFrom = matchingFrom; self.sample = sample; self.threads = threads; self.progress = progress
    }
}

/// What `ExportJob.run` wrote (paths relative to `outDir`).
public struct ExportSummary: Sendable {
    public var outDir: String
    public var manifestPath: String
    public var labelFiles: [String]
    public var colorFiles: [String]
    public var sampleFiles: [String]
    /// "clusters" or "classes" (after matching).
    public var ids: String
}

/// `unseg export`: pseudo-labels as PNGs for training code and for people.
///
/// Layout of `outDir`:
/// - `labels/<name>.png`: 8-bit grayscale, pixel = id (cluster, or class with a matching), 255 = ignore;
/// - `color/<name>.png`: the same ids as an indexed (palette) PNG, protocol colours for classes;
/// - `samples/<name>.png`: image | prediction | ground truth, for `sample` images;
/// - `manifest.json`: what was written, the ids, the matching and the palette.
/// `<name>` comes from the store's `/names` with path separators replaced by `_` (duplicates get `_<index>`).
public enum ExportJob {
    public static func run(_ o: ExportOptions) throws -> ExportSummary {
        var inputs: [OutputGuard.Named] = [("--predictions", o.predictionsPath), ("--store", o.storePath)]
        if let m = o.matchingFrom { inputs.append(("--matching-from", m)) }
        try OutputGuard.check(outputs: [], inputs: inputs, folders: [("--out", o.outDir)])
        let store = try FeatureStore(path: o.storePath)
        let l = store.layout
        let preds = try PredictionsFile(path: o.predictionsPath, store: store)
        let count = preds.count
        let fileIDs = preds.ids.rawValue
        let proto: LabelProtocol? = store.metadata.labelProtocol.flatMap { try? LabelProtocol.named($0) }
        var lut = (0..<256).map { UInt8($0) }
        var ids = fileIDs
        var matching: [Int]?
        if let mf = o.matchingFrom {
            let classCount = proto?.classCount
            let m = try loadMatching(path: mf, clusterCount: count, classCount: classCount)
            for k in 0..<256 { lut[k] = k < m.count ? (m[k] >= 0 ? UInt8(m[k]) : 255) : 255 }
            lut[255] = 255
            ids = "classes"
            matching = m
        }
        let palette: Palette
        if ids == "classes", let p = proto {
            palette = Palette(colors: p.palette)
        } else {
            palette = Palette.distinct(count: max(count, 1))
        }
        let gtPalette = proto.map { p in Palette(colors: p.palette) } ?? palette

        let folder = try AtomicDirectory(path: o.outDir, option: "--out")
        for sub in ["labels", "color", "samples"] {
            try FileManager.default.createDirectory(atPath: folder.path(sub), withIntermediateDirectories: true)
        }
        let originalNames = try store.names()
        let names = FileNames.stems(originalNames)
        let n = l.imageCount
        let sampleCount = min(max(o.sample, 0), n)
        let sampled = Set((0..<sampleCount).map { $0 * n / sampleCount })
        let chunk = max(8, 4 * o.threads)
        var start = 0
        while start < n {
            let end = min(n, start + chunk)
            // Reads stay on this thread (HDF5 is serialised anyway); encoding and writing run in parallel.
            var items: [(Int, [UInt8], [UInt8]?, [UInt8]?)] = []
            for i in start..<end {
                let p = try preds.read(i).map { lut[Int($0)] }
                let want = sampled.contains(i)
                items.append((i, p, want && l.hasImages ? try store.image(i) : nil,
                              want && l.hasLabels ? try store.labels(i) : nil))
            }
            let batch = items, idKind = ids, outDir = folder.temporaryPath
            _ = try Parallel.tryMap(batch.count, threads: o.threads) { j in
                let (i, p, image, gt) = batch[j]
                let map = LabelMap(width: l.imageWidth, height: l.imageHeight, pixels: p)
                try PNG.write(map, to: outDir + "/labels/\(names[i]).png")
                try PNG.writeIndexed(map, palette: palette, to: outDir + "/color/\(names[i]).png")
                if sampled.contains(i) {
                    var panels: [RGBImage] = []
                    var titles: [String] = []
                    if let img = image {
                        panels.append(RGBImage(width: l.imageWidth, height: l.imageHeight, pixels: img)); titles.append("image")
                    }
                    panels.append(palette.colorize(map)); titles.append(idKind == "classes" ? "prediction" : "clusters")
                    if let g = gt {
                        panels.append(gtPalette.colorize(LabelMap(width: l.imageWidth, height: l.imageHeight, pixels: g)))
                        titles.append("ground truth")
                    }
                    // Small images are enlarged (nearest, integer factor) so the panels stay legible.
                    let f = max(1, 160 / max(l.imageWidth, 1))
                    if f > 1 {
                        panels = panels.map { Resize.nearest($0, width: $0.width * f, height: $0.height * f) }
                    }
                    let pic = Composite.sideBySide(panels, titles: titles, titleScale: l.imageWidth * f >= 160 ? 2 : 1)
                    try PNG.write(pic, to: outDir + "/samples/\(names[i]).png")
                }
                return 0
            }
            start = end
            o.progress?.update(done: end, total: n, note: nil)
        }
        o.progress?.finish()

        let labelFiles = names.map { "labels/\($0).png" }
        let colorFiles = names.map { "color/\($0).png" }
        let sampleFiles = sampled.sorted().map { "samples/\(names[$0]).png" }
        var manifest: [String: Any] = [
            "format": "unseg.export", "version": 1,
            "store": o.storePath, "predictions": o.predictionsPath,
            "ids": ids, "count": ids == "classes" ? (proto?.classCount ?? count) : count, "ignore": 255,
            "image_size": [l.imageHeight, l.imageWidth],
            "palette": palette.colors.map { [Int($0.r), Int($0.g), Int($0.b)] },
            "images": (0..<n).map { i -> [String: Any] in
                var e: [String: Any] = ["index": i, "name": originalNames[i], "stem": names[i],
                                        "labels": labelFiles[i], "color": colorFiles[i]]
                if sampled.contains(i) { e["sample"] = "samples/\(names[i]).png" }
                return e
            },
        ]
        // What a reader needs to score or train on the labels: the protocol (null when the store names
        // none unseg knows), the matching (null without --matching-from) and how it was made.
        manifest["protocol"] = proto.map { $0.name as Any } ?? NSNull()
        if let p = proto { manifest["class_names"] = p.classNames }
        manifest["matching"] = matching.map { $0 as Any } ?? NSNull()
        if let m = o.matchingFrom {
            manifest["matching_from"] = m
            if let d = try? Data(contentsOf: URL(fileURLWithPath: m)),
               let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any], let mode = obj["matching_mode"] as? String {
                manifest["matching_mode"] = mode
            }
        }
        manifest["layout"] = "labels/<stem>.png: 8-bit grey, the pixel is the id (\(ids)), 255 = ignore; color/: the same ids as palette PNGs; "
            + "`unseg evaluate --store STORE --predictions \(o.outDir)` reads labels/ back (matched by name)"
        let data = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: URL(fileURLWithPath: folder.path("manifest.json")))
        try folder.commit()
        let manifestPath = o.outDir + "/manifest.json"
        return ExportSummary(outDir: o.outDir, manifestPath: manifestPath, labelFiles: labelFiles,
                             colorFiles: colorFiles, sampleFiles: sampleFiles, ids: ids)
    }

    /// The cluster -> class matching from `unseg evaluate --json` output (`"matching": [K]`, -1 = unmatched).
    /// Errors: unreadable file, no "matching" array, a length other than `clusterCount`, ids out of range.
    public static func loadMatching(path: String, clusterCount: Int, classCount: Int?) throws -> [Int] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw StoreError(file: path, "cannot read the matching JSON (\(error.localizedDescription)); write it with `unseg evaluate --json`")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let arr = obj["matching"] as? [Any] else {
            throw StoreError(file: path, "has no \"matching\" array; pass the JSON written by `unseg evaluate --json`")
        }
        let m = arr.compactMap { ($0 as? NSNumber)?.intValue }
        guard m.count == arr.count, m.count == clusterCount else {
            throw StoreError(file: path, "\"matching\" has \(arr.count) entries but the predictions have \(clusterCount) clusters; use the JSON from evaluating these predictions")
        }
        let hi = classCount ?? 255
        if let bad = m.first(where: { $0 < -1 || $0 >= hi }) {
            throw StoreError(file: path, "\"matching\" holds class \(bad); classes must be in 0..<\(hi) or -1 (unmatched)")
        }
        return m
    }
}
