import Foundation
import UnsegClustering
import UnsegEvaluation
import UnsegLinAlg
import UnsegProposals
import UnsegStore
import UnsegCore

/// What `unseg fit` does, as a library call (see `FitJob.run`).
public struct FitOptions: Sendable {
    public var recipe: Recipe
    /// Training feature store.
    public var storePath: String
    /// Proposals file written by `unseg propose` for the same store (`/masks`, or `/refined` when present);
    /// nil computes PriMaPs proposals on the fly (unless the recipe says `proposals: file`).
    public var proposalsPath: String?
    /// Labelled validation store: mIoU after every epoch (reported; used for selection only with `selection: best-val`).
    public var valPath: String?
    /// Class count of the validation labels when the val store names no protocol (default: the recipe's classes).
    public var valClassCount: Int?
    /// Checkpoint written every `recipe.checkpointEvery` steps, at every epoch end and at the end.
    public var checkpointPath: String
    /// Continue from `checkpointPath` if it exists (a missing file starts from scratch).
    public var resume: Bool
    /// Worker threads over the images of a batch; results do not depend on it.
    public var threads: Int
    public var progress: ProgressSink?
    /// One line per event (stage changes, epochs with their metrics, checkpoints on resume).
    public var log: (@Sendable (String) -> Void)?
    /// Testing aid: seconds to sleep after every step (lets a test kill the process mid-run).
    public var stepDelay: Double
    /// Testing aid: return (stage not done) right after this global step, as if the process had been
    /// killed there (the checkpoint on disk is the last one written, possibly a few steps earlier).
    public var stopAfterStep: Int? = nil
    /// Start the recipe's last stage (PriMaPs-EM in the paper recipes) from the prototypes of this
    /// finished checkpoint (e.g. a Baseline fit), skipping the stages before it (the reference's
    /// `cluster_ckpt_path`). Used when the run starts; a resumed run continues from its own checkpoint.
    public var initFromPath: String? = nil
    /// With `initFromPath`: keep the source's gains `g` (default: reset them to 1 and keep the
    /// directions, as the reference loads a cluster checkpoint).
    public var keepGains: Bool = false
    /// Start PriMaPs-EM from a peer's cluster probe (`/peer_clusters` of this store, written by
    /// `unseg-extract --head`) with gains 1, skipping the stages before it, as the reference does
    /// on top of STEGO / HP. Used when the run starts, like `initFromPath`.
    public var initFromPeerPath: String? = nil

    public init(recipe: Recipe, storePath: String, proposalsPath: String? = nil, valPath: String? = nil,
                valClassCount: Int? = nil, checkpointPath: String, resume: Bool = false, threads: Int = 1,
                progress: ProgressSink? = nil, log: (@Sendable (String) -> Void)? = nil, stepDelay: Double = 0) {
        self.recipe = recipe; self.storePath = storePath; self.proposalsPath = proposalsPath; self.valPath = valPath
        self.valClassCount = valClassCount; self.checkpointPath = checkpointPath; self.resume = resume
        self.threads = threads; self.progress = progress; self.log = log; self.stepDelay = stepDelay
    }
}

/// The outcome of a fit.
public struct FitResult: Sendable {
    /// The final checkpoint (also on disk at `checkpointPath`).
    public var checkpoint: FitCheckpoint
    /// The selected prototypes (momentum copy, or best-val momentum prototypes when the recipe says so).
    public var prototypes: PrototypeModel
    /// How they were selected, for the summary ("last step (momentum)" / "best val epoch 7 (leaks the val split)").
    public var selection: String
    /// Steps run by this call (the rest were done before a resume).
    public var stepsRun: Int
    /// Step the run resumed from, nil for a fresh run.
    public var resumedFrom: Int?
    public var seconds: Double
}

