import Foundation
import UnsegCore

/// IoU by object size (the Two Tricks paper's analysis of small objects): every ground-truth
/// segment (a 4-connected region of one class) falls in a bin of its area as a fraction of the
/// image; its IoU is `|S ∩ P| / (|S| + |(P ∩ box(S)) ∖ L|)`, with `P` the pixels predicted as its
/// class after the matching, `box(S)` its bounding box and `L` the pixels labelled that class (in
/// any segment) or ignored: false positives are counted near the segment, so a class predicted
/// elsewhere in the image does not lower a small object's score, and a neighbouring segment of
/// the same class is not one. Labels at or above the class count are ignored, as the confusion
/// matrix does. A bin's score is the mean over its segments.
public struct SegmentSizeIoU: Codable, Equatable, Sendable {
    /// Upper edges of the bins as fractions of the image area; the last bin is open.
    public static let edges: [Double] = [0.001, 0.005, 0.02, 0.1]
    /// Bin names, e.g. "< 0.1%", "0.1-0.5%", ..., ">= 10%".
    public static let binNames: [String] = ["< 0.1%", "0.1-0.5%", "0.5-2%", "2-10%", ">= 10%"]
    /// Segments below this fraction of the image are "small" (`smallIoU`): the first two bins.
    public static let smallEdge = 0.005

    /// Segments per bin.
    public var segments: [Int64]
    /// Mean segment IoU per bin in percent, nil for an empty bin.
    public var meanIoU: [Double?]
    /// Mean IoU in percent over the segments under `smallEdge` of the image, nil without any.
    public var smallIoU: Double?

    enum CodingKeys: String, CodingKey { case segments, meanIoU = "mean_iou", smallIoU = "small_iou" }

    /// Fixed-point IoU units: sums are exact integers, so any order of images or processes gives the same bits.
    static let unit: Int64 = 1 << 32

    /// Per-bin counts and fixed-point IoU sums `[counts..., sums...]`, added over images and summed exactly.
    public struct Accumulator: Sendable {
        public var values: [Int64]
        public init() { values = [Int64](repeating: 0, count: 2 * SegmentSizeIoU.binNames.count) }
        public init(values: [Int64]) { self.values = values }

        /// Adds one image: `classes` `[H*W]` = predicted class per pixel after matching (255: none),
        /// `labels` `[H*W]` class ids (255 and ids >= `classCount` = ignore). O(H W) per class
        /// present (one summed-area table of its false positives; each segment's box is 4 lookups).
        public mutating func add(classes: [UInt8], labels raw: [UInt8], height: Int, width: Int, classCount: Int) {
            precondition(classes.count == height * width && raw.count == height * width, "segment sizes: map sizes differ")
            let n = height * width
            let labels = raw.map { Int($0) < classCount ? $0 : 255 }
            var tables: [UInt8: [Int32]] = [:]
            for s in SegmentSizeIoU.segments(labels: labels, height: height, width: width) {
                let c = s.cls
                if tables[c] == nil { tables[c] = SegmentSizeIoU.falsePositiveTable(cls: c, classes: classes, labels: labels, height: height, width: width) }
                let fp = s.falsePositives(table: tables[c]!, width: width)
                var inter = 0
                for p in s.pixels where classes[p] == c { inter += 1 }
                let union = s.pixels.count + fp
                let frac = Double(s.pixels.count) / Double(n)
                let bin = SegmentSizeIoU.edges.firstIndex { frac < $0 } ?? SegmentSizeIoU.edges.count
                values[bin] += 1
                values[SegmentSizeIoU.binNames.count + bin] += Int64(inter) * SegmentSizeIoU.unit / Int64(union)
            }
        }
    }

