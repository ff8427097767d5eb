import Foundation
import UnsegClustering
import UnsegCore
import UnsegLinAlg
import UnsegProposals
import UnsegStore

/// What `unseg predict` does, as a library call (see `PredictJob.run`).
public struct PredictOptions: Sendable {
    public var checkpointPath: String
    public var storePath: String
    /// Output predictions file (`/predictions` uint8 `[N, H, W]`, ids = clusters, count = K).
    public var outPath: String
    /// Prototype copy; nil = the recipe's `predict_copy` (with `selection: best-val`, the best epoch's momentum prototypes).
    public var copy: PrototypeCopy?
    /// Refinement; nil = the recipe's `predict_refine`.
    public var refine: PredictRefinement?
    /// Dense CRF settings when refining (defaults: the reference's).
    public var crf: DenseCRFConfig
    /// Test-time augmentation: `.flip` averages each image's features with its flipped-back
    /// features (`/features_flipped`), as the reference test script does.
    public var tta: TestTimeAugmentation = .none
    /// Proposals of the predicted store (`unseg propose` on it): with a mask-clustering checkpoint
    /// (`segment-kmeans`), every mask takes the cluster of its mean embedding; cells outside masks
    /// keep their own.
    public var proposalsPath: String? = nil
    public var threads: Int
    public var progress: ProgressSink?

    public init(checkpointPath: String, storePath: String, outPath: String, copy: PrototypeCopy? = nil,
                refine: PredictRefinement? = nil, tta: TestTimeAugmentation = .none, crf: DenseCRFConfig = DenseCRFConfig(),
                threads: Int = 1, progress: ProgressSink? = nil, proposalsPath: String? = nil) {
        self.proposalsPath = proposalsPath
        self.checkpointPath = checkpointPath; self.storePath = storePath; self.outPath = outPath; self.copy = copy
        self.refine = refine; self.tta = tta; self.crf = crf; self.threads = threads; self.progress = progress
    }
}

/// Test-time augmentation of `unseg predict` / `unseg test`.
public enum TestTimeAugmentation: String, Sendable, CaseIterable, Equatable {
    case none
    /// The mean of the features and the horizontally flipped image's features flipped back
    /// (`/features_flipped`), as the reference test script averages them before its heads.
    case flip
}

/// The head that turns features into class scores, which the checkpoint's last stage decides.
public enum PrototypeHead: String, Sendable, Equatable {
    /// Cosine k-means (PCA init, warm-up, the paper's Baseline): cosine of the L2-normalised
    /// label-resolution features with the unit prototypes, g = 1.
    case cosine
    /// PriMaPs-EM's weight-normalised linear head on raw features: `g_k v_k . x / |v_k|`.
    case weightNormalised = "weight-normalised"
    /// Mask clustering (`segment-kmeans`): each cell's embedding through the projection head and
    /// the whitening, scored by cosine / T against the centroids.
    case maskClusters = "mask-clusters"
}

extension FitCheckpoint {
    /// The head its prototypes belong to (PriMaPs-EM's when its last stage is `primaps-em`).
    public var head: PrototypeHead {
        switch (try? latestPrototypes())?.0 {
        case .primapsEM?: return .weightNormalised
        case .segmentKMeans?: return .maskClusters
        default: return .cosine
        }
    }
}

/// What `PredictJob.run` wrote.
public struct PredictSummary: Sendable {
    public var outPath: String
    public var imageCount: Int
    public var classCount: Int
    /// Which prototypes were used ("momentum", "running", "best-val (epoch 7)").
    public var prototypes: String
    public var refine: PredictRefinement
    public var seconds: Double
}