/// `unseg fit`: the recipe's stages in order (`pca-init`, `cosine-kmeans`, `primaps-em`), with
/// atomic checkpoints and exact resumption.
///
/// Each stage is a `StageRunner`: it starts from the previous stage's prototypes (or from
/// `--init-from`), runs its steps (per-image work through an `ImageExecutor`, an ordered
/// reduction), and saves its state as a `StateRecord` in the checkpoint. The driver knows no
/// stage: adding a method is a new runner and a recipe section.
///
/// Determinism: the image order of epoch e of a stage is a permutation seeded by
/// `FitSeeds.epochOrder(seed, stage, e)`; the flips come from the EM trainer's generator,
/// whose state is in the checkpoint; a resumed run skips the batches its epoch already did. So a
/// run killed at any moment and resumed ends with bit-identical prototypes, and the thread
/// count changes nothing (every reduction runs in image order).
public enum FitJob {
    /// Runs (or resumes) a fit. Errors: store / proposals / checkpoint problems as `StoreError`,
    /// recipe mismatches on resume as `RecipeError`, algorithm errors as `ClusteringError`.
    public static func run(_ o: FitOptions) throws -> FitResult {
        let started = Date()
        let recipe = o.recipe
        try recipe.validate()
        BLASPolicy.imagesInParallel.apply()
        let store = try FeatureStore(path: o.storePath)
        let l = store.layout
        guard l.imageCount >= 1 else { throw StoreError(file: o.storePath, dataset: "/features", "has no images; nothing to fit") }
        guard recipe.classes <= l.channels else {
            throw RecipeError("classes: \(recipe.classes) prototypes need at least as many feature channels, but \(o.storePath) has \(l.channels)")
        }
        try PriMaPsEMRunner.checkCropViews(store: store, recipe: recipe)
        let proposals = try ProposalProvider(options: o, store: store)
        let validator = try o.valPath.map { try Validator(path: $0, classCount: o.valClassCount ?? recipe.classes, trainChannels: l.channels, threads: o.threads) }
        let runners: [any StageRunner] = recipe.stages.map { runner(for: $0) }

        var inputs: [OutputGuard.Named] = [("--store", o.storePath)]
        if let p = o.proposalsPath { inputs.append(("--proposals", p)) }
        if let v = o.valPath { inputs.append(("--val", v)) }
        if let i = o.initFromPath { inputs.append(("--init-from", i)) }
        if let i = o.initFromPeerPath { inputs.append(("--init-from-peer", i)) }
        if o.initFromPath != nil && o.initFromPeerPath != nil {
            throw RecipeError("--init-from and --init-from-peer both name the starting prototypes; pass one")
        }
        try OutputGuard.check(outputs: [("--checkpoint", o.checkpointPath)], inputs: inputs)
        // Under mpirun rank 0 alone locks and writes the checkpoint; every rank reads it on --resume.
        let lock = Distributed.isLead ? try OutputLock(path: o.checkpointPath, option: "--checkpoint") : nil
        defer { lock?.release() }
        // Every rank looks before rank 0 writes anything (an agreement is a collective): a rank that
        // starts late must not take rank 0's fresh checkpoint for an earlier run's.
        let exists = try Distributed.agree { FileManager.default.fileExists(atPath: o.checkpointPath) }
        if exists && !o.resume {
            throw StoreError(file: o.checkpointPath, "exists; pass --resume to continue that run, or remove it / choose another --checkpoint to start over")
        }
        if Distributed.isLead { Temporaries.removeStale(of: o.checkpointPath) }
        var ck: FitCheckpoint
        var resumedFrom: Int?
        if exists {
            ck = try FitCheckpoint.load(path: o.checkpointPath)
            try ck.checkCompatible(with: store, checkpointPath: o.checkpointPath)
            if ck.storeImages != l.imageCount || ck.featureHeight != l.gridHeight || ck.featureWidth != l.gridWidth {
                throw StoreError(file: o.storePath, "has \(l.imageCount) images of \(l.gridHeight)x\(l.gridWidth) cells but the checkpoint \(o.checkpointPath) was fitted on \(ck.storeImages) of \(ck.featureHeight)x\(ck.featureWidth) (\(ck.storePath)); resume with the same store")
            }
            // Compared as recipes, not text: a checkpoint written before a key existed holds its default.
            if ck.recipeYAML != recipe.yaml(), (try? Recipe.parse(ck.recipeYAML)) != recipe {
                throw RecipeError("the recipe differs from the one in \(o.checkpointPath): \(recipeDifferences(ck.recipeYAML, recipe.yaml())); resume with the same recipe and --seed, or start a new checkpoint")
            }
            resumedFrom = ck.step
            o.log?("resuming \(o.checkpointPath): stage \(ck.stage?.rawValue ?? "done"), epoch \(ck.epoch), step \(ck.step)")
            if let src = o.initFromPath ?? o.initFromPeerPath.map(Self.peerSource), src != ck.initFrom {
                o.log?("--init-from \(src) ignored: resuming \(o.checkpointPath), which started from \(ck.initFrom ?? "its own first stage")")
            }
        } else {
            ck = FitCheckpoint(recipeYAML: recipe.yaml(), stage: nil, step: 0, epoch: 0, batchInEpoch: 0, states: [:],
                               valHistory: [], best: nil, bestRecord: nil, storePath: store.path, storeImages: l.imageCount,
                               featureHeight: l.gridHeight, featureWidth: l.gridWidth, channels: l.channels)
            var first = 0
            var model: StageOutput?
            if let given = o.initFromPath ?? o.initFromPeerPath {
                let option = o.initFromPath != nil ? "--init-from" : "--init-from-peer"
                if recipe.stages.contains(where: \.isMaskStage) {
                    throw RecipeError("\(option) starts the last stage of a prototype recipe (primaps-em) from \(o.initFromPath != nil ? "a checkpoint's prototypes" : "a peer's cluster probe"); the stages \(recipe.stages.map(\.rawValue).joined(separator: ", ")) take none; fit without \(option)")
                }
                var m: PrototypeModel
                let src: String
                if o.initFromPath != nil {
                    m = try initialPrototypes(from: given, store: store, recipe: recipe)
                    src = given
                } else {
                    m = try peerPrototypes(from: given, store: store, recipe: recipe)
                    src = Self.peerSource(given)
                }
                if !o.keepGains || o.initFromPeerPath != nil { m.gains = [Float](repeating: 1, count: m.classCount) }
                // The recipe's last stage starts from these prototypes; the stages before it are skipped.
                first = recipe.stages.count - 1
                o.log?("\(recipe.stages.indices.contains(first) ? recipe.stages[first].rawValue : "the fit") starts from the prototypes of \(src) (stages before it skipped)")
                ck.initFrom = src
                model = StageOutput(prototypes: m)
            }
            if first < runners.count {
                ck.stage = recipe.stages[first]
                ck.states[recipe.stages[first]] = try runners[first].initialState(from: model, recipe: recipe, threads: o.threads)
            }
            // A fresh run writes its first checkpoint when the first stage has produced prototypes
            // (a bad store fails in the PCA without leaving a checkpoint behind); a run that starts
            // from --init-from has them already.
            if model != nil { try ck.write(to: o.checkpointPath) }
        }
        if ck.stage != nil, recipe.runs(.segmentKMeans) {
            o.log?("masks: " + (o.proposalsPath.map { "\($0):/masks (feature resolution)" } ?? proposals.featureSummary))
            if let t = proposals.fileThreshold, abs(t - recipe.masks.primapsThreshold) > 1e-6 {
                o.log?(String(format: "masks: %@ holds PriMaPs masks of threshold %.2f, but the recipe's mask stages were measured with masks.primaps_threshold %.2f (Docs/maskcontrast.md); to match, `unseg propose --store %@ --out masks.h5 --threshold %.2f` and pass that file", o.proposalsPath ?? "", t, recipe.masks.primapsThreshold, o.storePath, recipe.masks.primapsThreshold))
            }
        }
        if ck.stage != nil, recipe.runs(.primapsEM), recipe.epochs > 0 {
            if recipe.proposals == .primapsCRF && proposals.onTheFly && !proposals.refined {
                o.log?("proposals: the recipe asks for CRF-refined proposals but \(o.storePath) has no /images; using unrefined PriMaPs masks (write a store with images, or pass --proposals)")
            }
            o.log?("proposals: " + (proposals.onTheFly ? proposals.summary : o.proposalsPath!)
                   + "; the M-step uses the clean stored features (a store has no backbone for photometric augmentation), horizontal flips only")
        }

        let n = l.imageCount
        let batchLen = min(recipe.batchSize, n)
        let batches = n / batchLen
        let trainingEpochs = runners.enumerated().reduce(0) { acc, e in
            (ck.initFrom != nil && e.offset < runners.count - 1) ? acc : acc + e.element.epochs(recipe)
        }
        let totalSteps = trainingEpochs * batches
        if let k = ck.stage, let i = recipe.stages.firstIndex(of: k) {
            let stageEpochs = runners[i].epochs(recipe)
            guard ck.batchInEpoch < max(batches, 1), ck.epoch <= stageEpochs else {
                throw StoreError(file: o.checkpointPath, "damaged checkpoint: epoch \(ck.epoch) / batch \(ck.batchInEpoch) is beyond stage \(k.rawValue)'s \(stageEpochs) epochs of \(batches) batches; fit again or restore the file")
            }
        }
        let startStep = ck.step
        let context = Loop(options: o, store: store, batchLen: batchLen, batches: batches, startStep: startStep,
                           totalSteps: totalSteps, proposals: proposals, validator: validator,
                           executor: DistributedExecutor(threads: o.threads))
        defer { o.progress?.finish() }
        do {
            while let kind = ck.stage {
                guard let i = recipe.stages.firstIndex(of: kind) else {
                    throw RecipeError("stages: the checkpoint is in stage '\(kind.rawValue)', which the recipe does not list")
                }
                let out = try runners[i].run(&ck, context: context)
                o.log?("\(kind.rawValue) done after step \(ck.step)")
                if i + 1 < runners.count {
                    let next = recipe.stages[i + 1]
                    ck.states[next] = try runners[i + 1].initialState(from: out, recipe: recipe, threads: o.threads)
                    ck.stage = next
                } else {
                    ck.stage = nil
                }
                ck.epoch = 0
                ck.batchInEpoch = 0
                try ck.write(to: o.checkpointPath)
            }
        } catch is StopRequested {
            return FitResult(checkpoint: ck, prototypes: ck.momentum, selection: "stopped early (testing)",
                             stepsRun: ck.step - startStep, resumedFrom: resumedFrom, seconds: Date().timeIntervalSince(started))
        }
        try ck.write(to: o.checkpointPath)
        let proto = ck.prototypes(copy: .momentum, selection: recipe.selection)
        var sel = "last step (momentum prototypes)"
        if recipe.selection == .bestVal {
            if let b = ck.bestRecord {
                sel = String(format: "best validation epoch (%@ %d, mIoU %.2f); selected on the val split, which leaks it into model selection",
                             b.stage.rawValue, b.epoch, b.miou)
            } else {
                sel = "last step (selection best-val needs --val; none given)"
            }
        }
        return FitResult(checkpoint: ck, prototypes: proto, selection: sel, stepsRun: ck.step - startStep,
                         resumedFrom: resumedFrom, seconds: Date().timeIntervalSince(started))
    }

