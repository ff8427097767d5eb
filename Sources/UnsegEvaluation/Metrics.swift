import Foundation
import UnsegCore

/// How clusters are matched to classes before scoring.
public enum MatchingMode: String, Codable, CaseIterable, Sendable {
    /// One-to-one, maximising the total matched pixel count (STEGO, PriMaPs). Default.
    case hungarian
    /// One-to-one, maximising the summed per-class IoU (MaskContrast, Deep Spectral Methods).
    case hungarianIoU = "hungarian-iou"
    /// Many-to-one: every cluster to its majority class. Not comparable with one-to-one
    /// numbers (it favours over-clustering); label results as such.
    case majority

    /// One line describing the mode, for reports.
    public var summary: String {
        switch self {
        case .hungarian: return "hungarian (one-to-one, maximises matched pixels)"
        case .hungarianIoU: return "hungarian-iou (one-to-one, maximises summed IoU)"
        case .majority: return "majority (MANY-TO-ONE: each cluster to its majority class; not comparable to one-to-one)"
        }
    }

    /// Looks a mode up by its name (`hungarian`, `hungarian-iou`, `majority`).
    ///
    /// Errors: `unknown-matching` listing the known names.
    public static func named(_ name: String) throws -> MatchingMode {
        if let m = MatchingMode(rawValue: name) { return m }
        throw EvaluationError("unknown-matching",
            "unknown matching mode '\(name)'; known: \(allCases.map(\.rawValue).joined(separator: ", "))")
    }
}

/// Scores of one evaluation, percentages as in papers (0...100).
///
/// JSON keys (exactly): `miou`, `accuracy`, `per_class_iou` (null for skipped classes),
/// `class_names`, `matching` (cluster -> class or -1), `pixels` (valid pixels),
/// `matching_mode`, `skipped_classes` (class indices), `per_class_precision`,
/// `per_class_recall` (null where undefined: no prediction / no ground truth).
public struct EvaluationResult: Codable, Equatable, Sendable {
    /// Mean IoU in percent over the classes present in ground truth or prediction.
    public var miou: Double
    /// Pixel accuracy in percent: matched true positives / valid pixels.
    public var accuracy: Double
    /// IoU per class in percent, nil for a skipped class (`[n]`).
    public var perClassIoU: [Double?]
    /// Class names (`[n]`).
    public var classNames: [String]
    /// Matched class of each cluster, -1 if unmatched (`[K]`).
    public var matching: [Int]
    /// Valid pixels (label in `0..<n`), including those without a prediction.
    public var pixels: Int64
    /// The matching used.
    public var matchingMode: MatchingMode
    /// Classes absent from both ground truth and prediction, left out of the mean.
    public var skippedClasses: [Int]
    /// Precision per class in percent, nil if nothing was predicted as the class (`[n]`).
    public var perClassPrecision: [Double?]
    /// Recall per class in percent, nil if the class has no ground truth (`[n]`).
    public var perClassRecall: [Double?]

    enum CodingKeys: String, CodingKey {
        case miou, accuracy
        case perClassIoU = "per_class_iou"
        case classNames = "class_names"
        case matching, pixels
        case matchingMode = "matching_mode"
        case skippedClasses = "skipped_classes"
        case perClassPrecision = "per_class_precision"
        case perClassRecall = "per_class_recall"
    }

    /// Number of classes averaged in `miou`.
    public var scoredClassCount: Int { classNames.count - skippedClasses.count }

