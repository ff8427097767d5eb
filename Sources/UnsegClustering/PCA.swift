import UnsegCore
import UnsegLinAlg

/// Principal components of a sample of feature rows.
///
/// Sign rule: each component is flipped so that its entry of largest absolute value is
/// positive (first such entry on ties), which makes the result deterministic.
public struct PCA: Sendable, Equatable {
    /// `[C]` mean of the sample.
    public var mean: [Float]
    /// `[k, C]` principal directions as unit rows, by decreasing explained variance.
    public var components: Matrix
    /// `[k]` variance along each component (eigenvalues of the covariance, divisor n - 1).
    public var explainedVariance: [Float]
    /// Total variance (trace of the covariance), for explained-variance ratios.
    public var totalVariance: Double
    /// Rows the fit saw.
    public var sampleCount: Int

    /// Fits `components` principal directions to the rows of `sample` `[n, C]`.
    ///
    /// Covariance `C x C` accumulated with ssyrk over chunks of 4096 centred rows (Float per
    /// chunk, Double across chunks), then the top-k eigenpairs (LAPACK, Double). O(n C^2 + C^3).
    /// Errors: fewer than 2 rows, `components` outside `1...C`, non-finite values.
    public static func fit(sample: Matrix, components: Int) throws -> PCA {
        var acc = PCAAccumulator(channels: sample.cols)
        try acc.add(sample)
        return try acc.finalize(components: components)
    }

    /// Projects rows `[n, C]` on the components: `(x - mean) V^T`, `[n, k]`; with `whiten`, each
    /// column is divided by `sqrt(explainedVariance + 1e-12)` (unit variance on the fit sample). O(n C k).
    public func transform(_ x: Matrix, whiten: Bool = false) -> Matrix {
        precondition(x.cols == mean.count, "PCA.transform: rows have \(x.cols) channels, PCA was fitted on \(mean.count)")
        var centred = x
        let c = x.cols
        centred.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<x.rows { for j in 0..<c { p[i * c + j] -= mean[j] } }
        }
        var out = BLAS.matmul(centred, components, transB: true)
        if whiten {
            let k = components.rows
            let s = explainedVariance.map { 1 / ($0 + 1e-12).squareRoot() }
            for i in 0..<out.rows { for j in 0..<k { out.data[i * k + j] *= s[j] } }
        }
        return out
    }
}

/// One image's part of a PCA (see `PCAAccumulator.contribution`): what the merge needs and
/// nothing more (`C + C^2` numbers whatever the image's size), so it can travel between processes.
public struct PCAContribution: Sendable, WireCodable {
    /// Column sums of the image's rows minus the shared shift, `[C]` (Double, in row order).
    public var sums: [Double]
    /// `shifted^T shifted`, `[C, C]` (Float, as one ssyrk chunk of `add`).
    public var gram: Matrix
    /// Rows of the image.
    public var count: Int
    public func encode(into w: inout WireWriter) { w.put(sums); w.put(gram); w.put(count) }
    public init(wire r: inout WireReader) throws { sums = try r.doubles(); gram = try r.matrix(); count = try r.int() }
    init(sums: [Double], gram: Matrix, count: Int) { self.sums = sums; self.gram = gram; self.count = count }
}

/// Streams rows into a PCA: the lead can add a seeded sample chunk by chunk without holding it.
///
/// Rows are shifted by the first chunk's mean before accumulation (sums and ssyrk Gram), which
/// avoids the cancellation of `E[x x^T] - mu mu^T` for features with a large mean.
public struct PCAAccumulator: Sendable {
    public let channels: Int
    public private(set) var count = 0
    var shift: [Float] = []
    var sums: [Double]
    var gram: [Double]

    public init(channels: Int) {
        self.channels = channels
        sums = [Double](repeating: 0, count: channels)
        gram = [Double](repeating: 0, count: channels * channels)
    }

    /// Adds the rows of `rows` `[n, C]`. O(n C^2). Errors: channel mismatch, non-finite values.
    public mutating func add(_ rows: Matrix) throws {
        if rows.cols != channels {
            throw ClusteringError("PCA sample rows have \(rows.cols) channels, expected \(channels); sample every image from the same backbone")
        }
        if rows.rows == 0 { return }
        try checkFinite(rows.data, "PCA sample", cols: channels)
        if shift.isEmpty { shift = rows.columnMeans() }
        let c = channels, chunk = 4096
        var start = 0
        var g = Matrix(rows: c, cols: c)
        while start < rows.rows {
            let end = min(rows.rows, start + chunk)
            var part = rows.rows(start..<end)
            var chunkSums = [Double](repeating: 0, count: c)
            part.data.withUnsafeMutableBufferPointer { p in
                for i in 0..<(end - start) {
                    for j in 0..<c { p[i * c + j] -= shift[j]; chunkSums[j] += Double(p[i * c + j]) }
                }
            }
            for j in 0..<c { sums[j] += chunkSums[j] }
            BLAS.gramOfColumns(part, into: &g)
            for j in 0..<(c * c) { gram[j] += Double(g.data[j]) }
            start = end
        }
        count += rows.rows
    }