    /// The keys whose values differ between two recipes' YAML forms ("primaps-em.epochs: 8 -> 9").
    static func recipeDifferences(_ a: String, _ b: String) -> String {
        func pairs(_ y: String) -> [String: String] {
            var out: [String: String] = [:], section = ""
            for line in y.split(separator: "\n") {
                let text = line.split(separator: "#", maxSplits: 1).first.map(String.init) ?? ""
                guard let colon = text.firstIndex(of: ":") else { continue }
                let key = text[..<colon].trimmingCharacters(in: .whitespaces)
                let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if !line.hasPrefix(" ") { section = value.isEmpty ? key + "." : "" }
                let full = line.hasPrefix(" ") ? section + key : key
                if !value.isEmpty { out[full] = value }
            }
            return out
        }
        let pa = pairs(a), pb = pairs(b)
        let keys = Set(pa.keys).union(pb.keys).sorted().filter { pa[$0] != pb[$0] }
        if keys.isEmpty { return "the text differs" }
        return keys.map { "\($0): \(pa[$0] ?? "(none)") in the checkpoint, \(pb[$0] ?? "(none)") now" }.joined(separator: "; ")
    }

    static func runner(for kind: FitStageKind) -> any StageRunner {
        switch kind {
        case .pcaInit: return PCAInitRunner()
        case .cosineKMeans: return CosineKMeansRunner()
        case .primapsEM: return PriMaPsEMRunner()
        case .maskContrast: return MaskContrastRunner()
        case .segmentKMeans: return SegmentKMeansRunner()
        }
    }