/// `unseg predict`: per-pixel cluster ids at label resolution from fitted prototypes
/// (argmax of the bilinearly upsampled logits), optionally refined with a dense CRF.
public enum PredictJob {
    /// Writes the predictions file. Errors: checkpoint / store mismatch (channels), missing
    /// `/images` for CRF refinement, I/O.
    public static func run(_ o: PredictOptions) throws -> PredictSummary {
        let started = Date()
        try OutputGuard.check(outputs: [("--out", o.outPath)],
                              inputs: [("--checkpoint", o.checkpointPath), ("--store", o.storePath)] + (o.proposalsPath.map { [("--proposals", $0)] } ?? []))
        BLASPolicy.imagesInParallel.apply()
        let ck = try FitCheckpoint.load(path: o.checkpointPath)
        let store = try FeatureStore(path: o.storePath)
        try ck.checkCompatible(with: store, checkpointPath: o.checkpointPath)
        let recipe = (try? ck.recipe) ?? Recipe()
        let refine = o.refine ?? recipe.predictRefine
        if refine == .crf && !store.layout.hasImages {
            throw StoreError(file: o.storePath, dataset: "/images",
                             "missing; CRF refinement needs the RGB images [N, H, W, 3] uint8 in the store; predict without --refine crf (or set predict_refine: none)")
        }
        if o.tta == .flip && !store.layout.hasFlippedFeatures {
            throw StoreError(file: o.storePath, dataset: "/features_flipped",
                             "missing; --tta flip needs the flipped features (extract the store with `unseg-extract --flip`), or predict without --tta")
        }
        let (model, which) = selectPrototypes(ck, copy: o.copy, recipe: recipe)
        let embedding = try ck.maskModel()
        var proposals: ProposalsFile?
        if let p = o.proposalsPath {
            guard embedding != nil else {
                throw RecipeError("--proposals: mask voting is for mask-clustering checkpoints (stages ending in segment-kmeans); \(o.checkpointPath) holds prototypes of \((try? ck.latestPrototypes().0.rawValue) ?? "?"); predict without --proposals")
            }
            proposals = try ProposalsFile(path: p, store: store)
        }
        // The best-val prototypes may come from a cosine k-means epoch of a PriMaPs-EM fit.
        let usesBest = o.copy == nil && recipe.selection == .bestVal && ck.best != nil
        let head: PrototypeHead = usesBest ? (ck.bestRecord?.stage == .primapsEM ? .weightNormalised : .cosine) : ck.head
        // Under mpirun rank 0 writes (see ShardOutput); every rank predicts its share of the images.
        let writer = Distributed.isLead ? try PredictionsWriter(
            path: o.outPath, store: store, ids: .clusters, count: model.classCount,
            provenance: PredictionsProvenance(method: (try? ck.latestPrototypes().0.rawValue) ?? "unknown", checkpoint: o.checkpointPath, prototypes: which,
                                              refine: refine.rawValue)) : nil
        var committed = false
        defer { if !committed { writer?.discard() } }
        let l = store.layout
        let shard = try ShardOutput(count: l.imageCount, recordSize: l.imageHeight * l.imageWidth)
        try shard.finish({
        let stream = try StoreStream(store: store, subset: Array(shard.range), includeImages: refine == .crf, prefetch: 8, decodeThreads: o.threads)
        var done = 0
        let chunk = max(8, 4 * o.threads)
        while true {
            var items = try stream.nextBatch(chunk)
            if items.isEmpty { break }
            if o.tta == .flip { items = try items.map { try averagedWithFlip($0, store: store) } }
            let batch = items
            let masks = try proposals.map { p in try batch.map { try p.masks($0.index) } }
            let maps = try Parallel.tryMap(batch.count, threads: o.threads) { i in
                try predict(model: model, head: head, embedding: embedding, masks: masks?[i], features: batch[i].features,
                            h: l.gridHeight, w: l.gridWidth, H: l.imageHeight, W: l.imageWidth, image: batch[i].image,
                            refine: refine, crf: o.crf)
            }
            for (item, m) in zip(items, maps) { try shard.put(m) { try writer!.write(item.index, m) } }
            done += items.count
            o.progress?.update(done: done, total: shard.range.count, note: nil)
        }
        o.progress?.finish()
        }, write: { i, m in try writer!.write(i, m) })
        try writer?.commit()
        committed = true
        return PredictSummary(outPath: o.outPath, imageCount: l.imageCount, classCount: model.classCount,
                              prototypes: which, refine: refine, seconds: Date().timeIntervalSince(started))
    }

