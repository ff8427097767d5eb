import Foundation
import UnsegHDF5
import UnsegCore
import UnsegLinAlg

/// A human-readable description of an HDF5 file written or read by unseg.
///
/// For a feature store (a file with `/features`, or whose `format` says so) the store is
/// validated first (errors as `StoreError`), then: root attributes, every dataset with
/// shape, dtype, chunking, filters and size on disk, and a summary of the per-cell
/// feature norms of the first `sampleImages` images. Other unseg outputs (proposals,
/// predictions, checkpoints) are listed the same way without the store checks.
public enum Inspect {
    public static func report(path: String, sampleImages: Int = 4) throws -> String {
        let file: HDF5File
        do { file = try HDF5File.open(path) } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        let format = file.hasAttribute("format") ? (try? file.stringAttribute("format")) : nil
        let isStore = format == nil || format == StoreMetadata.format
        var store: FeatureStore?
        if isStore { store = try FeatureStore(path: path) }

        var out = "\(path)\n"
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        out += "  kind: \(isStore ? "feature store" : (format ?? "HDF5 file"))"
        if let s = size { out += ", \(formatBytes(s)) on disk" }
        out += "\n\nattributes:\n"
        let names = try file.attributeNames()
        let width = names.map(\.count).max() ?? 0
        for name in names {
            out += "  \(name.padding(toLength: width, withPad: " ", startingAt: 0)) \(oneLine(try file.attribute(name), limit: 160))\n"
        }
        out += "\ndatasets:\n"
        out += try listDatasets(file, prefix: "")
        if let s = store {
            let l = s.layout
            out += "\nlayout: \(l.imageCount) images, \(l.gridHeight)x\(l.gridWidth) cells x \(l.channels) channels (\(l.featureType))"
            out += ", images \(l.imageHeight)x\(l.imageWidth), patch \(s.metadata.patchSize)\n"
            out += "  images: \(l.hasImages ? "yes" : "no"), labels: \(l.hasLabels ? "yes (\(s.metadata.labelIDs.rawValue) ids)" : "no"), names: \(l.hasNames ? "yes" : "no")"
            out += ", flipped features: \(l.hasFlippedFeatures ? "yes" : "no"), augmented views: \(l.viewCount), crop views: \(l.cropCount), boxes: \(l.boxCount)\n"
            if l.backboneChannels > 0 {
                let k = (try? s.peerClusters())??.rows
                out += "  a peer's store: /features is the \(s.metadata.backbone) code; masks from /features_backbone (\(l.backboneChannels) channels)"
                    + (k.map { "; /peer_clusters: \($0) centroids (unseg fit --init-from-peer)" } ?? "") + "\n"
            }
            let n = min(sampleImages, l.imageCount)
            if n > 0 {
                out += "\nfeature norms (per cell, L2) of the first \(n) image\(n == 1 ? "" : "s"):\n"
                out += "  image        min       mean        max   zero cells\n"
                for i in 0..<n {
                    let norms = try s.features(i).rowNorms()
                    let mean = norms.reduce(0, +) / Float(max(norms.count, 1))
                    let zeros = norms.filter { $0 == 0 }.count
                    out += String(format: "  %5d %10.3f %10.3f %10.3f %12d\n", i, norms.min() ?? 0, mean, norms.max() ?? 0, zeros)
                }
                if l.hasLabels {
                    var counts = [Int](repeating: 0, count: 256)
                    for i in 0..<n { for v in try s.labels(i) { counts[Int(v)] += 1 } }
                    let total = counts.reduce(0, +)
                    let present = (0..<255).filter { counts[$0] > 0 }.count
                    out += String(format: "\nlabels of those images: %d classes present, %.1f%% ignore (255)\n",
                                  present, 100 * Double(counts[255]) / Double(max(total, 1)))
                }
            }
        }
        return out
    }

    static func listDatasets(_ loc: HDF5Location, prefix: String) throws -> String {
        var out = ""
        let names = try loc.memberNames()
        let width = max(14, (names.map { prefix.count + 1 + $0.count }.max() ?? 0) + 1)
        for name in names {
            let path = prefix + "/" + name
            if loc.isDataset(name) {
                let d = try loc.dataset(name)
                var line = "  \(path.padding(toLength: max(width, path.count + 1), withPad: " ", startingAt: 0)) \(d.elementType)  \(d.shape)"
                if let c = d.chunkShape { line += "  chunks \(c)" } else { line += "  contiguous" }
                if !d.filters.isEmpty { line += "  " + d.filters.joined(separator: "+") }
                line += "  \(formatBytes(d.storageSize))"
                out += line + "\n"
                for a in try d.attributeNames() {
                    out += "      @\(a) = \(oneLine(try d.attribute(a), limit: 120))\n"
                }
            } else {
                let g = try loc.group(name)
                out += "  \(path)/ (group)\n"
                for a in try g.attributeNames() {
                    out += "      @\(a) = \(oneLine(try g.attribute(a), limit: 120))\n"
                }
                out += try listDatasets(g, prefix: path)
            }
        }
        return out
    }

    /// An attribute value on one line: multi-line text (a recipe) shows its first line and the
    /// line count; long values are cut with "...".
    static func oneLine(_ v: HDF5AttributeValue, limit: Int) -> String {
        var text = v.description
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.count > 1 { text = String(lines[0]) + " ... (\(lines.count) lines)" }
        if text.count > limit { text = String(text.prefix(limit - 3)) + "..." }
        return text
    }

    static func formatBytes(_ b: Int) -> String {
        let d = Double(b)
        if b >= 1 << 30 { return String(format: "%.2f GiB", d / Double(1 << 30)) }
        if b >= 1 << 20 { return String(format: "%.1f MiB", d / Double(1 << 20)) }
        if b >= 1 << 10 { return String(format: "%.1f KiB", d / Double(1 << 10)) }
        return "\(b) B"
    }
}