    /// PCA of a seeded sample of feature rows (streamed block by block, bounded memory): the
    /// first K principal directions, gains 1. Per-image Gram matrices on all threads, merged in
    /// image order, so the result does not depend on the thread count. O(rows C^2 + C^3).
    public static func pcaInitialisation(store: FeatureStore, recipe: Recipe, threads: Int = 1) throws -> PrototypeModel {
        let l = store.layout
        let k = min(recipe.pcaSampleImages, l.imageCount)
        var rng = SeededRandom(seed: FitSeeds.pcaSample(recipe.seed))
        let images = rng.sample(k, from: l.imageCount).sorted()
        var acc = PCAAccumulator(channels: l.channels)
        let executor = DistributedExecutor(threads: threads)
        let stream = try StoreStream(store: store, subset: images, prefetch: 4 * max(threads, 1), decodeThreads: threads)
        let rows = recipe.pcaRowsPerImage
        var shift: [Float] = []
        while true {
            let items = try stream.nextBatch(4 * max(threads, 1))
            if items.isEmpty { break }
            let sampled: [Matrix] = items.map { item in
                var f = item.features
                if rows > 0 && rows < f.rows {
                    var r = SeededRandom.stream(seed: FitSeeds.pcaSample(recipe.seed), index: UInt64(item.index))
                    f = f.gatherRows(r.sample(rows, from: f.rows).sorted())
                }
                return f
            }
            // The shift (the first sampled image's mean) is shared by every contribution.
            if shift.isEmpty, let first = sampled.first(where: { $0.rows > 0 }) { shift = first.columnMeans() }
            if shift.isEmpty { continue }
            let s = shift
            // Bad rows (non-finite) fail on every rank alike: each checks its batch before the exchange.
            for (item, f) in zip(items, sampled) {
                if let bad = Finite.describeFirstNonFinite(f.data, cols: max(f.cols, 1)) {
                    throw StoreError(file: store.path, dataset: "/features", "image \(item.index): PCA sample \(bad); remove or repair NaN/inf rows before fitting")
                }
                if f.cols != l.channels { throw StoreError(file: store.path, dataset: "/features", "image \(item.index): \(f.cols) channels, expected \(l.channels)") }
            }
            let parts = try executor.map(sampled.count) { i in try! PCAAccumulator.contribution(sampled[i], shift: s) }
            for p in parts { acc.merge(p, shift: s) }
        }
        let pca: PCA
        do { pca = try acc.finalize(components: recipe.classes) } catch {
            throw StoreError(file: store.path, dataset: "/features", "the PCA initialisation failed: \(error)")
        }
        return CosineKMeansTrainer.pcaInitialisation(pca)
    }

    /// How a peer start is recorded in the checkpoint's `init_from`.
    static func peerSource(_ path: String) -> String { path + ":/peer_clusters" }

    /// The peer's cluster-probe centroids in `path` (`/peer_clusters` of a store written by
    /// `unseg-extract --head`, normally the training store itself) as prototypes. Errors name the
    /// file: not a store, no centroids, another count than the recipe's classes, another width.
    static func peerPrototypes(from path: String, store: FeatureStore, recipe: Recipe) throws -> PrototypeModel {
        let lower = path.lowercased()
        if [".ckpt", ".pth", ".pt"].contains(where: lower.hasSuffix) {
            throw StoreError(file: path, "is a PyTorch checkpoint; unseg reads the peer's cluster probe from the store that `unseg-extract --head stego:\(path)` (or hp:) writes (/peer_clusters): pass that store to --init-from-peer")
        }
        let src = try path == store.path ? store : FeatureStore(path: path)
        guard let clusters = try src.peerClusters() else {
            throw StoreError(file: path, dataset: "/peer_clusters", "missing; --init-from-peer needs a store written with `unseg-extract --head stego:F` (or hp:F), which stores the peer's cluster probe; this store holds \(src.metadata.backbone) features")
        }
        guard clusters.rows == recipe.classes else {
            throw RecipeError("classes: the recipe asks for \(recipe.classes) prototypes but the peer's cluster probe in \(path):/peer_clusters has \(clusters.rows) centroids (a peer trained with extra clusters?); use a recipe with classes: \(clusters.rows), or a peer checkpoint with \(recipe.classes) clusters")
        }
        guard clusters.cols == store.layout.channels else {
            throw StoreError(file: path, dataset: "/peer_clusters", "centroids have \(clusters.cols) channels but \(store.path):/features has \(store.layout.channels); the peer's cluster probe must come from the store of the same head (extract both with the same --head)")
        }
        return PrototypeModel(directions: clusters, gains: [Float](repeating: 1, count: clusters.rows))
    }

    /// The prototypes a finished checkpoint gives `unseg predict` (momentum copy, its recipe's
    /// selection), checked against `store` and `recipe`. Errors name the file and what to do.
    static func initialPrototypes(from path: String, store: FeatureStore, recipe: Recipe) throws -> PrototypeModel {
        let src = try FitCheckpoint.load(path: path)
        try src.checkCompatible(with: store, checkpointPath: path)
        guard src.isDone else {
            throw StoreError(file: path, "is an unfinished fit (stage \(src.stage?.rawValue ?? "?"), step \(src.step)); finish it with `unseg fit --resume --checkpoint \(path)` before starting from it")
        }
        let selection = (try? src.recipe.selection) ?? .last
        let model = src.prototypes(copy: .momentum, selection: selection)
        guard model.classCount == recipe.classes else {
            throw RecipeError("classes: the recipe asks for \(recipe.classes) prototypes but \(path) has \(model.classCount); start from a checkpoint fitted with the same number of classes")
        }
        return model
    }

