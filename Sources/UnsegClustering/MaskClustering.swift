import UnsegCore
import UnsegLinAlg

/// The masks of one image: the ids present (ascending, background 0 excluded), each id's row
/// among them (`slot[id]`, -1 when absent), each id's cell count, and the cells in masks.
/// What the contrastive keys, the mask means and mask voting all index by.
struct MaskSlots {
    let ids: [UInt8]
    let slot: [Int]
    let counts: [Int]
    let cells: [Int]

    init(_ masks: [UInt8]) {
        var counts = [Int](repeating: 0, count: 256)
        var cells: [Int] = []
        for (c, m) in masks.enumerated() where m != 0 { counts[Int(m)] += 1; cells.append(c) }
        ids = (1..<256).filter { counts[$0] > 0 }.map { UInt8($0) }
        var slot = [Int](repeating: -1, count: 256)
        for (k, id) in ids.enumerated() { slot[Int(id)] = k }
        self.slot = slot
        self.counts = ids.map { counts[Int($0)] }
        self.cells = cells
    }
}

/// Settings of the mask-level clustering (`segment-kmeans`).
public struct MaskClusterConfig: Sendable, Equatable {
    /// Clusters K (the recipe's classes).
    public var classes: Int
    /// PCA whitening of the mask vectors to this many dimensions (0: none).
    public var pcaDims: Int = 32
    /// Seeded k-means++ restarts; the lowest inertia wins.
    public var restarts: Int = 10
    /// Scale of the cosine scores (`scores = cos / temperature`): only the softmax the CRF refines
    /// sees it; the argmax does not.
    public var temperature: Float = 0.5
    public var seed: UInt64 = 0
    public var threads: Int = 1
    public init(classes: Int) { self.classes = classes }
}

/// Mask-level clustering over a projection head (MaskContrast's evaluation, Deep Spectral
/// Methods' semantic step): one vector per mask, `normalize(mean of the mask's head
/// embeddings)`; optionally PCA-whitened (fitted on the training masks) and normalised again;
/// spherical k-means. A cell is classified by the nearest centroid (cosine) of its own embedding
/// taken through the same map; a mask, by its mean. Cluster ids are 0..K-1, all semantic:
/// background cells (mask id 0) take their nearest centroid, they never form or merge with a cluster.
public struct MaskClusterModel: Sendable, Equatable {
    public var head: ProjectionHead
    /// Whitening fitted on the training masks' vectors (nil: none).
    public var whitening: PCA?
    /// `[K, P]` unit rows.
    public var centroids: Matrix
    /// Scores are `cos / temperature`.
    public var temperature: Float

    public init(head: ProjectionHead, whitening: PCA?, centroids: Matrix, temperature: Float) {
        self.head = head; self.whitening = whitening; self.centroids = centroids; self.temperature = temperature
    }

    public var classCount: Int { centroids.rows }

    /// The centroids as prototypes over the cluster space: `scores = (1/T) cos` for unit inputs.
    public var prototypes: PrototypeModel {
        PrototypeModel(directions: centroids, gains: [Float](repeating: 1 / temperature, count: centroids.rows))
    }

    /// Head vectors `[m, D]` (unit rows) into the cluster space `[m, P]` (whitened, unit rows).
    public func project(_ v: Matrix) -> Matrix {
        guard let w = whitening else { return v }
        var z = w.transform(v, whiten: true)
        z.normalizeRows(eps: 1e-12)
        return z
    }

    /// Per mask id present in `masks` (ascending), the normalised mean of its rows of `embedded`.
    public static func maskMeans(_ embedded: Matrix, masks: [UInt8]) -> (ids: [UInt8], vectors: Matrix) {
        precondition(embedded.rows == masks.count, "mask means: \(embedded.rows) rows for \(masks.count) mask cells")
        let d = embedded.cols
        let s = MaskSlots(masks)
        var sums = [Double](repeating: 0, count: s.ids.count * d)
        embedded.data.withUnsafeBufferPointer { e in
            for c in s.cells {
                let k = s.slot[Int(masks[c])]
                for j in 0..<d { sums[k * d + j] += Double(e[c * d + j]) }
            }
        }
        var v = Matrix(rows: s.ids.count, cols: d, data: sums.map { Float($0) })
        v.normalizeRows(eps: 1e-12)
        return (s.ids, v)
    }

    /// The mask vectors of one image in the head's space (before whitening), `[m, D]`.
    public static func maskVectors(head: ProjectionHead, features: Matrix, masks: [UInt8]) -> (ids: [UInt8], vectors: Matrix) {
        maskMeans(head.embed(features), masks: masks)
    }

    /// Cell-level vectors of one image for the clustering (`segment-kmeans.vectors: cells`): the
    /// head embeddings (unit rows) of up to `perMask` cells of every mask (id > 0), drawn without
    /// replacement by a generator seeded with (`seed`, `image`); all cells of a smaller mask.
    /// Masks in ascending id order, cells in grid order within a mask, so the rows are a function
    /// of (head, features, masks, seed, image) only.
    public static func cellSamples(head: ProjectionHead, features: Matrix, masks: [UInt8], perMask: Int,
                                   seed: UInt64, image: Int) -> Matrix {
        let e = head.embed(features)
        let s = MaskSlots(masks)
        var members = [[Int]](repeating: [], count: s.ids.count)
        for c in s.cells { members[s.slot[Int(masks[c])]].append(c) }
        var rng = SeededRandom.stream(seed: seed, index: UInt64(image))
        var picked: [Int] = []
        for m in members {
            if m.count <= perMask { picked += m; continue }
            picked += rng.sample(perMask, from: m.count).sorted().map { m[$0] }
        }
        return e.gatherRows(picked)
    }

