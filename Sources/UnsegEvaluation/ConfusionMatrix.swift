import UnsegLinAlg

/// A `[clusterCount x classCount]` confusion matrix of pixel counts (Int64), accumulated
/// image by image, plus an "unassigned" row and an ignored-pixel counter.
///
/// Rows are predicted cluster ids, columns ground-truth classes.
///
/// - Labels: a label `l` with `l < classCount` is valid; 255 (ignore) and any other
///   `l >= classCount` are left out of every metric (counted in `ignoredPixels` only).
/// - Predictions: a cluster id `p < clusterCount` is a prediction; 255 and any other
///   `p >= clusterCount` mean "no prediction". A valid-label pixel without a prediction
///   is kept in the extra **unassigned row** (`unassignedCounts`): it counts in the
///   class's ground truth (so as a false negative) and in the valid pixels (so against
///   accuracy), but can never be matched to a class. So missing predictions are errors,
///   never silently dropped.
///
/// Storage: one flat `[(clusterCount + 1) x (classCount + 1)]` Int64 buffer, the last
/// row being "unassigned" and the last column "ignored", so the per-pixel update is
/// two table look-ups and one increment with no branch and no bounds check.
///
/// Merging (`merge`, `+`) adds counts, so matrices filled in parallel (per image or per
/// thread) and summed give exactly the single-pass result. `clusterCount` and
/// `classCount` are each in `1...255` (ids are UInt8 and 255 is reserved).
public struct ConfusionMatrix: Equatable, Sendable {
    /// Number of clusters K (rows; cluster ids `0..<K`).
    public let clusterCount: Int
    /// Number of ground-truth classes n (columns; label ids `0..<n`).
    public let classCount: Int
    /// `[(K + 1) x (n + 1)]` row-major counts; row K = unassigned, column n = ignored.
    var cells: [Int64]

    var stride: Int { classCount + 1 }

    /// An empty matrix for `clusterCount` clusters and `classCount` classes.
    ///
    /// Errors: `bad-count` unless both are in `1...255`.
    public init(clusterCount: Int, classCount: Int) throws {
        guard (1...255).contains(clusterCount) else {
            throw EvaluationError("bad-count",
                "confusion matrix: clusterCount=\(clusterCount) must be in 1...255 (predictions are UInt8 and 255 means no prediction)")
        }
        guard (1...255).contains(classCount) else {
            throw EvaluationError("bad-count",
                "confusion matrix: classCount=\(classCount) must be in 1...255 (labels are UInt8 and 255 means ignore)")
        }
        self.clusterCount = clusterCount
        self.classCount = classCount
        cells = [Int64](repeating: 0, count: (clusterCount + 1) * (classCount + 1))
    }

    /// A matrix from explicit counts `[K][n]`, an optional unassigned row `[n]`, and
    /// an optional ignored-pixel count (for tests and for reloading saved counts).
    ///
    /// Errors: `bad-count` for ragged rows, a wrong unassigned length, negative counts,
    /// or K, n outside `1...255`.
    public init(counts: [[Int64]], unassigned: [Int64]? = nil, ignored: Int64 = 0) throws {
        let k = counts.count
        let n = counts.first?.count ?? 0
        try self.init(clusterCount: k, classCount: n)
        for (i, row) in counts.enumerated() {
            guard row.count == n else {
                throw EvaluationError("bad-count", "confusion matrix: row \(i) has \(row.count) entries but row 0 has \(n)")
            }
            for (j, v) in row.enumerated() {
                guard v >= 0 else { throw EvaluationError("bad-count", "confusion matrix: counts[\(i)][\(j)] = \(v) is negative") }
                cells[i * stride + j] = v
            }
        }
        if let u = unassigned {
            guard u.count == n else {
                throw EvaluationError("bad-count", "confusion matrix: unassigned row has \(u.count) entries but there are \(n) classes")
            }
            for (j, v) in u.enumerated() {
                guard v >= 0 else { throw EvaluationError("bad-count", "confusion matrix: unassigned[\(j)] = \(v) is negative") }
                cells[k * stride + j] = v
            }
        }
        guard ignored >= 0 else { throw EvaluationError("bad-count", "confusion matrix: ignored = \(ignored) is negative") }
        cells[k * stride + n] = ignored
    }