    /// What the stages share: the store, the batch layout, checkpoints, validation, progress.
    struct Loop {
        let options: FitOptions
        let store: FeatureStore
        let batchLen: Int
        let batches: Int
        let startStep: Int
        let totalSteps: Int
        let proposals: ProposalProvider
        let validator: Validator?
        let executor: any ImageExecutor
        var recipe: Recipe { options.recipe }

        /// The store indices of the remaining batches of the checkpoint's current epoch.
        func remainingOrder(_ ck: FitCheckpoint, stage: Int) -> [Int] {
            var rng = SeededRandom(seed: FitSeeds.epochOrder(recipe.seed, stage: stage, epoch: ck.epoch))
            let order = rng.permutation(store.count)
            return Array(order[(ck.batchInEpoch * batchLen)..<(batches * batchLen)])
        }

        /// The epochs of a training stage: the remaining batches of every epoch (in the seeded
        /// order of `orderStage`), each handed to `step`, which returns the step's loss and the
        /// prototypes to validate; then the bookkeeping of `afterStep`.
        /// `step` returns the loss and the prototypes validation looks at; `state` gives the
        /// stage's state as a record, taken only when a checkpoint is written and at the end.
        func runEpochs(_ ck: inout FitCheckpoint, kind: FitStageKind, orderStage: Int, epochs: Int,
                       state: () -> StateRecord,
                       step: (_ items: [StoreItem], _ epoch: Int) throws -> (loss: Double, model: PrototypeModel?)) throws {
            // Under mpirun each rank reads only its share of every batch (the images its executor
            // works on); the others are `StoreItem.elsewhere`. One process reads them all.
            let own = Distributed.shard(batchLen)
            while ck.epoch < epochs {
                let order = remainingOrder(ck, stage: orderStage)
                let mine = stride(from: 0, to: order.count, by: batchLen).flatMap { b in own.map { order[b + $0] } }
                let stream = try StoreStream(store: store, subset: mine, prefetch: max(own.count, 1), decodeThreads: options.threads)
                for b in stride(from: 0, to: order.count, by: batchLen) {
                    let here = try stream.nextBatch(own.count)
                    let items = (0..<batchLen).map { j in own.contains(j) ? here[j - own.lowerBound] : StoreItem.elsewhere(order[b + j]) }
                    let (loss, model) = try step(items, ck.epoch)
                    try afterStep(&ck, kind: kind, stageEpochs: epochs, loss: loss, state: state) { model }
                }
            }
            ck.states[kind] = state()
        }

        /// Bookkeeping after every step: position, validation at epoch ends, checkpoints, progress.
        func afterStep(_ ck: inout FitCheckpoint, kind: FitStageKind, stageEpochs: Int, loss: Double,
                       state: () -> StateRecord, model: () -> PrototypeModel?) throws {
            ck.step += 1
            ck.batchInEpoch += 1
            var epochEnded = false
            let label = kind == .cosineKMeans ? "warm-up" : (kind == .primapsEM ? "PriMaPs-EM" : (kind == .maskContrast ? "MaskContrast head" : kind.rawValue))
            if ck.batchInEpoch == batches {
                ck.epoch += 1
                ck.batchInEpoch = 0
                epochEnded = true
                var line = String(format: "%@ epoch %d/%d: loss %.4f", label, ck.epoch, stageEpochs, loss)
                if let v = validator, let m = model() {
                    let r = try v.evaluate(m)
                    let rec = ValRecord(stage: kind, epoch: ck.epoch, miou: r.miou, accuracy: r.accuracy)
                    ck.valHistory.append(rec)
                    if ck.bestRecord == nil || rec.miou > ck.bestRecord!.miou {
                        ck.bestRecord = rec
                        ck.best = m
                    }
                    line += String(format: ", val mIoU %.2f Acc %.2f", r.miou, r.accuracy)
                }
                options.log?(line)
            }
            if ck.step % recipe.checkpointEvery == 0 || epochEnded {
                ck.states[kind] = state()
                try ck.write(to: options.checkpointPath)
            }
            options.progress?.update(done: ck.step - startStep, total: totalSteps - startStep,
                                     note: String(format: "%@ ep %d loss %.4f", kind == .cosineKMeans ? "warm-up" : (kind == .primapsEM ? "EM" : kind.rawValue), ck.epoch + 1, loss))
            if options.stepDelay > 0 { Thread.sleep(forTimeInterval: options.stepDelay) }
            if let s = options.stopAfterStep, ck.step >= s { throw StopRequested() }
        }
    }
}

/// One stage of a fit, as the driver sees it. A new method is a new runner (and a recipe
/// section); the driver, the checkpoint and `--resume` / `--init-from` need no change.
protocol StageRunner {
    var kind: FitStageKind { get }
    /// Epochs of training steps (0 for one-pass stages such as the PCA).
    func epochs(_ recipe: Recipe) -> Int
    /// The stage's fresh state, starting from what the previous stage produced (nil for a first stage).
    func initialState(from previous: StageOutput?, recipe: Recipe, threads: Int) throws -> StateRecord
    /// Runs (or resumes from `ck.states[kind]`) the stage to its end; returns what it produced.
    func run(_ ck: inout FitCheckpoint, context: FitJob.Loop) throws -> StageOutput
}