    /// One image's contribution: its rows shifted by `shift` (`[n, C]`) and their Float Gram
    /// matrix `[C, C]` (ssyrk; the O(n C^2) part, computed per image on any thread). Errors: channel
    /// mismatch, non-finite values.
    public static func contribution(_ rows: Matrix, shift: [Float]) throws -> PCAContribution {
        let c = shift.count
        if rows.cols != c {
            throw ClusteringError("PCA sample rows have \(rows.cols) channels, expected \(c); sample every image from the same backbone")
        }
        try checkFinite(rows.data, "PCA sample", cols: c)
        precondition(rows.rows <= 4096, "PCA contribution: one image at a time (\(rows.rows) rows)")
        var part = rows
        var sums = [Double](repeating: 0, count: c)
        part.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<rows.rows { for j in 0..<c { p[i * c + j] -= shift[j]; sums[j] += Double(p[i * c + j]) } }
        }
        var g = Matrix(rows: c, cols: c)
        if rows.rows > 0 { BLAS.gramOfColumns(part, into: &g) }
        return PCAContribution(sums: sums, gram: g, count: rows.rows)
    }

    /// The ordered reduction: adds contributions made with this accumulator's `shift`, in image
    /// order. Gives exactly what `add` gives for the same images in the same order.
    public mutating func merge(_ part: PCAContribution, shift: [Float]) {
        if self.shift.isEmpty { self.shift = shift }
        precondition(self.shift == shift, "PCA merge: contribution made with another shift")
        let c = channels, n = part.count
        for j in 0..<c { sums[j] += part.sums[j] }
        if n > 0 { for j in 0..<(c * c) { gram[j] += Double(part.gram.data[j]) } }
        count += n
    }

    /// The PCA of all rows added so far. Errors: fewer than 2 rows, `components` outside `1...C`.
    public func finalize(components k: Int) throws -> PCA {
        let c = channels
        if count < 2 { throw ClusteringError("PCA needs at least 2 sample rows, got \(count)") }
        if k < 1 || k > c { throw ClusteringError("n_components=\(k) should be in 1...\(c) (the feature channels)") }
        let n = Double(count)
        let dm = sums.map { $0 / n }
        var cov = [Double](repeating: 0, count: c * c)
        var trace = 0.0
        for i in 0..<c {
            for j in 0..<c { cov[i * c + j] = (gram[i * c + j] - n * dm[i] * dm[j]) / (n - 1) }
            trace += cov[i * c + i]
        }
        let eig = try LAPACK.symmetricEigenDouble(cov, n: c)
        // Degenerate samples (all-zero or constant features, fewer directions than prototypes)
        // leave prototypes undefined: refuse them rather than fit arbitrary directions.
        let rank = eig.values.filter { $0 > 1e-9 * max(trace, 0) && trace > 0 }.count
        if rank < k {
            throw ClusteringError("the sampled features vary along only \(rank) direction\(rank == 1 ? "" : "s") (total variance \(trace)) but \(k) prototypes are asked; all-zero or constant features leave prototypes undefined: check the features, or ask for fewer classes")
        }
        var comps = Matrix(rows: k, cols: c)
        var vars = [Float](repeating: 0, count: k)
        for r in 0..<k {
            let src = c - 1 - r   // ascending order: take from the top
            vars[r] = Float(max(0, eig.values[src]))
            var row = Array(eig.vectors[(src * c)..<((src + 1) * c)])
            var big = 0
            for j in 1..<c where abs(row[j]) > abs(row[big]) { big = j }
            if row[big] < 0 { row = row.map { -$0 } }
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<c { comps.data[r * c + j] = Float(row[j] / norm) }
        }
        let mean = (0..<c).map { Float(Double(shift[$0]) + dm[$0]) }
        return PCA(mean: mean, components: comps, explainedVariance: vars, totalVariance: trace, sampleCount: count)
    }
}
