import Foundation
import UnsegClustering
import UnsegLinAlg
import Yams

/// A problem with a recipe file: which key, what value, what is allowed.
public struct RecipeError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where the PriMaPs masks of the EM stage come from.
public enum ProposalsSource: String, Sendable, CaseIterable, Equatable, Codable {
    /// A proposals file written by `unseg propose` (`--proposals P.h5`, required).
    case file
    /// PriMaPs on the fly (threshold `primaps_threshold`), refined to image resolution with the
    /// dense CRF when the store has `/images`: the reference's training proposals. Computed once
    /// per image and cached. A given `--proposals` file still wins.
    case primapsCRF = "primaps-crf"
    /// PriMaPs on the fly at feature resolution, nearest-upsampled, no refinement (not the
    /// reference's setting; faster). A given `--proposals` file still wins.
    case primapsUnrefined = "primaps-unrefined"
}

/// How the final prototypes are chosen.
public enum ModelSelection: String, Sendable, CaseIterable, Equatable, Codable {
    /// The prototypes after the last step (default: no use of the validation split).
    case last
    /// The momentum prototypes of the epoch with the best validation mIoU (the reference's
    /// choice; it leaks the evaluation split into model selection, and is labelled as such).
    case bestVal = "best-val"
}

/// Optional refinement of predictions.
public enum PredictRefinement: String, Sendable, CaseIterable, Equatable, Codable {
    case none
    /// Dense CRF on the softmax of the label-resolution logits with the store's `/images`.
    case crf
}

/// The stages a fit can run, in the order the recipe lists them.
public enum FitStageKind: String, Sendable, CaseIterable, Equatable, Codable {
    /// PCA of a seeded sample of feature rows: the first K principal directions (gains 1).
    case pcaInit = "pca-init"
    /// Cosine k-means warm-up of the prototypes (Adam); alone after PCA: the paper's "Baseline".
    case cosineKMeans = "cosine-kmeans"
    /// PriMaPs-EM: pseudo-labels from the momentum prototypes voted inside mask proposals.
    case primapsEM = "primaps-em"
    /// MaskContrast-style training of a projection head: pixels of a mask agree with its
    /// prototype, other masks disagree. Followed by `segment-kmeans`.
    case maskContrast = "maskcontrast"
    /// Mask-level clustering: one vector per mask through the head (the identity when no
    /// `maskcontrast` stage precedes it: Deep Spectral Methods' semantic step), PCA whitening,
    /// k-means. A one-pass stage.
    case segmentKMeans = "segment-kmeans"

    /// The prototype stages (PriMaPs and its Baseline) and the mask stages do not mix in one fit.
    public var isMaskStage: Bool { self == .maskContrast || self == .segmentKMeans }
}

/// What `segment-kmeans` clusters.
public enum ClusterVectors: String, Sendable, Equatable, Codable, CaseIterable {
    /// One vector per mask: the normalised mean of its cells' head embeddings (MaskContrast's
    /// evaluation, Deep Spectral Methods' semantic step).
    case masks
    /// Cell embeddings sampled per mask (`cells_per_mask` each): K centroids over cells, as the
    /// prediction classifies cells.
    case cells
}

/// Where the mask stages (`maskcontrast`, `segment-kmeans`) take their masks from, at feature resolution.
public enum MaskSource: String, Sendable, CaseIterable, Equatable, Codable {
    /// A proposals file written by `unseg propose` (`--proposals P.h5`, its `/masks`).
    case file
    /// PriMaPs on the fly (threshold `masks.primaps_threshold`); a given `--proposals` file still wins.
    case primaps
}

/// Every hyperparameter of a fit and of predicting with its result, one section per stage.
///
/// Loaded from YAML (`Recipes/*.yaml`) through `Codable` (Yams) with strict checking: unknown and
/// duplicate keys are errors naming the key and the allowed ones; out-of-range values name the
/// key and the range. Missing keys take the reference's settings. `yaml()` prints a recipe back
/// with comments; `Recipe.parse(r.yaml()) == r`.
public struct Recipe: Equatable, Sendable, Codable {
    /// Free-form name, e.g. "cityscapes27-dino_vits8".
    public var name: String = "unnamed"
    /// Number of class prototypes K (27 Cityscapes / COCO-Stuff, 3 Potsdam).
    public var classes: Int = 27
    /// Seed of everything random in the run (PCA sample, epoch orders, flips).
    public var seed: UInt64 = 0
    /// Images per step of every training stage (reference 32). The last partial batch of an epoch is dropped.
    public var batchSize: Int = 32
    /// Write the checkpoint every this many steps (and at every epoch end and at the end).
    public var checkpointEvery: Int = 50
    /// Which prototypes are the result.
    public var selection: ModelSelection = .last
    /// The stages, in order.
    public var stages: [FitStageKind] = [.pcaInit, .cosineKMeans, .primapsEM]