    /// The matrix whose every count (unassigned and ignored included) is `reduce(counts)`: e.g.
    /// the sum over the processes of an MPI job (integers, so exact in any order).
    public func summed(by reduce: ([Int64]) throws -> [Int64]) rethrows -> ConfusionMatrix {
        var m = self
        let r = try reduce(cells)
        precondition(r.count == cells.count, "summed counts: \(r.count) for \(cells.count)")
        m.cells = r
        return m
    }

    /// Pixels predicted as `cluster` whose label is `classIndex`.
    public subscript(cluster: Int, classIndex: Int) -> Int64 {
        precondition(cluster >= 0 && cluster < clusterCount && classIndex >= 0 && classIndex < classCount,
                     "confusion index (\(cluster), \(classIndex)) outside [\(clusterCount) x \(classCount)]")
        return cells[cluster * stride + classIndex]
    }

    /// The `[K x n]` counts, row-major (cluster-major).
    public var counts: [Int64] {
        var out = [Int64](repeating: 0, count: clusterCount * classCount)
        for k in 0..<clusterCount {
            for c in 0..<classCount { out[k * classCount + c] = cells[k * stride + c] }
        }
        return out
    }

    /// Valid-label pixels with no prediction, per class (`[n]`).
    public var unassignedCounts: [Int64] {
        (0..<classCount).map { cells[clusterCount * stride + $0] }
    }

    /// Valid-label pixels predicted as each cluster (`[K]`, row sums).
    public var clusterTotals: [Int64] {
        (0..<clusterCount).map { k in
            var s: Int64 = 0
            for c in 0..<classCount { s += cells[k * stride + c] }
            return s
        }
    }

    /// Ground-truth pixels of each class, including unassigned ones (`[n]`, column sums).
    public var classTotals: [Int64] {
        (0..<classCount).map { c in
            var s: Int64 = 0
            for k in 0...clusterCount { s += cells[k * stride + c] }
            return s
        }
    }

    /// Pixels with a valid label (the denominator of pixel accuracy).
    public var validPixels: Int64 { classTotals.reduce(0, +) }

    /// Valid-label pixels without a prediction.
    public var unassignedPixels: Int64 { unassignedCounts.reduce(0, +) }

    /// Pixels left out because their label is 255 or `>= classCount`.
    public var ignoredPixels: Int64 {
        var s: Int64 = 0
        for k in 0...clusterCount { s += cells[k * stride + classCount] }
        return s
    }

    /// Adds one image (or any batch of pixels): `predictions[t]` and `labels[t]` for
    /// each pixel `t` (`[pixelCount]` UInt8 each, same length).
    ///
    /// `labelMap`, if given, is a 256-entry look-up table applied to the raw labels
    /// first (e.g. `LabelProtocol.rawToClass`), fused into the same table at no cost.
    /// Complexity O(pixelCount + 256), no allocation beyond two 256-entry tables.
    /// Errors: `length-mismatch` if the lengths differ, `bad-label-map` if `labelMap`
    /// does not have 256 entries.
    public mutating func accumulate(predictions: UnsafeBufferPointer<UInt8>, labels: UnsafeBufferPointer<UInt8>,
                                    labelMap: [UInt8]? = nil) throws {
        guard predictions.count == labels.count else {
            throw EvaluationError("length-mismatch",
                "confusion matrix: \(predictions.count) predictions but \(labels.count) labels; predictions and labels must have one entry per pixel")
        }
        if let m = labelMap, m.count != 256 {
            throw EvaluationError("bad-label-map", "confusion matrix: label map has \(m.count) entries, needs 256 (one per raw UInt8 id)")
        }
        let n = classCount, k = clusterCount, st = stride
        // Row offset per prediction id, column per label id (ignored -> column n).
        var rowOffset = [Int32](repeating: Int32(k * st), count: 256)
        for p in 0..<k { rowOffset[p] = Int32(p * st) }
        var column = [Int32](repeating: Int32(n), count: 256)
        for raw in 0..<256 {
            let l = Int(labelMap?[raw] ?? UInt8(raw))
            if l < n { column[raw] = Int32(l) }
        }
        let count = predictions.count
        guard count > 0, let pp = predictions.baseAddress, let lp = labels.baseAddress else { return }
        rowOffset.withUnsafeBufferPointer { ro in
            column.withUnsafeBufferPointer { co in
                cells.withUnsafeMutableBufferPointer { cb in
                    let r = ro.baseAddress!, c = co.baseAddress!, cells = cb.baseAddress!
                    for t in 0..<count {
                        let idx = Int(r[Int(pp[t])] &+ c[Int(lp[t])])
                        cells[idx] &+= 1
                    }
                }
            }
        }
    }

