import Foundation
import UnsegClustering
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
    public var threads: Int
    public var progress: ProgressSink?

    public init(checkpointPath: String, storePath: String, outPath: String, copy: PrototypeCopy? = nil,
                refine: PredictRefinement? = nil, crf: DenseCRFConfig = DenseCRFConfig(), threads: Int = 1,
                progress: ProgressSink? = nil) {
        self.checkpointPath = checkpointPath; self.storePath = storePath; self.outPath = outPath; self.copy = copy
        self.refine = refine; self.crf = crf; self.threads = threads; self.progress = progress
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
        try OutputGuard.check(outputs: [("--out", o.outPath)], inputs: [("--checkpoint", o.checkpointPath), ("--store", o.storePath)])
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
        let (model, which) = selectPrototypes(ck, copy: o.copy, recipe: recipe)
        let l = store.layout
        let writer = try PredictionsWriter(
            path: o.outPath, store: store, ids: .clusters, count: model.classCount,
            provenance: PredictionsProvenance(method: "primaps-em", checkpoint: o.checkpointPath, prototypes: which,
                                              refine: refine.rawValue))
        var committed = false
        defer { if !committed { writer.discard() } }
        let stream = try StoreStream(store: store, includeImages: refine == .crf, prefetch: 8)
        var done = 0
        let chunk = max(8, 4 * o.threads)
        while true {
            let items = try stream.nextBatch(chunk)
            if items.isEmpty { break }
            let maps = try Parallel.tryMap(items.count, threads: o.threads) { i in
                try predict(model: model, features: items[i].features, h: l.gridHeight, w: l.gridWidth,
                            H: l.imageHeight, W: l.imageWidth, image: items[i].image, refine: refine, crf: o.crf)
            }
            for (item, m) in zip(items, maps) { try writer.write(item.index, m) }
            done += items.count
            o.progress?.update(done: done, total: l.imageCount, note: nil)
        }
        o.progress?.finish()
        try writer.commit()
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

    /// One image: `[H*W]` cluster ids. Without refinement the fused upsample + argmax;
    /// with `.crf`, softmax of the label-resolution logits as the CRF's probabilities and the
    /// image `[H*W*3]` as its guide. O(h w C K + H W K) (+ CRF).
    public static func predict(model: PrototypeModel, features: Matrix, h: Int, w: Int, H: Int, W: Int,
                               image: [UInt8]?, refine: PredictRefinement, crf: DenseCRFConfig = DenseCRFConfig()) throws -> [UInt8] {
        guard refine == .crf else { return model.predict(features: features, h: h, w: w, H: H, W: W) }
        guard let img = image else {
            throw RefinementError.shapeMismatch("CRF refinement needs the image; none was read")
        }
        var logits = model.logits(features: features, h: h, w: w, H: H, W: W)
        let k = model.classCount
        logits.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<(H * W) {
                let row = p.baseAddress! + i * k
                var m = row[0]
                for j in 1..<k { m = max(m, row[j]) }
                var s: Float = 0
                for j in 0..<k { row[j] = FastMath.exp(row[j] - m); s += row[j] }
                let inv = 1 / s
                for j in 0..<k { row[j] *= inv }
            }
        }
        let crfModel = try DenseCRF(image: img, height: H, width: W, config: crf)
        return crfModel.labels(probabilities: logits.data, labels: k).map { UInt8(clamping: $0) }
    }
}
