import Foundation
import UnsegStore
import UnsegEvaluation
import UnsegImaging

/// Writes an evaluation as files people look at: `report.md` (the same numbers as the
/// table and JSON), `confusion.png` (row-normalised class x class heat map after
/// matching, with an "unmatched" column for clusters no class was matched to) and
/// `per_class_iou.png` (bar chart with the mean line).
public enum EvaluationReportWriter {
    /// Class x (class + unmatched) pixel counts after applying the matching.
    public static func matchedConfusion(_ report: EvaluationReport) -> (matrix: [[Double]], columns: [String]) {
        let c = report.confusion
        let n = c.classCount
        let hasUnmatched = report.result.matching.contains(-1) || c.unassignedPixels > 0
        var m = [[Double]](repeating: [Double](repeating: 0, count: n + (hasUnmatched ? 1 : 0)), count: n)
        for k in 0..<c.clusterCount {
            let target = report.result.matching[k]
            for t in 0..<n {
                let v = Double(c[k, t])
                if v == 0 { continue }
                if target >= 0 { m[t][target] += v } else { m[t][n] += v }
            }
        }
        if hasUnmatched {
            let un = c.unassignedCounts
            for t in 0..<n { m[t][n] += Double(un[t]) }
        }
        return (m, report.result.classNames + (hasUnmatched ? ["(unmatched)"] : []))
    }

    /// Writes the report files into the folder `directory`, built under a temporary name and
    /// renamed when complete (an earlier unseg report there is replaced). Returns the final paths.
    @discardableResult
    public static func write(_ report: EvaluationReport, to directory: String) throws -> [String] {
        let folder = try AtomicDirectory(path: directory, option: "--report")
        let tmp = folder.temporaryPath
        let r = report.result
        let (matrix, columns) = matchedConfusion(report)
        // Rows of classes absent from the ground truth are all zero: keep them (they read as empty rows).
        let heat = try Charts.heatmap(matrix, rowNames: r.classNames, columnNames: columns,
                                      title: "Confusion (row-normalised), \(r.matchingMode.rawValue) matching",
                                      normalizeRows: true, rowAxisLabel: "ground truth", columnAxisLabel: "predicted (matched)")
        let heatPath = tmp + "/confusion.png"
        try PNG.write(heat, to: heatPath)
        let scored = r.perClassIoU.enumerated().compactMap { i, v in v.map { (i, $0) } }
        let palette = report.labelProtocol.palette
        let bars = Charts.barChart(values: scored.map { $0.1 }, names: scored.map { r.classNames[$0.0] },
                                   title: String(format: "Per-class IoU, mIoU %.1f%%", r.miou), axisLabel: "IoU (%)",
                                   maxValue: 100, showMean: true, colors: scored.map { palette[$0.0] })
        let barPath = tmp + "/per_class_iou.png"
        try PNG.write(bars, to: barPath)
        var md = "# Evaluation\n\n"
        md += "- store: `\(report.storePath)` (\(report.imageCount) images)\n"
        md += "- predictions: `\(report.predictionsPath)`: \(report.source.detail)\n"
        md += "- protocol: `\(report.labelProtocol.name)` (\(report.labelProtocol.classCount) classes)\n"
        md += "- matching: `\(r.matchingMode.rawValue)`: \(r.matchingMode.summary)\n"
        md += "- pixels evaluated: \(r.pixels)\n\n"
        md += String(format: "| metric | value |\n|---|---|\n| mIoU | %.2f |\n| pixel accuracy | %.2f |\n\n", r.miou, r.accuracy)
        md += "| class | IoU | precision | recall |\n|---|---|---|---|\n"
        func pct(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "skipped" }
        for (i, name) in r.classNames.enumerated() {
            md += "| \(name) | \(pct(r.perClassIoU[i])) | \(pct(r.perClassPrecision[i])) | \(pct(r.perClassRecall[i])) |\n"
        }
        if !r.skippedClasses.isEmpty {
            md += "\nSkipped (absent from ground truth and prediction): " + r.skippedClasses.map { r.classNames[$0] }.joined(separator: ", ") + "\n"
        }
        var pictures = ["report.md", "confusion.png", "per_class_iou.png"]
        if let b = report.bySize {
            let bins = SegmentSizeIoU.binNames.indices.filter { b.meanIoU[$0] != nil }
            let chart = Charts.barChart(values: bins.map { b.meanIoU[$0]! }, names: bins.map { "\(SegmentSizeIoU.binNames[$0]) (\(b.segments[$0]))" },
                                        title: "IoU by object size (segments), small \(b.smallIoU.map { String(format: "%.1f%%", $0) } ?? "-")",
                                        axisLabel: "mean segment IoU (%)", maxValue: 100, showMean: false)
            try PNG.write(chart, to: tmp + "/iou_by_size.png")
            pictures.append("iou_by_size.png")
            md += "\n## IoU by object size\n\nEach ground-truth segment (a 4-connected region of one class) is binned by its area as a share of the image; its IoU is |S ∩ P| / (|S| + |(P ∩ box(S)) ∖ L|), P the pixels predicted as its class after the matching, box(S) its bounding box, L the pixels labelled that class or ignored. A bin's score is the mean over its segments.\n\n"
            md += "| object size (of image) | segments | mean IoU |\n|---|---|---|\n"
            for (i, name) in SegmentSizeIoU.binNames.enumerated() {
                md += "| \(name) | \(b.segments[i]) | \(b.meanIoU[i].map { String(format: "%.2f", $0) } ?? "-") |\n"
            }
            md += "| small (< 0.5%) | \(b.segments[0] + b.segments[1]) | \(b.smallIoU.map { String(format: "%.2f", $0) } ?? "-") |\n"
        }
        md += "\nCluster -> class: " + r.matching.enumerated().map { k, c in "\(k)->\(c >= 0 ? r.classNames[c] : "none")" }.joined(separator: ", ") + "\n"
        md += "\n![confusion](confusion.png)\n\n![per-class IoU](per_class_iou.png)\n"
        if report.bySize != nil { md += "\n![IoU by object size](iou_by_size.png)\n" }
        try Data(md.utf8).write(to: URL(fileURLWithPath: tmp + "/report.md"))
        try folder.commit()
        return pictures.map { directory + "/" + $0 }
    }
}
