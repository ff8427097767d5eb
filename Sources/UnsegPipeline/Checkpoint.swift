import Foundation
import UnsegClustering
import UnsegHDF5
import UnsegLinAlg
import UnsegStore

/// Stage a fit is in.
public enum FitStage: String, Sendable, CaseIterable, Equatable {
    /// Cosine k-means warm-up (after the PCA initialisation).
    case warmup
    /// PriMaPs-EM.
    case em
    /// Finished.
    case done
}

/// Validation metrics after one epoch.
public struct ValRecord: Sendable, Equatable {
    /// Stage of the epoch (warm-up epochs are evaluated too).
    public var stage: FitStage
    /// Epoch number within the stage, 1-based.
    public var epoch: Int
    /// mIoU and pixel accuracy (%, Hungarian matching) of the momentum prototypes.
    public var miou: Double
    public var accuracy: Double
    public init(stage: FitStage, epoch: Int, miou: Double, accuracy: Double) {
        self.stage = stage; self.epoch = epoch; self.miou = miou; self.accuracy = accuracy
    }
}

/// Everything a fit needs to resume bit-exactly, and the fitted prototypes
/// (HDF5 format "unseg.checkpoint" version 1, described in Checkpoints/README.md).
///
/// Shapes: prototypes `[K, C]` directions and `[K]` gains; Adam moments over the
/// trainer's flat parameters (`K C` in the warm-up, `K C + K` in the EM stage).
public struct FitCheckpoint: Sendable, Equatable {
    public static let format = "unseg.checkpoint"
    public static let version = 1

    /// The recipe that produced it (its `yaml()`).
    public var recipeYAML: String
    public var stage: FitStage
    /// Steps done in all (warm-up + EM).
    public var step: Int
    /// Completed epochs of the current stage.
    public var epoch: Int
    /// Batches done in the current (incomplete) epoch of the current stage.
    public var batchInEpoch: Int
    /// Running prototypes (the warm-up's model during the warm-up).
    public var running: PrototypeModel
    /// Momentum prototypes (equal to `running` during the warm-up).
    public var momentum: PrototypeModel
    public var adam: AdamState
    public var momentumUpdates: Int
    /// The four xoshiro256** words of the current stage's trainer generator.
    public var rngState: [UInt64]
    /// Loss per warm-up step and per EM step.
    public var warmupLoss: [Double]
    public var emLoss: [Double]
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
    /// The checkpoint whose prototypes started the EM stage (`unseg fit --init-from`), or nil
    /// for PCA + warm-up. Attribute `init_from` when set.
    public var initFrom: String? = nil

    public var warmupSteps: Int { warmupLoss.count }
    public var emSteps: Int { emLoss.count }
    public var recipe: Recipe { get throws { try Recipe.parse(recipeYAML) } }

    /// The prototypes the recipe's `selection` picks: `best` for best-val when there is one,
    /// else the requested copy.
    public func prototypes(copy: PrototypeCopy, selection: ModelSelection) -> PrototypeModel {
        if selection == .bestVal, let b = best { return b }
        return copy == .momentum ? momentum : running
    }

    public init(recipeYAML: String, stage: FitStage, step: Int, epoch: Int, batchInEpoch: Int,
                running: PrototypeModel, momentum: PrototypeModel, adam: AdamState, momentumUpdates: Int,
                rngState: [UInt64], warmupLoss: [Double], emLoss: [Double], valHistory: [ValRecord],
                best: PrototypeModel?, bestRecord: ValRecord?, storePath: String, storeImages: Int,
                featureHeight: Int, featureWidth: Int, channels: Int) {
        self.recipeYAML = recipeYAML; self.stage = stage; self.step = step; self.epoch = epoch
        self.batchInEpoch = batchInEpoch; self.running = running; self.momentum = momentum; self.adam = adam
        self.momentumUpdates = momentumUpdates; self.rngState = rngState; self.warmupLoss = warmupLoss
        self.emLoss = emLoss; self.valHistory = valHistory; self.best = best; self.bestRecord = bestRecord
        self.storePath = storePath; self.storeImages = storeImages; self.featureHeight = featureHeight
        self.featureWidth = featureWidth; self.channels = channels
    }

    // MARK: writing

