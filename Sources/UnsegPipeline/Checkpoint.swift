import Foundation
import UnsegClustering
import UnsegCore
import UnsegLinAlg
import UnsegStore

/// Validation metrics after one epoch of a stage.
public struct ValRecord: Sendable, Equatable {
    /// The stage of the epoch (warm-up epochs are evaluated too).
    public var stage: FitStageKind
    /// Epoch number within the stage, 1-based.
    public var epoch: Int
    /// mIoU and pixel accuracy (%, Hungarian matching) of the stage's prototypes (momentum copy).
    public var miou: Double
    public var accuracy: Double
    public init(stage: FitStageKind, epoch: Int, miou: Double, accuracy: Double) {
        self.stage = stage; self.epoch = epoch; self.miou = miou; self.accuracy = accuracy
    }
}

/// Where a fit stands and everything it needs to resume bit-exactly: the recipe, the position
/// (stage, step, epoch, batch), the saved state of every stage that has started (a `StateRecord`
/// each, written by the store layer's `CheckpointFile` as `/stages/<name>/...`), the validation
/// history and the best prototypes. Described in Checkpoints/README.md.
public struct FitCheckpoint: Sendable, Equatable {
    /// The recipe that produced it (its `yaml()`).
    public var recipeYAML: String
    /// The stage running now, nil when the fit is finished.
    public var stage: FitStageKind?
    /// Steps done in all stages.
    public var step: Int
    /// Completed epochs of the current stage.
    public var epoch: Int
    /// Batches done in the current (incomplete) epoch of the current stage.
    public var batchInEpoch: Int
    /// Saved state of every stage that has started, by stage.
    public var states: [FitStageKind: StateRecord]
    /// Validation metrics per epoch (empty without `--val`).
    public var valHistory: [ValRecord]
    /// Momentum prototypes of the best validation epoch so far (with `--val`).
    public var best: PrototypeModel?
    public var bestRecord: ValRecord?
    /// The store the fit read and its feature shape.
    public var storePath: String
    public var storeImages: Int
    public var featureHeight: Int
    public var featureWidth: Int
    public var channels: Int
    /// The checkpoint whose prototypes started the first training stage (`unseg fit --init-from`),
    /// or nil. Attribute `init_from` when set.
    public var initFrom: String? = nil

    public var isDone: Bool { stage == nil }
    public var recipe: Recipe { get throws { try Recipe.parse(recipeYAML) } }

    public init(recipeYAML: String, stage: FitStageKind?, step: Int, epoch: Int, batchInEpoch: Int,
                states: [FitStageKind: StateRecord], valHistory: [ValRecord], best: PrototypeModel?, bestRecord: ValRecord?,
                storePath: String, storeImages: Int, featureHeight: Int, featureWidth: Int, channels: Int) {
        self.recipeYAML = recipeYAML; self.stage = stage; self.step = step; self.epoch = epoch
        self.batchInEpoch = batchInEpoch; self.states = states; self.valHistory = valHistory; self.best = best
        self.bestRecord = bestRecord; self.storePath = storePath; self.storeImages = storeImages
        self.featureHeight = featureHeight; self.featureWidth = featureWidth; self.channels = channels
    }

    // MARK: what the stages hold

    /// Loss per step of a stage (empty when it has not run).
    public func loss(_ kind: FitStageKind) -> [Double] { (try? states[kind]?.doubles("loss")) ?? [] }
    /// Loss per warm-up (cosine k-means) step.
    public var warmupLoss: [Double] { loss(.cosineKMeans) }
    /// Loss per PriMaPs-EM step.
    public var emLoss: [Double] { loss(.primapsEM) }
    public var warmupSteps: Int { warmupLoss.count }
    public var emSteps: Int { emLoss.count }

    /// The latest stage that has produced prototypes, and its running and momentum copies
    /// (equal for stages with one copy).
    public func latestPrototypes() throws -> (FitStageKind, running: PrototypeModel, momentum: PrototypeModel) {
        for kind in FitStageKind.allCases.reversed() {
            guard let r = states[kind] else { continue }
            switch kind {
            case .segmentKMeans:
                guard let m = try maskModel() else { continue }   // not clustered yet
                return (kind, m.prototypes, m.prototypes)
            case .maskContrast:
                continue   // a head, no prototypes
            case .primapsEM:
                let s = try EMTrainerState(record: r)
                return (kind, s.running, s.momentum)
            case .cosineKMeans:
                let s = try CosineKMeansTrainerState(record: r)
                return (kind, s.model, s.model)
            case .pcaInit:
                guard r.arrays["model/directions"] != nil else { continue }   // not computed yet
                let m = try PrototypeModel(record: r, at: "model")
                return (kind, m, m)
            }
        }
        throw ClusteringError("the checkpoint holds no prototypes yet (no stage has started)")
    }

    /// The mask clustering of a finished `segment-kmeans` stage (nil before it).
    public func maskModel() throws -> MaskClusterModel? {
        guard let r = states[.segmentKMeans], (try? r.int("done")) == 1 else { return nil }
        return try MaskClusterModel(record: r, at: "model")
    }

    /// Every saved stage decodes (damaged or hand-edited files fail on load, not mid-run).
    func validateStates() throws {
        for (kind, r) in states {
            switch kind {
            case .pcaInit: if r.arrays["model/directions"] != nil { _ = try PrototypeModel(record: r, at: "model") }
            case .cosineKMeans: _ = try CosineKMeansTrainerState(record: r)
            case .primapsEM: _ = try EMTrainerState(record: r)
            case .maskContrast: if r.scalars["fresh"] == nil { _ = try MaskContrastTrainerState(record: r) }
            case .segmentKMeans:
                if r.scalars["head/kind"] != nil { _ = try ProjectionHead(record: r, at: "head") }
                _ = try maskModel()
            }
        }
    }