    /// The prototypes a predict run uses: an explicit copy, else the recipe's `predict_copy`,
    /// replaced by the best validation epoch's momentum prototypes under `selection: best-val`.
    public static func selectPrototypes(_ ck: FitCheckpoint, copy: PrototypeCopy?, recipe: Recipe) -> (PrototypeModel, String) {
        if copy == nil, recipe.selection == .bestVal, let b = ck.best, let r = ck.bestRecord {
            return (b, "best-val (\(r.stage.rawValue) epoch \(r.epoch); selected on the val split)")
        }
        let c = copy ?? recipe.predictCopy
        return (c == .momentum ? ck.momentum : ck.running, c.rawValue)
    }

    /// The item with its features replaced by the mean of the stored and the flipped-back features.
    static func averagedWithFlip(_ item: StoreItem, store: FeatureStore) throws -> StoreItem {
        var it = item
        let f = try store.features(item.index, source: .flipped)
        it.features.data.withUnsafeMutableBufferPointer { a in
            f.data.withUnsafeBufferPointer { b in for j in 0..<a.count { a[j] = (a[j] + b[j]) * 0.5 } }
        }
        return it
    }

    /// The probabilities the CRF refines, `[H*W, K]`: the softmax of the head's label-resolution
    /// scores (the reference's test script: cosine scores for the cosine head, logits for
    /// PriMaPs-EM's head). O(h w C K + H W K).
    public static func crfProbabilities(model: PrototypeModel, head: PrototypeHead, features: Matrix,
                                        h: Int, w: Int, H: Int, W: Int) -> [Float] {
        // (.maskClusters: the features are the cells' unit vectors in the cluster space, the gains 1/T.)
        let scores = head == .cosine ? model.cosineScores(features: features, h: h, w: w, H: H, W: W)
            : model.logits(features: features, h: h, w: w, H: H, W: W)
        return Reduce.softmax(scores.data, rows: H * W, cols: model.classCount)
    }

    /// One image: `[H*W]` cluster ids. Without refinement the fused upsample + argmax (the same
    /// classes for both heads: the cosine head's per-pixel normalisation does not change the
    /// argmax); with `.crf`, the CRF on `crfProbabilities` with the image `[H*W*3]` as its guide.
    /// O(h w C K + H W K) (+ CRF).
    /// With `embedding` (a mask-clustering checkpoint), the features first go through its head
    /// and whitening (`embedCells`, with mask voting when `masks` are given) and `model` is its
    /// centroids.
    public static func predict(model: PrototypeModel, head: PrototypeHead = .weightNormalised,
                               embedding: MaskClusterModel? = nil, masks: [UInt8]? = nil, features raw: Matrix,
                               h: Int, w: Int, H: Int, W: Int, image: [UInt8]?, refine: PredictRefinement,
                               crf: DenseCRFConfig = DenseCRFConfig()) throws -> [UInt8] {
        if let m = masks, m.count != h * w {
            throw RefinementError.shapeMismatch("proposal masks have \(m.count) cells for a \(h)x\(w) grid")
        }
        let features = embedding.map { $0.embedCells(raw, masks: masks) } ?? raw
        guard refine == .crf else { return model.predict(features: features, h: h, w: w, H: H, W: W) }
        guard let img = image else {
            throw RefinementError.shapeMismatch("CRF refinement needs the image; none was read")
        }
        let p = crfProbabilities(model: model, head: head, features: features, h: h, w: w, H: H, W: W)
        let crfModel = try DenseCRF(image: img, height: H, width: W, config: crf)
        return crfModel.labels(probabilities: p, labels: model.classCount).map { UInt8(clamping: $0) }
    }
}