    /// The result as JSON (sorted keys, so byte-identical for equal results).
    public func jsonData(pretty: Bool = true) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return try e.encode(self)
    }

    /// A plain-text report: matching, pixel count, per-class IoU / precision / recall,
    /// mIoU (with the skipped classes) and accuracy.
    public func table() -> String {
        func pct(_ x: Double?) -> String {
            guard let x else { return "-".leftPadded(7) }
            return String(format: "%7.2f", x)
        }
        let unmatched = matching.filter { $0 < 0 }.count
        var lines: [String] = []
        lines.append("matching: \(matchingMode.summary)")
        lines.append("clusters: \(matching.count) (\(unmatched) unmatched, their pixels count as errors); classes: \(classNames.count); pixels: \(pixels)")
        let w = max(5, classNames.map(\.count).max() ?? 5)
        lines.append("  # " + "class".padded(w) + " " + ["IoU", "Prec", "Recall"].map { $0.leftPadded(7) }.joined(separator: " "))
        for c in 0..<classNames.count {
            let idx = String(c).leftPadded(3)
            let note = skippedClasses.contains(c) ? "  (skipped: absent from GT and prediction)" : ""
            lines.append("\(idx) \(classNames[c].padded(w)) \(pct(perClassIoU[c])) \(pct(perClassPrecision[c])) \(pct(perClassRecall[c]))\(note)")
        }
        let skippedNames = skippedClasses.map { classNames[$0] }
        let skippedText = skippedNames.isEmpty ? "none skipped" : "skipped: " + skippedNames.joined(separator: ", ")
        lines.append(String(format: "mIoU %6.2f", miou) + "  (mean over \(scoredClassCount) of \(classNames.count) classes; \(skippedText))")
        lines.append(String(format: "Acc  %6.2f", accuracy))
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    func padded(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

/// Matching of clusters to classes and the metrics of the field (mIoU, accuracy).
public enum Evaluation {
    /// The class of each cluster (`[K]`, -1 = unmatched) under `mode`.
    ///
    /// - `hungarian`: maximises the sum of `confusion[k, c]` over matched pairs
    ///   (exact, `LinearAssignment`); `min(K, n)` pairs.
    /// - `hungarianIoU`: maximises the sum of the IoUs the matched pairs would have,
    ///   `IoU(k, c) = TP / (rowTotal_k + classTotal_c - TP)` with `TP = confusion[k, c]`
    ///   (0 when the denominator is 0).
    /// - `majority`: each cluster to the class it overlaps most (ties to the lower
    ///   class index); a cluster covering no valid pixel stays -1.
    /// Complexity O(K * n * min(K, n)) worst case. Deterministic.
    public static func match(_ confusion: ConfusionMatrix, mode: MatchingMode) throws -> [Int] {
        let k = confusion.clusterCount, n = confusion.classCount
        let counts = confusion.counts
        switch mode {
        case .hungarian:
            return try LinearAssignment.solve(cost: counts.map(Double.init), rows: k, cols: n, maximize: true).columnForRow
        case .hungarianIoU:
            let rowTotals = confusion.clusterTotals, colTotals = confusion.classTotals
            var w = [Double](repeating: 0, count: k * n)
            for i in 0..<k {
                for c in 0..<n {
                    let tp = counts[i * n + c]
                    let union = rowTotals[i] + colTotals[c] - tp
                    w[i * n + c] = union > 0 ? Double(tp) / Double(union) : 0
                }
            }
            return try LinearAssignment.solve(cost: w, rows: k, cols: n, maximize: true).columnForRow
        case .majority:
            return (0..<k).map { i in
                var best = -1
                var bestCount: Int64 = 0
                for c in 0..<n where counts[i * n + c] > bestCount {
                    best = c
                    bestCount = counts[i * n + c]
                }
                return best
            }
        }
    }

    /// Matches with `mode` and scores: the standard evaluation.
    ///
    /// `classNames` defaults to `class0, class1, ...`. Errors: `bad-count` if
    /// `classNames.count != n`, `no-valid-pixels` if nothing has a valid label.
    public static func evaluate(_ confusion: ConfusionMatrix, mode: MatchingMode = .hungarian,
                                classNames: [String]? = nil) throws -> EvaluationResult {
        try evaluate(confusion, matching: try match(confusion, mode: mode), mode: mode, classNames: classNames)
    }

    /// Scores a given matching (`[K]`, each entry a class in `0..<n` or -1).
    ///
    /// Per class c, with TP_c the pixels of clusters matched to c that are labelled c,
    /// P_c all valid pixels of clusters matched to c, G_c all pixels labelled c
    /// (including unassigned ones): IoU_c = TP_c / (P_c + G_c - TP_c), precision
    /// TP_c / P_c, recall TP_c / G_c. A class with P_c + G_c = 0 is skipped (absent
    /// from ground truth and prediction). Pixels of unmatched clusters and unassigned
    /// pixels are false negatives of their true class. Accuracy = sum TP_c / valid pixels.
    /// Errors: `bad-matching`, `bad-count`, `no-valid-pixels`.
    public static func evaluate(_ confusion: ConfusionMatrix, matching: [Int], mode: MatchingMode,
                                classNames: [String]? = nil) throws -> EvaluationResult {
        let k = confusion.clusterCount, n = confusion.classCount
        guard matching.count == k else {
            throw EvaluationError("bad-matching", "matching has \(matching.count) entries but the confusion matrix has \(k) clusters")
        }
        if let bad = matching.firstIndex(where: { $0 < -1 || $0 >= n }) {
            throw EvaluationError("bad-matching", "matching[\(bad)] = \(matching[bad]) is not a class in 0..<\(n) or -1")
        }
        let names = classNames ?? (0..<n).map { "class\($0)" }
        guard names.count == n else {
            throw EvaluationError("bad-count", "\(names.count) class names for \(n) classes; pass one name per class")
        }
        let valid = confusion.validPixels
        guard valid > 0 else {
            throw EvaluationError("no-valid-pixels",
                "no pixel has a valid label (0..<\(n)): \(confusion.ignoredPixels) ignored pixels; check the label protocol and class count")
        }
        let counts = confusion.counts
        let rowTotals = confusion.clusterTotals, gt = confusion.classTotals
        var tp = [Int64](repeating: 0, count: n)
        var predicted = [Int64](repeating: 0, count: n)
        for i in 0..<k where matching[i] >= 0 {
            let c = matching[i]
            tp[c] += counts[i * n + c]
            predicted[c] += rowTotals[i]
        }
        var iou = [Double?](repeating: nil, count: n)
        var precision = [Double?](repeating: nil, count: n)
        var recall = [Double?](repeating: nil, count: n)
        var skipped: [Int] = []
        var sum = 0.0
        for c in 0..<n {
            let union = predicted[c] + gt[c] - tp[c]
            if union > 0 {
                let v = 100 * Double(tp[c]) / Double(union)
                iou[c] = v
                sum += v
            } else {
                skipped.append(c)
            }
            if predicted[c] > 0 { precision[c] = 100 * Double(tp[c]) / Double(predicted[c]) }
            if gt[c] > 0 { recall[c] = 100 * Double(tp[c]) / Double(gt[c]) }
        }
        let scored = n - skipped.count  // >= 1 since valid > 0
        return EvaluationResult(
            miou: sum / Double(scored),
            accuracy: 100 * Double(tp.reduce(0, +)) / Double(valid),
            perClassIoU: iou, classNames: names, matching: matching, pixels: valid,
            matchingMode: mode, skippedClasses: skipped,
            perClassPrecision: precision, perClassRecall: recall)
    }

    /// Accumulates `imageCount` equal-size images stored back to back and evaluates them
    /// under `labelProtocol` (raw labels mapped through its LUT). See
    /// `ConfusionMatrix.accumulate(predictions:labels:imageCount:...)` for shapes.
    public static func evaluateImages(predictions: [UInt8], rawLabels: [UInt8], imageCount: Int,
                                      clusterCount: Int, labelProtocol: LabelProtocol,
                                      mode: MatchingMode = .hungarian, threads: Int) throws -> EvaluationResult {
        let conf = try ConfusionMatrix.accumulate(predictions: predictions, labels: rawLabels, imageCount: imageCount,
                                                  clusterCount: clusterCount, classCount: labelProtocol.classCount,
                                                  labelMap: labelProtocol.rawToClass, threads: threads)
        return try evaluate(conf, mode: mode, classNames: labelProtocol.classNames)
    }
}