    /// Feature channels the fitted model reads.
    public var inputChannels: Int {
        if let m = try? maskModel() { return m.head.inputChannels }
        return running.channelCount
    }

    /// Running prototypes of the latest stage.
    public var running: PrototypeModel { (try? latestPrototypes().running) ?? PrototypeModel(directions: Matrix(rows: 1, cols: max(channels, 1))) }
    /// Momentum prototypes of the latest stage.
    public var momentum: PrototypeModel { (try? latestPrototypes().momentum) ?? PrototypeModel(directions: Matrix(rows: 1, cols: max(channels, 1))) }

    /// The prototypes the recipe's `selection` picks: `best` for best-val when there is one,
    /// else the requested copy of the latest stage.
    public func prototypes(copy: PrototypeCopy, selection: ModelSelection) -> PrototypeModel {
        if selection == .bestVal, let b = best { return b }
        return copy == .momentum ? momentum : running
    }

    // MARK: file

    /// Writes the checkpoint atomically (the store layer's `CheckpointFile`).
    public func write(to path: String) throws {
        guard Distributed.isLead else { return }   // under mpirun every rank holds the same state; rank 0 writes it
        let classes = (try? latestPrototypes())?.running.classCount
        var bestPair: (record: CheckpointValRecord, state: StateRecord)?
        if let b = best, let r = bestRecord {
            var st = StateRecord()
            b.save(into: &st, at: "model")
            bestPair = (Self.fileRecord(r), st)
        }
        let file = CheckpointFile(recipe: recipeYAML, stage: stage?.rawValue, step: step, epoch: epoch,
                                  batchInEpoch: batchInEpoch, storePath: storePath, storeImages: storeImages,
                                  featureShape: [featureHeight, featureWidth, channels], classes: classes, initFrom: initFrom,
                                  stages: FitStageKind.allCases.compactMap { k in states[k].map { (k.rawValue, $0) } },
                                  validation: valHistory.map(Self.fileRecord), best: bestPair)
        try file.write(to: path)
    }

    static func fileRecord(_ r: ValRecord) -> CheckpointValRecord {
        CheckpointValRecord(stage: r.stage.rawValue, epoch: r.epoch, miou: r.miou, accuracy: r.accuracy)
    }

    /// Reads a checkpoint written by `write(to:)`. Errors name the file and what is wrong.
    public static func load(path: String) throws -> FitCheckpoint {
        let file = try CheckpointFile.read(path: path)
        func fail(_ msg: String) -> StoreError { StoreError(file: path, msg) }
        func kind(_ name: String) throws -> FitStageKind {
            guard let k = FitStageKind(rawValue: name) else {
                throw fail("stage '\(name)' is not one of \(FitStageKind.allCases.map(\.rawValue).joined(separator: ", ")), done")
            }
            return k
        }
        do {
            let shape = file.featureShape
            guard shape.count == 3, shape.allSatisfy({ $0 >= 1 && $0 <= 1 << 20 }) else {
                throw fail("feature_shape is \(shape); expected 3 positive sizes [h, w, C]")
            }
            var states: [FitStageKind: StateRecord] = [:]
            for (name, r) in file.stages { states[try kind(name)] = r }
            let val = try file.validation.map { ValRecord(stage: try kind($0.stage), epoch: $0.epoch, miou: $0.miou, accuracy: $0.accuracy) }
            var ck = FitCheckpoint(recipeYAML: file.recipe, stage: try file.stage.map(kind), step: file.step,
                                   epoch: file.epoch, batchInEpoch: file.batchInEpoch, states: states,
                                   valHistory: val, best: nil, bestRecord: nil, storePath: file.storePath,
                                   storeImages: file.storeImages, featureHeight: shape[0], featureWidth: shape[1],
                                   channels: shape[2])
            if let b = file.best {
                ck.best = try PrototypeModel(record: b.state, at: "model")
                ck.bestRecord = ValRecord(stage: try kind(b.record.stage), epoch: b.record.epoch, miou: b.record.miou,
                                          accuracy: b.record.accuracy)
            }
            ck.initFrom = file.initFrom
            guard ck.step >= 0, ck.epoch >= 0, ck.batchInEpoch >= 0 else {
                throw fail("damaged checkpoint: step \(ck.step), epoch \(ck.epoch), batch_in_epoch \(ck.batchInEpoch) must not be negative; fit again or restore the file")
            }
            if let k = ck.stage, states[k] == nil {
                throw fail("damaged checkpoint: the run is in stage '\(k.rawValue)' but /stages/\(k.rawValue) is missing; fit again or restore the file")
            }
            // Every saved stage must decode (damaged or hand-edited files fail here, not mid-run).
            try ck.validateStates()
            return ck
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(file: path, "damaged or incomplete checkpoint: \(error)")
        }
    }

    /// Checks that `store` has the feature channels the prototypes were fitted on.
    /// Error: "S.h5:/features has 768 channels but the checkpoint C.h5 was fitted on 384; ...".
    public func checkCompatible(with store: FeatureStore, checkpointPath: String) throws {
        if store.layout.channels != channels || inputChannels != store.layout.channels {
            throw StoreError(file: store.path, dataset: "/features",
                             "has \(store.layout.channels) channels but the checkpoint \(checkpointPath) was fitted on \(channels); use a checkpoint fitted on features of the same backbone (or fit one on this store with `unseg fit`)")
        }
    }
}