    /// Per-cell vectors in the cluster space `[n, P]`; with `masks`, the cells of every mask
    /// (id > 0) take the mask's vector (so they take its cluster), the others keep their own.
    /// O(n (C H + H D + D P)).
    public func embedCells(_ f: Matrix, masks: [UInt8]? = nil) -> Matrix {
        let e = head.embed(f)
        var z = project(e)
        if let m = masks {
            precondition(m.count == f.rows, "mask voting: \(m.count) mask cells for \(f.rows) feature cells")
            let pv = project(Self.maskMeans(e, masks: m).vectors)
            let s = MaskSlots(m)
            let p = z.cols
            for c in s.cells {
                let k = s.slot[Int(m[c])]
                for j in 0..<p { z.data[c * p + j] = pv.data[k * p + j] }
            }
        }
        return z
    }

    /// Fits the clustering on the training masks' vectors `[M, D]` (image order). Errors: fewer
    /// masks than clusters.
    public static func fit(vectors: Matrix, head: ProjectionHead, config: MaskClusterConfig) throws -> (MaskClusterModel, KMeansResult) {
        guard vectors.rows >= config.classes else {
            throw ClusteringError("segment k-means: \(vectors.rows) masks for \(config.classes) clusters; use more images, finer proposals or fewer classes")
        }
        var whitening: PCA?
        var space = vectors
        let p = min(config.pcaDims, vectors.cols, vectors.rows - 1)
        if config.pcaDims > 0 && p >= 1 {
            var pca = try PCA.fit(sample: vectors, components: p)
            // Components with next to no variance (few masks) would scale noise up by 1/sqrt(var):
            // keep those above 1e-6 of the largest.
            let keep = max(1, pca.explainedVariance.prefix { $0 > 1e-6 * (pca.explainedVariance.first ?? 0) }.count)
            if keep < pca.components.rows {
                pca.components = pca.components.rows(0..<keep)
                pca.explainedVariance = Array(pca.explainedVariance.prefix(keep))
            }
            whitening = pca
            space = pca.transform(vectors, whiten: true)
            space.normalizeRows(eps: 1e-12)
        }
        let km = try KMeans.fit(space, config: KMeansConfig(clusters: config.classes, restarts: max(config.restarts, 1), metric: .cosine,
                                                            seed: config.seed, threads: config.threads))
        var c = km.centers
        c.normalizeRows(eps: 1e-12)
        return (MaskClusterModel(head: head, whitening: whitening, centroids: c, temperature: config.temperature), km)
    }

    // MARK: saved state

    public func save(into r: inout StateRecord, at prefix: String) {
        head.save(into: &r, at: prefix + "/head")
        r.set(prefix + "/centroids", centroids.data, shape: [centroids.rows, centroids.cols])
        r.set(prefix + "/temperature", Double(temperature))
        if let w = whitening {
            r.set(prefix + "/whitening/mean", w.mean)
            r.set(prefix + "/whitening/components", w.components.data, shape: [w.components.rows, w.components.cols])
            r.set(prefix + "/whitening/variance", w.explainedVariance)
        }
    }

    public init(record r: StateRecord, at prefix: String) throws {
        let head = try ProjectionHead(record: r, at: prefix + "/head")
        let (c, shape) = try r.floats(prefix + "/centroids")
        guard shape.count == 2, shape[0] >= 1, shape[0] * shape[1] == c.count else {
            throw ClusteringError("saved centroids '\(r.place(prefix + "/centroids"))' have shape \(shape); expected [K, P]")
        }
        var whitening: PCA?
        if r.arrays[prefix + "/whitening/mean"] != nil {
            let mean = try r.floats(prefix + "/whitening/mean").values
            let (comp, cs) = try r.floats(prefix + "/whitening/components")
            let variance = try r.floats(prefix + "/whitening/variance").values
            guard cs.count == 2, cs[1] == head.outputDim, mean.count == head.outputDim, cs[0] == shape[1], variance.count == cs[0] else {
                throw ClusteringError("saved whitening '\(r.place(prefix + "/whitening"))': components \(cs), mean \(mean.count), variance \(variance.count) do not fit a head of \(head.outputDim) dims and centroids of \(shape[1]); the checkpoint is damaged")
            }
            whitening = PCA(mean: mean, components: Matrix(rows: cs[0], cols: cs[1], data: comp), explainedVariance: variance,
                            totalVariance: Double(variance.reduce(0, +)), sampleCount: 0)
        } else if shape[1] != head.outputDim {
            throw ClusteringError("saved centroids '\(r.place(prefix + "/centroids"))' have \(shape[1]) dims, the head \(head.outputDim); the checkpoint is damaged")
        }
        if let bad = Finite.describeFirstNonFinite(c, cols: shape[1]) {
            throw ClusteringError("saved centroids '\(r.place(prefix + "/centroids"))' \(bad); the checkpoint is damaged; fit again")
        }
        let t = Float(try r.double(prefix + "/temperature"))
        guard t > 0 else { throw ClusteringError("saved temperature '\(r.place(prefix + "/temperature"))' is \(t); expected > 0") }
        self.init(head: head, whitening: whitening, centroids: Matrix(rows: shape[0], cols: shape[1], data: c), temperature: t)
    }
}