    /// `pca-init` settings.
    public struct PCAInit: Equatable, Sendable, Codable {
        public init() {}
        /// Images sampled (seeded) for the PCA (reference: about 93 batches of 32).
        public var sampleImages: Int = 2976
        /// Feature cells taken per sampled image (0 = all cells).
        public var rowsPerImage: Int = 0
        enum CodingKeys: String, CodingKey, CaseIterable { case sampleImages = "sample_images", rowsPerImage = "rows_per_image" }
    }
    /// `cosine-kmeans` settings.
    public struct CosineKMeans: Equatable, Sendable, Codable {
        public init() {}
        /// Epochs of the warm-up (reference 2; longer gives the paper's "Baseline").
        public var epochs: Int = 2
        /// Adam learning rate.
        public var learningRate: Double = 5e-3
        enum CodingKeys: String, CodingKey, CaseIterable { case epochs, learningRate = "learning_rate" }
    }
    /// `primaps-em` settings.
    public struct PriMaPsEM: Equatable, Sendable, Codable {
        public init() {}
        /// Epochs (reference 50).
        public var epochs: Int = 50
        /// Adam learning rate.
        public var learningRate: Double = 5e-3
        /// Focal exponent of the class weights `(1 - mean softmax)^gamma`.
        public var gamma: Double = 2
        /// Momentum (EMA) update every this many steps.
        public var momentumEvery: Int = 10
        /// Cap of the EMA decay `min(1 - 1/n, cap)`.
        public var momentumDecayCap: Double = 0.98
        /// Probability of a horizontal flip per image and step.
        public var flipProbability: Double = 0.5
        /// Where the masks come from.
        public var proposals: ProposalsSource = .primapsCRF
        /// PriMaPs similarity threshold psi for on-the-fly proposals.
        public var primapsThreshold: Double = 0.4
        /// Weight of the Two Tricks paper's multi-scale consistency in the M-step (needs the store's
        /// crop views, `/features_crops`); 0: off (Docs/fitting.md).
        public var consistencyWeight: Double = 0
        /// The teacher on the crop: running (the current prototypes, stop-gradient, as the reference) | momentum (the EMA copy).
        public var consistencyTeacher: PrototypeCopy = .running
        /// soft | hard: cross-entropy to the teacher's softmax or argmax; mse: the reference's squared error between the softmaxes.
        public var consistencyTarget: ConsistencyTarget = .soft
        enum CodingKeys: String, CodingKey, CaseIterable {
            case epochs, learningRate = "learning_rate", gamma, momentumEvery = "momentum_every"
            case momentumDecayCap = "momentum_decay_cap", flipProbability = "flip_probability", proposals
            case primapsThreshold = "primaps_threshold", consistencyWeight = "consistency_weight"
            case consistencyTeacher = "consistency_teacher", consistencyTarget = "consistency_target"
        }
    }
    /// `maskcontrast` settings: the contrastive projection head. Defaults: the MaskContrast
    /// reference's where they carry over to a head on frozen features (T 0.5, key momentum 0.999,
    /// dim 32, SGD momentum 0.9, weight decay 1e-4, poly 0.9 per epoch); ours: the MLP head, its
    /// width, the queue of 256 that starts empty, the learning rate for a head alone.
    public struct MaskContrast: Equatable, Sendable, Codable {
        public init() {}
        public var epochs: Int = 10
        /// linear | mlp.
        public var head: HeadKind = .mlp
        /// Hidden width of the MLP head.
        public var hidden: Int = 256
        /// Embedding dimension (32-128).
        public var dim: Int = 32
        public var temperature: Double = 0.5
        /// Prototypes of recent batches kept as negatives (FIFO).
        public var queue: Int = 256
        public var keyMomentum: Double = 0.999
        /// Class-balancing weights `1 / log(1.02 + share)` over the targets.
        public var classBalance: Bool = true
        public var optimizer: HeadOptimizer = .sgd
        public var learningRate: Double = 0.1
        public var sgdMomentum: Double = 0.9
        public var weightDecay: Double = 1e-4
        /// Poly schedule power (0: constant learning rate).
        public var polyPower: Double = 0.9
        enum CodingKeys: String, CodingKey, CaseIterable {
            case epochs, head, hidden, dim, temperature, queue, keyMomentum = "key_momentum", classBalance = "class_balance"
            case optimizer, learningRate = "learning_rate", sgdMomentum = "sgd_momentum", weightDecay = "weight_decay"
            case polyPower = "poly_power"
        }
    }
    /// `segment-kmeans` settings: the mask-level clustering.
    public struct SegmentKMeans: Equatable, Sendable, Codable {
        public init() {}
        /// PCA whitening of the mask vectors (0: none).
        public var pcaDims: Int = 32
        /// Seeded k-means++ restarts (lowest inertia wins).
        public var restarts: Int = 10
        /// What is clustered: one vector per mask (`masks`, the mean of its cells' embeddings) or
        /// up to `cells_per_mask` cell embeddings sampled from every mask (`cells`).
        public var vectors: ClusterVectors = .masks
        /// With `vectors: cells`: cells drawn from each mask (all of a smaller one).
        public var cellsPerMask: Int = 16
        enum CodingKeys: String, CodingKey, CaseIterable {
            case pcaDims = "pca_dims", restarts, vectors, cellsPerMask = "cells_per_mask"
        }
    }
    /// `masks` settings: where the mask stages' masks come from.
    public struct Masks: Equatable, Sendable, Codable {
        public init() {}
        public var source: MaskSource = .primaps
        /// PriMaPs similarity threshold psi for the mask stages' masks (on the fly; the fit's log
        /// names a proposals file of another threshold). 0.5, finer than EM's 0.4: chosen on the
        /// held-out mosaic corpus (Docs/maskcontrast.md).
        public var primapsThreshold: Double = 0.5
        enum CodingKeys: String, CodingKey, CaseIterable { case source, primapsThreshold = "primaps_threshold" }
    }
    /// `predict` settings (what `unseg predict` does by default with the result).
    public struct Predict: Equatable, Sendable, Codable {
        public init() {}
        /// Which copy of the final stage's prototypes.
        public var copy: PrototypeCopy = .momentum
        /// Refinement.
        public var refine: PredictRefinement = .none
        enum CodingKeys: String, CodingKey, CaseIterable { case copy, refine }
    }