    /// Writes the checkpoint atomically (temporary file in the same directory, then rename).
    public func write(to path: String) throws {
        do {
            let out = try AtomicHDF5File(path: path)
            try fill(out.file!)
            try out.commit()
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: e.object, "cannot write the checkpoint: \(e.message)")
        }
    }

    private func fill(_ f: HDF5File) throws {
        try f.setAttribute("format", Self.format)
        try f.setAttribute("version", Self.version)
        try f.setAttribute("stage", stage.rawValue)
        try f.setAttribute("step", step)
        try f.setAttribute("epoch", epoch)
        try f.setAttribute("batch_in_epoch", batchInEpoch)
        try f.setAttribute("momentum_updates", momentumUpdates)
        try f.setAttribute("adam_step", adam.step)
        try f.setAttribute("recipe", recipeYAML)
        try f.setAttribute("store", storePath)
        try f.setAttribute("store_images", storeImages)
        try f.setAttribute("feature_shape", .ints([featureHeight, featureWidth, channels]))
        try f.setAttribute("classes", running.classCount)
        try f.setAttribute("channels", channels)
        if let src = initFrom { try f.setAttribute("init_from", src) }
        try writeModel(f, "running", running)
        try writeModel(f, "momentum", momentum)
        if let b = best { try writeModel(f, "best", b) }
        if let r = bestRecord {
            try f.setAttribute("best_stage", r.stage.rawValue)
            try f.setAttribute("best_epoch", r.epoch)
            try f.setAttribute("best_miou", r.miou)
            try f.setAttribute("best_accuracy", r.accuracy)
        }
        try write1D(f, "adam/m", adam.m)
        try write1D(f, "adam/v", adam.v)
        try write1D(f, "rng_state", rngState)
        try write1D(f, "history/warmup_loss", warmupLoss)
        try write1D(f, "history/loss", emLoss)
        try write1D(f, "history/val_epoch", valHistory.map { Int64($0.epoch) })
        try write1D(f, "history/val_stage", valHistory.map { Int64($0.stage == .warmup ? 0 : 1) })
        try write1D(f, "history/val_miou", valHistory.map(\.miou))
        try write1D(f, "history/val_accuracy", valHistory.map(\.accuracy))
    }

    private func writeModel(_ f: HDF5File, _ group: String, _ m: PrototypeModel) throws {
        let d = try f.createDataset(group + "/directions", type: .float32, shape: [m.classCount, m.channelCount])
        try d.write(m.directions.data)
        try write1D(f, group + "/gains", m.gains)
    }

    private func write1D<T: HDF5Scalar>(_ f: HDF5File, _ name: String, _ values: [T]) throws {
        let d = try f.createDataset(name, type: T.hdf5Type, shape: [values.count])
        if !values.isEmpty { try d.write(values) }
    }

    // MARK: reading

    /// Reads a checkpoint written by `write(to:)`. Errors name the file and what is wrong.
    public static func load(path: String) throws -> FitCheckpoint {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(file: path, "no such checkpoint; run `unseg fit ... --checkpoint \(path)` first")
        }
        let f: HDF5File
        do { f = try HDF5File.open(path) } catch let e as HDF5Error { throw StoreError(file: path, e.message) }
        let fmt = f.hasAttribute("format") ? (try? f.stringAttribute("format")) ?? "" : ""
        guard fmt == format else {
            throw StoreError(file: path, "is \(fmt.isEmpty ? "not an unseg file (no 'format' attribute)" : "a '\(fmt)' file"), not a checkpoint ('\(format)'); pass the file `unseg fit --checkpoint` wrote")
        }
        do {
            let v = try f.intAttribute("version")
            guard v == version else {
                throw StoreError(file: path, "checkpoint version \(v) is not supported (this unseg reads version \(version))")
            }
            let stageName = try f.stringAttribute("stage")
            guard let stage = FitStage(rawValue: stageName) else {
                throw StoreError(file: path, "stage '\(stageName)' is not one of warmup, em, done")
            }
            let shape = try f.intArrayAttribute("feature_shape")
            guard shape.count == 3 else { throw StoreError(file: path, "feature_shape has \(shape.count) entries, needs 3 [h, w, C]") }
            let running = try readModel(f, "running", path)
            let momentum = try readModel(f, "momentum", path)
            let best = f.contains("best") ? try readModel(f, "best", path) : nil
            var bestRecord: ValRecord?
            if f.hasAttribute("best_epoch") {
                bestRecord = ValRecord(stage: FitStage(rawValue: try f.stringAttribute("best_stage")) ?? .em,
                                       epoch: try f.intAttribute("best_epoch"), miou: try f.doubleAttribute("best_miou"),
                                       accuracy: try f.doubleAttribute("best_accuracy"))
            }
            let adam = AdamState(m: try read1D(f, "adam/m", Float.self), v: try read1D(f, "adam/v", Float.self),
                                 step: try f.intAttribute("adam_step"))
            let vEpoch: [Int64] = try read1D(f, "history/val_epoch", Int64.self)
            let vStage: [Int64] = try read1D(f, "history/val_stage", Int64.self)
            let vMiou: [Double] = try read1D(f, "history/val_miou", Double.self)
            let vAcc: [Double] = try read1D(f, "history/val_accuracy", Double.self)
            guard vEpoch.count == vMiou.count, vAcc.count == vMiou.count, vStage.count == vMiou.count else {
                throw StoreError(file: path, dataset: "/history", "validation history datasets have different lengths")
            }
            let val = (0..<vMiou.count).map {
                ValRecord(stage: vStage[$0] == 0 ? .warmup : .em, epoch: Int(vEpoch[$0]), miou: vMiou[$0], accuracy: vAcc[$0])
            }
            let rng: [UInt64] = try read1D(f, "rng_state", UInt64.self)
            guard rng.count == 4 else { throw StoreError(file: path, dataset: "/rng_state", "has \(rng.count) words, needs 4") }
            var ck = FitCheckpoint(
                recipeYAML: try f.stringAttribute("recipe"), stage: stage, step: try f.intAttribute("step"),
                epoch: try f.intAttribute("epoch"), batchInEpoch: try f.intAttribute("batch_in_epoch"),
                running: running, momentum: momentum, adam: adam, momentumUpdates: try f.intAttribute("momentum_updates"),
                rngState: rng, warmupLoss: try read1D(f, "history/warmup_loss", Double.self),
                emLoss: try read1D(f, "history/loss", Double.self), valHistory: val, best: best, bestRecord: bestRecord,
                storePath: try f.stringAttribute("store"), storeImages: try f.intAttribute("store_images"),
                featureHeight: shape[0], featureWidth: shape[1], channels: shape[2])
            if f.hasAttribute("init_from") { ck.initFrom = try f.stringAttribute("init_from") }
            return ck
        } catch let e as HDF5Error {
            throw StoreError(file: path, dataset: e.object, "damaged or incomplete checkpoint: \(e.message)")
        }
    }

    private static func readModel(_ f: HDF5File, _ group: String, _ path: String) throws -> PrototypeModel {
        let d = try f.dataset(group + "/directions")
        guard d.shape.count == 2, d.shape[0] >= 1, d.shape[1] >= 1 else {
            throw StoreError(file: path, dataset: "/\(group)/directions", "has shape \(d.shape); expected [K, C]")
        }
        let dirs = Matrix(rows: d.shape[0], cols: d.shape[1], data: try d.read(Float.self))
        let gains = try read1D(f, group + "/gains", Float.self)
        guard gains.count == dirs.rows else {
            throw StoreError(file: path, dataset: "/\(group)/gains", "has \(gains.count) entries for \(dirs.rows) prototypes")
        }
        return PrototypeModel(directions: dirs, gains: gains)
    }

    private static func read1D<T: HDF5Scalar>(_ f: HDF5File, _ name: String, _: T.Type) throws -> [T] {
        let d = try f.dataset(name)
        if d.elementCount == 0 { return [] }
        return try d.read(T.self)
    }

    /// Checks that `store` has the feature channels the prototypes were fitted on.
    /// Error: "C.h5 was fitted on 384 channels but S.h5:/features has 768; ...".
    public func checkCompatible(with store: FeatureStore, checkpointPath: String) throws {
        if store.layout.channels != channels || running.channelCount != store.layout.channels {
            throw StoreError(file: store.path, dataset: "/features",
                             "has \(store.layout.channels) channels but the checkpoint \(checkpointPath) was fitted on \(channels); use a checkpoint fitted on features of the same backbone (or fit one on this store with `unseg fit`)")
        }
    }
}