/// What a stage hands to the next: prototypes (the prototype stages, segment k-means' centroids)
/// and / or a trained projection head (maskcontrast).
struct StageOutput {
    var prototypes: PrototypeModel?
    var head: ProjectionHead?
    init(prototypes: PrototypeModel? = nil, head: ProjectionHead? = nil) { self.prototypes = prototypes; self.head = head }
}

extension StageRunner {
    /// The stage's saved state in the checkpoint (a missing one is a damaged checkpoint).
    func savedState(_ ck: FitCheckpoint, _ c: FitJob.Loop) throws -> StateRecord {
        guard let saved = ck.states[kind] else {
            throw StoreError(file: c.options.checkpointPath, "damaged checkpoint: /stages/\(kind.rawValue) is missing")
        }
        return saved
    }
}

/// `pca-init`: the PCA of a seeded sample of rows (state: the model).
struct PCAInitRunner: StageRunner {
    var kind: FitStageKind { .pcaInit }
    func epochs(_ recipe: Recipe) -> Int { 0 }
    func initialState(from previous: StageOutput?, recipe: Recipe, threads: Int) throws -> StateRecord {
        var r = StateRecord()
        r.set("done", 0)
        return r
    }
    func run(_ ck: inout FitCheckpoint, context c: FitJob.Loop) throws -> StageOutput {
        if let r = ck.states[.pcaInit], (try? r.int("done")) == 1 { return StageOutput(prototypes: try PrototypeModel(record: r, at: "model")) }
        c.options.log?("PCA initialisation on up to \(c.recipe.pcaSampleImages) images of \(c.store.path)")
        let m = try FitJob.pcaInitialisation(store: c.store, recipe: c.recipe, threads: c.options.threads)
        var r = StateRecord()
        m.save(into: &r, at: "model")
        r.set("done", 1)
        ck.states[.pcaInit] = r
        return StageOutput(prototypes: m)
    }
}

/// `cosine-kmeans`: the warm-up trainer over epochs of batches.
struct CosineKMeansRunner: StageRunner {
    var kind: FitStageKind { .cosineKMeans }
    func epochs(_ recipe: Recipe) -> Int { recipe.warmupEpochs }
    func initialState(from previous: StageOutput?, recipe: Recipe, threads: Int) throws -> StateRecord {
        guard let m = previous?.prototypes else {
            throw RecipeError("stages: cosine-kmeans needs initial prototypes; list pca-init before it or pass --init-from")
        }
        return try CosineKMeansTrainer(initial: m, config: recipe.warmupConfig(threads: threads)).state.record
    }
    func run(_ ck: inout FitCheckpoint, context c: FitJob.Loop) throws -> StageOutput {
        let saved = try savedState(ck, c)
        let state = try CosineKMeansTrainerState(record: saved)
        var t = try CosineKMeansTrainer(state: state, config: c.recipe.warmupConfig(threads: c.options.threads))
        try c.runEpochs(&ck, kind: .cosineKMeans, orderStage: 0, epochs: c.recipe.warmupEpochs, state: { t.state.record }) { items, _ in
            let st = try t.step(batch: items.map(\.features), executor: c.executor)
            return (st.loss, t.model)
        }
        return StageOutput(prototypes: t.model)
    }
}

/// `primaps-em`: PriMaPs-EM over epochs of batches with their mask proposals.
struct PriMaPsEMRunner: StageRunner {
    var kind: FitStageKind { .primapsEM }
    func epochs(_ recipe: Recipe) -> Int { recipe.epochs }
    func initialState(from previous: StageOutput?, recipe: Recipe, threads: Int) throws -> StateRecord {
        guard let m = previous?.prototypes else {
            throw RecipeError("stages: primaps-em needs initial prototypes; list pca-init (and cosine-kmeans) before it, or pass --init-from CHECKPOINT, or --init-from-peer STORE for a peer's store (the *-stego_* / *-hp_* recipes)")
        }
        return try EMTrainer(initial: m, config: recipe.emConfig(threads: threads)).state.record
    }
    func run(_ ck: inout FitCheckpoint, context c: FitJob.Loop) throws -> StageOutput {
        let saved = try savedState(ck, c)
        let state = try EMTrainerState(record: saved)
        var t = try EMTrainer(state: state, config: c.recipe.emConfig(threads: c.options.threads))
        let l = c.store.layout
        if l.viewCount > 0 {
            c.options.log?("M-step views: one of the \(l.viewCount) augmented views in \(c.store.path):/features_views per image and epoch (seeded)")
        }
        let consistency = c.recipe.primapsEM.consistencyWeight > 0
        if consistency {
            try Self.checkCropViews(store: c.store, recipe: c.recipe)
            c.options.log?("M-step consistency: weight \(c.recipe.primapsEM.consistencyWeight), teacher \(c.recipe.primapsEM.consistencyTeacher.rawValue), \(c.recipe.primapsEM.consistencyTarget.rawValue) targets, one of the \(l.cropCount) crops in \(c.store.path):/features_crops per image and epoch (seeded)")
        }
        try c.runEpochs(&ck, kind: .primapsEM, orderStage: 1, epochs: c.recipe.epochs, state: { t.state.record }) { items, epoch in
            let masks = try c.proposals.masks(for: items)
            let batch = try zip(items, masks).map { item, m in
                var sample = EMSample(features: item.features, height: l.gridHeight, width: l.gridWidth,
                                      labelHeight: l.imageHeight, labelWidth: l.imageWidth, masks: m)
                if l.viewCount > 0 && item.isHere {
                    // The reference's student augmentation: the M-step sees an augmented view. Which
                    // view is a function of (seed, epoch, image), so resuming and threads change nothing.
                    var r = SeededRandom.stream(seed: FitSeeds.mStepView(c.recipe.seed), index: UInt64(epoch) << 32 | UInt64(item.index))
                    sample.mStepFeatures = try c.store.features(item.index, source: .view(r.int(below: l.viewCount)))
                }
                if consistency && item.isHere {
                    // Which crop is a function of (seed, epoch, image), as the views.
                    var r = SeededRandom.stream(seed: FitSeeds.consistencyCrop(c.recipe.seed), index: UInt64(epoch) << 32 | UInt64(item.index))
                    let k = r.int(below: l.cropCount)
                    sample.crop = EMCrop(features: try c.store.features(item.index, source: .crop(k)), box: c.store.cropBoxes[k][item.index])
                }
                return sample
            }
            let st = try t.step(batch: batch, executor: c.executor)
            return (st.loss, t.momentum)
        }
        return StageOutput(prototypes: t.momentum)
    }
}