    public var pcaInit = PCAInit()
    public var cosineKMeans = CosineKMeans()
    public var primapsEM = PriMaPsEM()
    public var maskContrast = MaskContrast()
    public var segmentKMeans = SegmentKMeans()
    public var masks = Masks()
    public var predict = Predict()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, classes, seed, batchSize = "batch_size", checkpointEvery = "checkpoint_every", selection, stages
        case pcaInit = "pca-init", cosineKMeans = "cosine-kmeans", primapsEM = "primaps-em", maskContrast = "maskcontrast"
        case segmentKMeans = "segment-kmeans", masks, predict
    }

    public init() {}

    // MARK: flat accessors (the settings by their old names, for code that reads one value)

    public var pcaSampleImages: Int { get { pcaInit.sampleImages } set { pcaInit.sampleImages = newValue } }
    public var pcaRowsPerImage: Int { get { pcaInit.rowsPerImage } set { pcaInit.rowsPerImage = newValue } }
    public var warmupEpochs: Int { get { cosineKMeans.epochs } set { cosineKMeans.epochs = newValue } }
    public var warmupLearningRate: Double { get { cosineKMeans.learningRate } set { cosineKMeans.learningRate = newValue } }
    public var epochs: Int { get { primapsEM.epochs } set { primapsEM.epochs = newValue } }
    public var learningRate: Double { get { primapsEM.learningRate } set { primapsEM.learningRate = newValue } }
    public var gamma: Double { get { primapsEM.gamma } set { primapsEM.gamma = newValue } }
    public var momentumEvery: Int { get { primapsEM.momentumEvery } set { primapsEM.momentumEvery = newValue } }
    public var momentumDecayCap: Double { get { primapsEM.momentumDecayCap } set { primapsEM.momentumDecayCap = newValue } }
    public var flipProbability: Double { get { primapsEM.flipProbability } set { primapsEM.flipProbability = newValue } }
    public var proposals: ProposalsSource { get { primapsEM.proposals } set { primapsEM.proposals = newValue } }
    public var primapsThreshold: Double { get { primapsEM.primapsThreshold } set { primapsEM.primapsThreshold = newValue } }
    public var predictCopy: PrototypeCopy { get { predict.copy } set { predict.copy = newValue } }
    public var predictRefine: PredictRefinement { get { predict.refine } set { predict.refine = newValue } }

    /// Whether the recipe runs `kind`.
    public func runs(_ kind: FitStageKind) -> Bool { stages.contains(kind) }

    // MARK: loading

    /// Loads a recipe file. Errors name the file and the key.
    public static func load(path: String) throws -> Recipe {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw RecipeError("\(path): cannot read the recipe (\(error.localizedDescription)); pass a YAML file such as Recipes/demo.yaml")
        }
        do { return try parse(text) } catch let e as RecipeError {
            throw RecipeError("\(path): \(e.message)")
        }
    }

    /// The allowed keys of each mapping of the YAML form (nil key: the top level).
    static let allowedKeys: [String: [String]] = [
        "": CodingKeys.allCases.map(\.rawValue),
        "pca-init": PCAInit.CodingKeys.allCases.map(\.rawValue),
        "cosine-kmeans": CosineKMeans.CodingKeys.allCases.map(\.rawValue),
        "primaps-em": PriMaPsEM.CodingKeys.allCases.map(\.rawValue),
        "maskcontrast": MaskContrast.CodingKeys.allCases.map(\.rawValue),
        "segment-kmeans": SegmentKMeans.CodingKeys.allCases.map(\.rawValue),
        "masks": Masks.CodingKeys.allCases.map(\.rawValue),
        "predict": Predict.CodingKeys.allCases.map(\.rawValue),
    ]

    /// Parses recipe YAML: keys checked first (unknown, duplicate), then decoded, then ranges.
    public static func parse(_ text: String) throws -> Recipe {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw RecipeError("not valid YAML: \(error)")
        }
        guard let node else { return Recipe() }
        guard let top = node.mapping else {
            throw RecipeError("a recipe is a mapping of keys to values (key: value per line), got \(node.scalar?.string ?? "a sequence")")
        }
        try checkKeys(top, section: "")
        for (k, v) in top {
            guard let key = k.string else { continue }
            if allowedKeys[key] != nil {
                guard let m = v.mapping else {
                    throw RecipeError("\(key): expected a section (indented 'key: value' lines), got '\(v.scalar?.string ?? "a sequence")'")
                }
                try checkKeys(m, section: key)
                for (k2, v2) in m { try checkValue(key + "." + (k2.string ?? ""), v2) }
            } else {
                try checkValue(key, v)
            }
        }
        let r: Recipe
        do { r = try YAMLDecoder().decode(Recipe.self, from: text) } catch let e as RecipeError {
            throw e
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.dataCorrupted(ctx) {
            throw RecipeError("\(path(ctx.codingPath)): \(ctx.debugDescription.prefix(200))")
        } catch {
            throw RecipeError("cannot decode the recipe: \(error)")
        }
        try r.validate()
        return r
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    /// What each value must look like (checked on the YAML before decoding, so every error
    /// names the key and what is allowed).
    enum ValueKind { case int, number, string, bool, choice([String]), stageList }
    static let valueKinds: [String: ValueKind] = [
        "name": .string, "classes": .int, "seed": .int, "batch_size": .int, "checkpoint_every": .int,
        "selection": .choice(ModelSelection.allCases.map(\.rawValue)), "stages": .stageList,
        "pca-init.sample_images": .int, "pca-init.rows_per_image": .int,
        "cosine-kmeans.epochs": .int, "cosine-kmeans.learning_rate": .number,
        "primaps-em.epochs": .int, "primaps-em.learning_rate": .number, "primaps-em.gamma": .number,
        "primaps-em.momentum_every": .int, "primaps-em.momentum_decay_cap": .number,
        "primaps-em.flip_probability": .number, "primaps-em.proposals": .choice(ProposalsSource.allCases.map(\.rawValue)),
        "primaps-em.primaps_threshold": .number, "primaps-em.consistency_weight": .number,
        "primaps-em.consistency_teacher": .choice(PrototypeCopy.allCases.map(\.rawValue)),
        "primaps-em.consistency_target": .choice(ConsistencyTarget.allCases.map(\.rawValue)),
        "maskcontrast.epochs": .int, "maskcontrast.head": .choice([HeadKind.linear.rawValue, HeadKind.mlp.rawValue]),
        "maskcontrast.hidden": .int, "maskcontrast.dim": .int, "maskcontrast.temperature": .number, "maskcontrast.queue": .int,
        "maskcontrast.key_momentum": .number, "maskcontrast.class_balance": .bool,
        "maskcontrast.optimizer": .choice(HeadOptimizer.allCases.map(\.rawValue)), "maskcontrast.learning_rate": .number,
        "maskcontrast.sgd_momentum": .number, "maskcontrast.weight_decay": .number, "maskcontrast.poly_power": .number,
        "segment-kmeans.pca_dims": .int, "segment-kmeans.restarts": .int,
        "segment-kmeans.vectors": .choice(ClusterVectors.allCases.map(\.rawValue)), "segment-kmeans.cells_per_mask": .int,
        "masks.source": .choice(MaskSource.allCases.map(\.rawValue)), "masks.primaps_threshold": .number,
        "predict.copy": .choice(["momentum", "running"]), "predict.refine": .choice(PredictRefinement.allCases.map(\.rawValue)),
    ]

    static func checkValue(_ key: String, _ v: Node) throws {
        guard let kind = valueKinds[key] else { return }
        let text = v.scalar?.string
        switch kind {
        case .int:
            guard let t = text, Int(t) != nil else { throw RecipeError("\(key): '\(text ?? "a list")' is not allowed; expected an integer") }
        case .number:
            guard let t = text, Double(t) != nil else { throw RecipeError("\(key): '\(text ?? "a list")' is not allowed; expected a number") }
        case .string:
            guard text != nil else { throw RecipeError("\(key): expected a string") }
        case .bool:
            guard let t = text, ["true", "false"].contains(t) else { throw RecipeError("\(key): '\(text ?? "a list")' is not allowed; expected true or false") }
        case .choice(let allowed):
            guard let t = text, allowed.contains(t) else {
                throw RecipeError("\(key): '\(text ?? "a list")' is not allowed; expected one of \(allowed.joined(separator: ", "))")
            }
        case .stageList:
            let all = FitStageKind.allCases.map(\.rawValue)
            guard let items = v.sequence else {
                throw RecipeError("\(key): expected a list such as [\(all.joined(separator: ", "))]")
            }
            for item in items where !all.contains(item.string ?? "") {
                throw RecipeError("\(key): '\(item.string ?? "?")' is not a stage; stages are \(all.joined(separator: ", "))")
            }
        }
    }

    static func checkKeys(_ m: Node.Mapping, section: String) throws {
        let allowed = allowedKeys[section] ?? []
        var seen = Set<String>()
        let place = section.isEmpty ? "" : section + "."
        for (k, _) in m {
            guard let key = k.string else { throw RecipeError("\(place)\(k): keys must be plain names") }
            guard allowed.contains(key) else {
                throw RecipeError("unknown key '\(place)\(key)'; allowed keys\(section.isEmpty ? "" : " of " + section): \(allowed.joined(separator: ", "))")
            }
            guard seen.insert(key).inserted else {
                throw RecipeError("duplicate key '\(place)\(key)'; give each key once")
            }
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
        classes = try c.decodeIfPresent(Int.self, forKey: .classes) ?? classes
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? batchSize
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? checkpointEvery
        selection = try c.decodeIfPresent(ModelSelection.self, forKey: .selection) ?? selection
        stages = try c.decodeIfPresent([FitStageKind].self, forKey: .stages) ?? stages
        pcaInit = try c.decodeIfPresent(PCAInit.self, forKey: .pcaInit) ?? pcaInit
        cosineKMeans = try c.decodeIfPresent(CosineKMeans.self, forKey: .cosineKMeans) ?? cosineKMeans
        primapsEM = try c.decodeIfPresent(PriMaPsEM.self, forKey: .primapsEM) ?? primapsEM
        maskContrast = try c.decodeIfPresent(MaskContrast.self, forKey: .maskContrast) ?? maskContrast
        segmentKMeans = try c.decodeIfPresent(SegmentKMeans.self, forKey: .segmentKMeans) ?? segmentKMeans
        masks = try c.decodeIfPresent(Masks.self, forKey: .masks) ?? masks
        predict = try c.decodeIfPresent(Predict.self, forKey: .predict) ?? predict
    }

    /// Range checks; errors name the key, the value and what is allowed.
    public func validate() throws {
        func int(_ key: String, _ v: Int, _ range: ClosedRange<Int>) throws {
            guard range.contains(v) else {
                throw RecipeError("\(key): \(v) is not allowed; expected an integer in \(range.lowerBound)...\(range.upperBound == Int.max ? "" : String(range.upperBound))")
            }
        }
        func num(_ key: String, _ v: Double, _ lo: Double, _ hi: Double, loOpen: Bool, hiOpen: Bool) throws {
            let ok = v.isFinite && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi)
            guard ok else {
                throw RecipeError("\(key): \(v) is not allowed; expected a number in \(loOpen ? "(" : "[")\(lo), \(hi)\(hiOpen ? ")" : "]")")
            }
        }
        guard !name.isEmpty else { throw RecipeError("name: expected a non-empty string") }
        try int("classes", classes, 1...254)
        guard seed <= UInt64(Int.max) else { throw RecipeError("seed: \(seed) is not allowed; expected an integer in 0...\(Int.max)") }
        try int("batch_size", batchSize, 1...4096)
        try int("checkpoint_every", checkpointEvery, 1...Int.max)
        guard !stages.isEmpty else {
            throw RecipeError("stages: the list is empty; name at least one of \(FitStageKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard Set(stages).count == stages.count else { throw RecipeError("stages: \(stages.map(\.rawValue)) names a stage twice") }
        let order = FitStageKind.allCases
        guard stages == order.filter(stages.contains) else {
            throw RecipeError("stages: \(stages.map(\.rawValue).joined(separator: ", ")) are out of order; stages run in the order \(order.map(\.rawValue).joined(separator: ", "))")
        }
        try int("pca-init.sample_images", pcaInit.sampleImages, 1...Int.max)
        try int("pca-init.rows_per_image", pcaInit.rowsPerImage, 0...Int.max)
        try int("cosine-kmeans.epochs", cosineKMeans.epochs, 0...100_000)
        try num("cosine-kmeans.learning_rate", cosineKMeans.learningRate, 0, 1, loOpen: true, hiOpen: false)
        try int("primaps-em.epochs", primapsEM.epochs, 0...100_000)
        try num("primaps-em.learning_rate", primapsEM.learningRate, 0, 1, loOpen: true, hiOpen: false)
        try num("primaps-em.gamma", primapsEM.gamma, 0, 100, loOpen: false, hiOpen: false)
        try int("primaps-em.momentum_every", primapsEM.momentumEvery, 1...1_000_000)
        try num("primaps-em.momentum_decay_cap", primapsEM.momentumDecayCap, 0, 1, loOpen: false, hiOpen: true)
        try num("primaps-em.flip_probability", primapsEM.flipProbability, 0, 1, loOpen: false, hiOpen: false)
        try num("primaps-em.primaps_threshold", primapsEM.primapsThreshold, 0, 1, loOpen: false, hiOpen: false)
        try num("primaps-em.consistency_weight", primapsEM.consistencyWeight, 0, 100, loOpen: false, hiOpen: false)
        if stages.contains(where: \.isMaskStage) {
            guard stages.allSatisfy(\.isMaskStage) else {
                throw RecipeError("stages: \(stages.map(\.rawValue).joined(separator: ", ")) mixes the prototype stages (pca-init, cosine-kmeans, primaps-em) with the mask stages (maskcontrast, segment-kmeans); fit them as two recipes")
            }
            guard stages.last == .segmentKMeans else {
                throw RecipeError("stages: maskcontrast trains a head but nothing clusters with it; end the list with segment-kmeans ([maskcontrast, segment-kmeans])")
            }
        }
        try int("maskcontrast.epochs", maskContrast.epochs, 0...100_000)
        try int("maskcontrast.hidden", maskContrast.hidden, 1...65_536)
        try int("maskcontrast.dim", maskContrast.dim, 2...1024)
        try num("maskcontrast.temperature", maskContrast.temperature, 0, 100, loOpen: true, hiOpen: false)
        try int("maskcontrast.queue", maskContrast.queue, 0...1_000_000)
        try num("maskcontrast.key_momentum", maskContrast.keyMomentum, 0, 1, loOpen: false, hiOpen: false)
        try num("maskcontrast.learning_rate", maskContrast.learningRate, 0, 100, loOpen: true, hiOpen: false)
        try num("maskcontrast.sgd_momentum", maskContrast.sgdMomentum, 0, 1, loOpen: false, hiOpen: true)
        try num("maskcontrast.weight_decay", maskContrast.weightDecay, 0, 1, loOpen: false, hiOpen: false)
        try num("maskcontrast.poly_power", maskContrast.polyPower, 0, 10, loOpen: false, hiOpen: false)
        if maskContrast.head == .identity {
            throw RecipeError("maskcontrast.head: 'identity' is not allowed; expected one of linear, mlp (segment-kmeans alone clusters with the identity head)")
        }
        try int("segment-kmeans.pca_dims", segmentKMeans.pcaDims, 0...4096)
        try int("segment-kmeans.restarts", segmentKMeans.restarts, 1...1000)
        try int("segment-kmeans.cells_per_mask", segmentKMeans.cellsPerMask, 1...65536)
        try num("masks.primaps_threshold", masks.primapsThreshold, 0, 1, loOpen: false, hiOpen: false)
    }

    // MARK: printing

    /// The recipe as YAML, every key with a comment; `parse(yaml())` gives it back.
    public func yaml() -> String {
        func num(_ d: Double) -> String {
            // Shortest round-tripping decimal; YAML reads it back as a float.
            var s = "\(d)"
            if !s.contains(".") && !s.contains("e") && !s.contains("inf") { s += ".0" }
            return s
        }
        func quoted(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var out = ""
        out += "name: \(quoted(name))\n"
        out += "classes: \(classes)                  # class prototypes K\n"
        out += "seed: \(seed)\n"
        out += "batch_size: \(batchSize)               # images per step of every training stage\n"
        out += "checkpoint_every: \(checkpointEvery)         # steps\n"
        out += "selection: \(selection.rawValue)             # last | best-val (best-val leaks the val split)\n"
        out += "stages: [\(stages.map(\.rawValue).joined(separator: ", "))]\n"
        out += "pca-init:\n"
        out += "  sample_images: \(pcaInit.sampleImages)       # images sampled for the PCA\n"
        out += "  rows_per_image: \(pcaInit.rowsPerImage)         # cells per sampled image, 0 = all\n"
        out += "cosine-kmeans:\n"
        out += "  epochs: \(cosineKMeans.epochs)\n"
        out += "  learning_rate: \(num(cosineKMeans.learningRate))\n"
        out += "primaps-em:\n"
        out += "  epochs: \(primapsEM.epochs)\n"
        out += "  learning_rate: \(num(primapsEM.learningRate))\n"
        out += "  gamma: \(num(primapsEM.gamma))                # class weights (1 - mean softmax)^gamma\n"
        out += "  momentum_every: \(primapsEM.momentumEvery)         # EMA update every N steps\n"
        out += "  momentum_decay_cap: \(num(primapsEM.momentumDecayCap)) # d = min(1 - 1/n, cap)\n"
        out += "  flip_probability: \(num(primapsEM.flipProbability))\n"
        out += "  proposals: \(primapsEM.proposals.rawValue)          # file (unseg propose) | primaps-crf | primaps-unrefined (on the fly)\n"
        out += "  primaps_threshold: \(num(primapsEM.primapsThreshold))\n"
        out += "  consistency_weight: \(num(primapsEM.consistencyWeight))     # multi-scale consistency on the store's crop views, 0 = off\n"
        out += "  consistency_teacher: \(primapsEM.consistencyTeacher.rawValue) # running (current model, stop-gradient) | momentum (EMA)\n"
        out += "  consistency_target: \(primapsEM.consistencyTarget.rawValue)     # soft | hard (cross-entropy to the teacher's softmax or argmax) | mse (the reference's squared error)\n"
        out += "maskcontrast:\n"
        out += "  epochs: \(maskContrast.epochs)\n"
        out += "  head: \(maskContrast.head.rawValue)              # linear | mlp\n"
        out += "  hidden: \(maskContrast.hidden)             # MLP hidden width\n"
        out += "  dim: \(maskContrast.dim)                 # embedding dimension\n"
        out += "  temperature: \(num(maskContrast.temperature))\n"
        out += "  queue: \(maskContrast.queue)              # prototypes kept as negatives (FIFO)\n"
        out += "  key_momentum: \(num(maskContrast.keyMomentum))\n"
        out += "  class_balance: \(maskContrast.classBalance)      # weights 1 / log(1.02 + share)\n"
        out += "  optimizer: \(maskContrast.optimizer.rawValue)            # sgd | adam\n"
        out += "  learning_rate: \(num(maskContrast.learningRate))\n"
        out += "  sgd_momentum: \(num(maskContrast.sgdMomentum))\n"
        out += "  weight_decay: \(num(maskContrast.weightDecay))\n"
        out += "  poly_power: \(num(maskContrast.polyPower))          # lr (1 - epoch/epochs)^power\n"
        out += "segment-kmeans:\n"
        out += "  pca_dims: \(segmentKMeans.pcaDims)            # PCA whitening of the mask vectors, 0 = none\n"
        out += "  restarts: \(segmentKMeans.restarts)\n"
        out += "  vectors: \(segmentKMeans.vectors.rawValue)            # masks: one mean per mask; cells: cells sampled per mask\n"
        out += "  cells_per_mask: \(segmentKMeans.cellsPerMask)\n"
        out += "masks:\n"
        out += "  source: \(masks.source.rawValue)          # file (unseg propose) | primaps (on the fly)\n"
        out += "  primaps_threshold: \(num(masks.primapsThreshold))\n"
        out += "predict:\n"
        out += "  copy: \(predict.copy.rawValue)             # momentum | running\n"
        out += "  refine: \(predict.refine.rawValue)               # none | crf\n"
        return out
    }

    /// The EM stage's settings.
    public func emConfig(threads: Int) -> EMConfig {
        var c = EMConfig(batchSize: batchSize, adam: AdamConfig(learningRate: Float(learningRate)), gamma: gamma,
                         momentumEvery: momentumEvery, decayCap: momentumDecayCap, flipProbability: flipProbability,
                         threads: threads, seed: FitSeeds.emTrainer(seed))
        c.consistencyWeight = primapsEM.consistencyWeight
        c.consistencyTeacher = primapsEM.consistencyTeacher
        c.consistencyTarget = primapsEM.consistencyTarget
        return c
    }

    /// The contrastive head's settings (`batches`: steps per epoch, for nothing but the log).
    public func maskContrastConfig(threads: Int) -> MaskContrastConfig {
        var c = MaskContrastConfig()
        let m = maskContrast
        c.head = m.head; c.hidden = m.hidden; c.dim = m.dim; c.temperature = Float(m.temperature); c.queueSize = m.queue
        c.keyMomentum = Float(m.keyMomentum); c.classBalance = m.classBalance; c.optimizer = m.optimizer
        c.learningRate = Float(m.learningRate); c.sgdMomentum = Float(m.sgdMomentum); c.weightDecay = Float(m.weightDecay)
        c.polyPower = m.polyPower; c.epochs = m.epochs; c.seed = FitSeeds.maskContrastHead(seed); c.threads = threads
        return c
    }

    /// The mask clustering's settings.
    public func maskClusterConfig(threads: Int) -> MaskClusterConfig {
        var c = MaskClusterConfig(classes: classes)
        c.pcaDims = segmentKMeans.pcaDims; c.restarts = segmentKMeans.restarts
        c.temperature = Float(maskContrast.temperature); c.seed = FitSeeds.segmentKMeans(seed); c.threads = threads
        return c
    }

    /// The warm-up stage's settings.
    public func warmupConfig(threads: Int) -> CosineKMeansConfig {
        CosineKMeansConfig(adam: AdamConfig(learningRate: Float(warmupLearningRate)), threads: threads,
                           seed: FitSeeds.warmupTrainer(seed))
    }
}

/// Seeds of the parts of a fit, derived from the recipe's seed (independent streams).
public enum FitSeeds {
    static func derive(_ seed: UInt64, _ index: UInt64) -> UInt64 {
        var r = SeededRandom.stream(seed: seed, index: index)
        return r.next()
    }
    public static func pcaSample(_ seed: UInt64) -> UInt64 { derive(seed, 1) }
    public static func warmupTrainer(_ seed: UInt64) -> UInt64 { derive(seed, 2) }
    public static func emTrainer(_ seed: UInt64) -> UInt64 { derive(seed, 3) }
    /// Seed of the choice of the M-step's augmented view per (epoch, image).
    public static func mStepView(_ seed: UInt64) -> UInt64 { derive(seed, 4) }
    /// Seed of the contrastive head's initialisation.
    public static func maskContrastHead(_ seed: UInt64) -> UInt64 { derive(seed, 5) }
    /// Seed of the choice of the key view per (epoch, image) when the store holds augmented views.
    public static func keyView(_ seed: UInt64) -> UInt64 { derive(seed, 6) }
    /// Seed of the segment k-means restarts.
    public static func segmentKMeans(_ seed: UInt64) -> UInt64 { derive(seed, 7) }
    /// Seed of the choice of the consistency's crop per (epoch, image).
    public static func consistencyCrop(_ seed: UInt64) -> UInt64 { derive(seed, 8) }
    /// Seed of the image order of `epoch` of a stage (0 = warm-up, 1 = EM): a function of
    /// (seed, stage, epoch) only, so a resumed run visits the same images in the same order.
    public static func epochOrder(_ seed: UInt64, stage: Int, epoch: Int) -> UInt64 {
        derive(seed, (UInt64(stage + 16) << 40) | UInt64(epoch))
    }
}

// Missing keys of a section take the defaults (the reference's settings).
extension Recipe.PCAInit {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sampleImages = try c.decodeIfPresent(Int.self, forKey: .sampleImages) ?? sampleImages
        rowsPerImage = try c.decodeIfPresent(Int.self, forKey: .rowsPerImage) ?? rowsPerImage
    }
}
extension Recipe.CosineKMeans {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? epochs
        learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
    }
}
extension Recipe.PriMaPsEM {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? epochs
        learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
        gamma = try c.decodeIfPresent(Double.self, forKey: .gamma) ?? gamma
        momentumEvery = try c.decodeIfPresent(Int.self, forKey: .momentumEvery) ?? momentumEvery
        momentumDecayCap = try c.decodeIfPresent(Double.self, forKey: .momentumDecayCap) ?? momentumDecayCap
        flipProbability = try c.decodeIfPresent(Double.self, forKey: .flipProbability) ?? flipProbability
        proposals = try c.decodeIfPresent(ProposalsSource.self, forKey: .proposals) ?? proposals
        primapsThreshold = try c.decodeIfPresent(Double.self, forKey: .primapsThreshold) ?? primapsThreshold
        consistencyWeight = try c.decodeIfPresent(Double.self, forKey: .consistencyWeight) ?? consistencyWeight
        consistencyTeacher = try c.decodeIfPresent(PrototypeCopy.self, forKey: .consistencyTeacher) ?? consistencyTeacher
        consistencyTarget = try c.decodeIfPresent(ConsistencyTarget.self, forKey: .consistencyTarget) ?? consistencyTarget
    }
}
extension Recipe.MaskContrast {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? epochs
        head = try c.decodeIfPresent(HeadKind.self, forKey: .head) ?? head
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden) ?? hidden
        dim = try c.decodeIfPresent(Int.self, forKey: .dim) ?? dim
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? temperature
        queue = try c.decodeIfPresent(Int.self, forKey: .queue) ?? queue
        keyMomentum = try c.decodeIfPresent(Double.self, forKey: .keyMomentum) ?? keyMomentum
        classBalance = try c.decodeIfPresent(Bool.self, forKey: .classBalance) ?? classBalance
        optimizer = try c.decodeIfPresent(HeadOptimizer.self, forKey: .optimizer) ?? optimizer
        learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
        sgdMomentum = try c.decodeIfPresent(Double.self, forKey: .sgdMomentum) ?? sgdMomentum
        weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? weightDecay
        polyPower = try c.decodeIfPresent(Double.self, forKey: .polyPower) ?? polyPower
    }
}
extension Recipe.SegmentKMeans {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        pcaDims = try c.decodeIfPresent(Int.self, forKey: .pcaDims) ?? pcaDims
        restarts = try c.decodeIfPresent(Int.self, forKey: .restarts) ?? restarts
        vectors = try c.decodeIfPresent(ClusterVectors.self, forKey: .vectors) ?? vectors
        cellsPerMask = try c.decodeIfPresent(Int.self, forKey: .cellsPerMask) ?? cellsPerMask
    }
}
extension Recipe.Masks {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        source = try c.decodeIfPresent(MaskSource.self, forKey: .source) ?? source
        primapsThreshold = try c.decodeIfPresent(Double.self, forKey: .primapsThreshold) ?? primapsThreshold
    }
}
extension Recipe.Predict {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        copy = try c.decodeIfPresent(PrototypeCopy.self, forKey: .copy) ?? copy
        refine = try c.decodeIfPresent(PredictRefinement.self, forKey: .refine) ?? refine
    }
}