    /// The scores of summed accumulator values.
    public init(_ a: Accumulator) {
        let b = SegmentSizeIoU.binNames.count
        segments = Array(a.values[0..<b])
        meanIoU = (0..<b).map { i in a.values[i] > 0 ? 100 * Double(a.values[b + i]) / Double(SegmentSizeIoU.unit) / Double(a.values[i]) : nil }
        let small = SegmentSizeIoU.edges.firstIndex(of: SegmentSizeIoU.smallEdge)! + 1
        let n = a.values[0..<small].reduce(0, +), sum = a.values[b..<(b + small)].reduce(0, +)
        smallIoU = n > 0 ? 100 * Double(sum) / Double(SegmentSizeIoU.unit) / Double(n) : nil
    }

    /// A table, one row per bin.
    public func table() -> String {
        var s = "object size (of image)  segments  mean IoU\n"
        for (i, name) in SegmentSizeIoU.binNames.enumerated() {
            s += name.padding(toLength: 23, withPad: " ", startingAt: 0) + String(format: "  %8lld  ", segments[i])
                + (meanIoU[i].map { String(format: "%8.1f", $0) } ?? "       -") + "\n"
        }
        s += "small (< 0.5%)".padding(toLength: 23, withPad: " ", startingAt: 0)
            + String(format: "  %8lld  ", segments[0] + segments[1]) + (smallIoU.map { String(format: "%8.1f", $0) } ?? "       -") + "\n"
        return s
    }

    /// One ground-truth segment: its class, its pixels and bounding box.
    struct Segment {
        var cls: UInt8
        var pixels: [Int]
        var x0: Int, y0: Int, x1: Int, y1: Int   // inclusive

        /// Pixels of the bounding box predicted as the class whose label is another class (not
        /// ignore), from the class's summed-area table (`falsePositiveTable`).
        func falsePositives(table t: [Int32], width: Int) -> Int {
            let s = width + 1
            return Int(t[(y1 + 1) * s + x1 + 1] - t[y0 * s + x1 + 1] - t[(y1 + 1) * s + x0] + t[y0 * s + x0])
        }
    }

    /// Summed-area table `[(H+1) * (W+1)]` of the pixels predicted `cls` whose label is another
    /// class (not ignore).
    static func falsePositiveTable(cls: UInt8, classes: [UInt8], labels: [UInt8], height: Int, width: Int) -> [Int32] {
        let s = width + 1
        var t = [Int32](repeating: 0, count: (height + 1) * s)
        for y in 0..<height {
            var run: Int32 = 0
            for x in 0..<width {
                let i = y * width + x
                if classes[i] == cls && labels[i] != cls && labels[i] != 255 { run += 1 }
                t[(y + 1) * s + x + 1] = t[y * s + x + 1] + run
            }
        }
        return t
    }

    /// The 4-connected same-class regions of `labels` (ignore excluded), in raster order of their first pixel.
    static func segments(labels: [UInt8], height: Int, width: Int) -> [Segment] {
        var seen = [Bool](repeating: false, count: labels.count)
        var out: [Segment] = []
        var stack: [Int] = []
        for start in 0..<labels.count where !seen[start] && labels[start] != 255 {
            let c = labels[start]
            var seg = Segment(cls: c, pixels: [], x0: width, y0: height, x1: 0, y1: 0)
            seen[start] = true
            stack.append(start)
            while let p = stack.popLast() {
                seg.pixels.append(p)
                let y = p / width, x = p % width
                seg.x0 = min(seg.x0, x); seg.x1 = max(seg.x1, x); seg.y0 = min(seg.y0, y); seg.y1 = max(seg.y1, y)
                if x > 0, !seen[p - 1], labels[p - 1] == c { seen[p - 1] = true; stack.append(p - 1) }
                if x < width - 1, !seen[p + 1], labels[p + 1] == c { seen[p + 1] = true; stack.append(p + 1) }
                if y > 0, !seen[p - width], labels[p - width] == c { seen[p - width] = true; stack.append(p - width) }
                if y < height - 1, !seen[p + width], labels[p + width] == c { seen[p + width] = true; stack.append(p + width) }
            }
            out.append(seg)
        }
        return out
    }
}