extension PriMaPsEMRunner {
    /// A recipe with the multi-scale consistency needs the store's crop views (checked before any stage runs).
    static func checkCropViews(store: FeatureStore, recipe: Recipe) throws {
        let w = recipe.primapsEM.consistencyWeight
        guard w > 0, recipe.stages.contains(.primapsEM), store.layout.cropCount == 0 else { return }
        throw StoreError(file: store.path, dataset: "/features_crops", "missing; primaps-em.consistency_weight \(w) needs crop views of the training images: extract them with `unseg-extract --crops 2` (or `unseg synth --crops 2`), or set consistency_weight: 0")
    }
}

struct StopRequested: Error {}

/// Proposal masks at label resolution for the EM stage: from a proposals file (`/refined`
/// `[N, H, W]` when present, else `/masks` `[N, h, w]` upsampled nearest) or PriMaPs on the fly
/// (computed once per image and cached at feature resolution: `N h w` bytes).
final class ProposalProvider {
    let onTheFly: Bool
    /// On-the-fly proposals are CRF-refined (recipe `primaps-crf` and the store has images).
    let refined: Bool
    let store: FeatureStore
    /// The store in its masks view when it holds a peer's code (`/features_backbone`): PriMaPs
    /// computes the masks from the backbone's features, as the reference does; nil otherwise.
    let maskStore: FeatureStore?
    let threads: Int
    let options: ProposeOptions
    private var file: ProposalsFile?
    /// On-the-fly masks, computed once per image: at feature resolution (`N h w` bytes) when
    /// unrefined, at label resolution (`N H W` bytes) when CRF-refined.
    private var cache: [Int: [UInt8]] = [:]
    /// Feature-resolution masks of the mask stages (PriMaPs on the fly, unrefined), once per image.
    private var featureCache: [Int: [UInt8]] = [:]
    let featureOptions: ProposeOptions

    init(options o: FitOptions, store: FeatureStore) throws {
        self.store = store
        maskStore = store.layout.backboneChannels > 0 && o.proposalsPath == nil ? try FeatureStore(path: store.path, view: .masks) : nil
        threads = o.threads
        var po = ProposeOptions(method: .primaps, primaps: PriMaPsConfig(threshold: Float(o.recipe.primapsThreshold)),
                                refine: .none, threads: o.threads)
        if let p = o.proposalsPath {
            file = try ProposalsFile(path: p, store: store)
            onTheFly = false
            refined = false
        } else {
            if o.recipe.masks.source == .file && o.recipe.runs(.segmentKMeans) {
                throw RecipeError("masks.source: the recipe says 'file' but no proposals file was given; pass --proposals P.h5 (written by `unseg propose` from \(store.path)) or set 'source: primaps' to compute PriMaPs masks on the fly")
            }
            if o.recipe.proposals == .file && o.recipe.epochs > 0 && o.recipe.runs(.primapsEM) {
                throw RecipeError("primaps-em.proposals: the recipe says 'file' but no proposals file was given; pass --proposals P.h5 (written by `unseg propose --refine crf` from \(store.path)) or set 'proposals: primaps-crf' to compute them on the fly")
            }
            onTheFly = true
            refined = o.recipe.proposals == .primapsCRF && store.layout.hasImages
            if refined { po.refine = .crf }
        }
        options = po
        featureOptions = ProposeOptions(method: .primaps, primaps: PriMaPsConfig(threshold: Float(o.recipe.masks.primapsThreshold)),
                                        refine: .none, threads: o.threads)
    }

    /// The PriMaPs threshold of the proposals file's masks, when it records one.
    var fileThreshold: Double? { file?.primapsThreshold }

    /// How the mask stages' masks are made, for the log.
    var featureSummary: String {
        onTheFly ? "PriMaPs on the fly (threshold \(featureOptions.primaps.threshold)) at feature resolution" + backboneNote : "file"
    }

    private var backboneNote: String { maskStore == nil ? "" : " from \(store.path):/features_backbone (the backbone's features; the fit reads the peer's code in /features)" }

    /// The items with the features the masks are computed from (the backbone's, for a peer's store).
    private func maskItems(_ items: [StoreItem]) throws -> [StoreItem] {
        guard let m = maskStore else { return items }
        let backbone = try Parallel.tryMap(items.count, threads: threads) { try m.features(items[$0].index) }
        return zip(items, backbone).map { var it = $0; it.features = $1; return it }
    }