    /// Array convenience for `accumulate(predictions:labels:labelMap:)`.
    public mutating func accumulate(predictions: [UInt8], labels: [UInt8], labelMap: [UInt8]? = nil) throws {
        try predictions.withUnsafeBufferPointer { p in
            try labels.withUnsafeBufferPointer { l in
                try accumulate(predictions: p, labels: l, labelMap: labelMap)
            }
        }
    }

    /// Adds the counts of `other` (same K and n; a mismatch is a programming error).
    public mutating func merge(_ other: ConfusionMatrix) {
        precondition(other.clusterCount == clusterCount && other.classCount == classCount,
                     "cannot merge confusion [\(other.clusterCount) x \(other.classCount)] into [\(clusterCount) x \(classCount)]")
        for i in 0..<cells.count { cells[i] &+= other.cells[i] }
    }

    /// The sum of two matrices of the same shape.
    public static func + (a: ConfusionMatrix, b: ConfusionMatrix) -> ConfusionMatrix {
        var r = a
        r.merge(b)
        return r
    }

    /// Accumulates `imageCount` images in parallel: `body(i, &partial)` must add image `i`
    /// into `partial` (typically with `accumulate(predictions:labels:labelMap:)`).
    ///
    /// The images are split into contiguous chunks (a few per thread), each chunk fills
    /// its own partial matrix on a `Parallel.forEach` worker, and the partials are merged
    /// in chunk order. Integer sums make the result identical for every thread count.
    /// `body` runs concurrently for different `i` and must be safe to do so.
    /// Errors: `bad-count` for K or n outside `1...255`; otherwise the error thrown by
    /// `body` for the lowest image index (each chunk stops at its first error).
    public static func accumulate(imageCount: Int, clusterCount: Int, classCount: Int, threads: Int,
                                  _ body: @Sendable (Int, inout ConfusionMatrix) throws -> Void) throws -> ConfusionMatrix {
        let empty = try ConfusionMatrix(clusterCount: clusterCount, classCount: classCount)
        guard imageCount > 0 else { return empty }
        let t = max(1, threads)
        let chunkCount = min(imageCount, t == 1 ? 1 : t * 4)
        let partials: [Result<ConfusionMatrix, Error>] = Parallel.map(chunkCount, threads: t) { chunk in
            let lo = chunk * imageCount / chunkCount
            let hi = (chunk + 1) * imageCount / chunkCount
            var partial = empty
            do {
                for i in lo..<hi { try body(i, &partial) }
            } catch {
                return .failure(error)
            }
            return .success(partial)
        }
        var total = empty
        for p in partials { total.merge(try p.get()) }
        return total
    }

    /// Accumulates `imageCount` images of equal size stored back to back: image `i` is
    /// `predictions[i*P ..< (i+1)*P]` and `labels[same]` with `P = count / imageCount`.
    /// This is the call the benchmark times (500 images of 320x320).
    ///
    /// Errors: `length-mismatch` if the arrays differ in length or are not a multiple
    /// of `imageCount`; otherwise as `accumulate(predictions:labels:labelMap:)`.
    public static func accumulate(predictions: [UInt8], labels: [UInt8], imageCount: Int,
                                  clusterCount: Int, classCount: Int, labelMap: [UInt8]? = nil,
                                  threads: Int) throws -> ConfusionMatrix {
        guard predictions.count == labels.count, imageCount > 0, predictions.count % imageCount == 0 else {
            throw EvaluationError("length-mismatch",
                "confusion matrix: \(predictions.count) predictions and \(labels.count) labels for \(imageCount) images; both must be imageCount x pixelsPerImage")
        }
        let per = predictions.count / imageCount
        return try predictions.withUnsafeBufferPointer { pbuf in
            try labels.withUnsafeBufferPointer { lbuf in
                // Read-only views shared by the workers for the duration of the call.
                nonisolated(unsafe) let pb = pbuf, lb = lbuf
                return try accumulate(imageCount: imageCount, clusterCount: clusterCount, classCount: classCount,
                               threads: threads) { i, partial in
                    try partial.accumulate(predictions: UnsafeBufferPointer(rebasing: pb[(i * per)..<((i + 1) * per)]),
                                           labels: UnsafeBufferPointer(rebasing: lb[(i * per)..<((i + 1) * per)]),
                                           labelMap: labelMap)
                }
            }
        }
    }
}