    /// `[h*w]` mask maps at feature resolution (0 = background) for the items, in order: the
    /// file's `/masks`, or PriMaPs on the fly (computed once per image).
    func featureMasks(for items: [StoreItem]) throws -> [[UInt8]] {
        if let f = file { return try items.map { $0.isHere ? try f.masks($0.index) : [] } }
        let missing = try maskItems(items.filter { $0.isHere && featureCache[$0.index] == nil })
        if !missing.isEmpty {
            let (opts, layout, path) = (featureOptions, (maskStore ?? store).layout, store.path)
            let results = try Parallel.tryMap(missing.count, threads: threads) { j in
                try ProposeJob.process(missing[j], layout: layout, options: opts, storePath: path)
            }
            for (item, (p, _)) in zip(missing, results) { featureCache[item.index] = p.labels }
        }
        return items.map { $0.isHere ? featureCache[$0.index]! : [] }
    }

    /// How the masks are made, for the log.
    var summary: String {
        if !onTheFly { return "file" }
        return (refined ? "PriMaPs on the fly (threshold \(options.primaps.threshold)), refined with the dense CRF (the reference's proposals)"
            : "PriMaPs on the fly (threshold \(options.primaps.threshold)), unrefined (nearest-upsampled)") + backboneNote
    }

    /// `[H*W]` mask maps (0 = background) for the items, in order (empty for images another
    /// process of an MPI job works on).
    func masks(for items: [StoreItem]) throws -> [[UInt8]] {
        let l = store.layout
        if let f = file { return try items.map { $0.isHere ? try f.labelResolutionMasks($0.index) : [] } }
        let missing = items.filter { $0.isHere && cache[$0.index] == nil }
        if !missing.isEmpty {
            let work: [StoreItem] = try maskItems(missing).map { item in
                var it = item
                if refined { it.image = try store.image(item.index) }
                return it
            }
            let (opts, layout, path) = (options, (maskStore ?? store).layout, store.path)
            let results = try Parallel.tryMap(work.count, threads: threads) { j in
                try ProposeJob.process(work[j], layout: layout, options: opts, storePath: path)
            }
            for (item, (p, r)) in zip(missing, results) { cache[item.index] = r ?? p.labels }
        }
        if refined { return items.map { $0.isHere ? cache[$0.index]! : [] } }
        return items.map { $0.isHere ? NearestResampler.resample(cache[$0.index]!, height: l.gridHeight, width: l.gridWidth,
                                                                 toHeight: l.imageHeight, toWidth: l.imageWidth) : [] }
    }
}

/// mIoU / accuracy of prototypes on a labelled store (argmax of the logits at label resolution,
/// Hungarian matching), computed in memory in parallel over images (integer counts, so the
/// result does not depend on the thread count).
public final class Validator: Sendable {
    public let store: FeatureStore
    public let labelProtocol: LabelProtocol
    let threads: Int

    public init(path: String, classCount: Int, trainChannels: Int? = nil, threads: Int) throws {
        store = try FeatureStore(path: path)
        guard store.layout.hasLabels else {
            throw StoreError(file: path, dataset: "/labels", "missing; --val needs a store with ground-truth labels")
        }
        if let c = trainChannels, c != store.layout.channels {
            throw StoreError(file: path, dataset: "/features", "has \(store.layout.channels) channels but the training store has \(c); validate on features of the same backbone")
        }
        // Read every image once before training: damaged features (NaN, inf) fail now, not at the
        // end of the first epoch with a checkpoint already written.
        // Under mpirun each rank checks (and later evaluates) its shard of the val images.
        let own = Array(Distributed.shard(store.layout.imageCount))
        let opened = store
        try Distributed.agree {
            let check = try StoreStream(store: opened, subset: own, includeLabels: true, prefetch: 4, decodeThreads: threads)
            while try check.next() != nil {}
        }
        if store.metadata.labelProtocol.flatMap({ try? LabelProtocol.named($0) }) != nil {
            labelProtocol = try EvaluateJob.labelProtocol(for: store, classCount: nil)
        } else {
            labelProtocol = try EvaluateJob.labelProtocol(for: store, classCount: classCount)
        }
        self.threads = threads
    }

    /// Confusion of `model`'s predictions against the labels, then the metrics. With `embedding`
    /// (mask clustering), the cells go through it first and `model` is its centroids.
    public func evaluate(_ model: PrototypeModel, embedding: MaskClusterModel? = nil) throws -> EvaluationResult {
        let l = store.layout
        // Under mpirun each rank counts its shard; the integer counts are summed exactly.
        let local = try Distributed.agree { () -> ConfusionMatrix in
            var confusion = try ConfusionMatrix(clusterCount: model.classCount, classCount: labelProtocol.classCount)
            let stream = try StoreStream(store: store, subset: Array(Distributed.shard(l.imageCount)), includeLabels: true,
                                         prefetch: 8, decodeThreads: threads)
            while true {
                let items = try stream.nextBatch(max(8, 4 * threads))
                if items.isEmpty { break }
                let preds = Parallel.map(items.count, threads: threads) { i in
                    model.predict(features: embedding.map { $0.embedCells(items[i].features) } ?? items[i].features,
                                  h: l.gridHeight, w: l.gridWidth, H: l.imageHeight, W: l.imageWidth)
                }
                for (item, p) in zip(items, preds) { try confusion.accumulate(predictions: p, labels: item.labels!) }
            }
            return confusion
        }
        let confusion = try local.summed(by: Distributed.allreduceSum)
        return try Evaluation.evaluate(confusion, mode: .hungarian, classNames: labelProtocol.classNames)
    }
}
