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
public enum ProposalsSource: String, Sendable, CaseIterable, Equatable {
    /// A proposals file written by `unseg propose` (`--proposals P.h5`, required).
    case file
    /// Computed on the fly with PriMaPs (threshold `primaps_threshold`) when no file is given;
    /// a given `--proposals` file still wins.
    case primaps
}

/// How the final prototypes are chosen.
public enum ModelSelection: String, Sendable, CaseIterable, Equatable {
    /// The prototypes after the last step (default: no use of the validation split).
    case last
    /// The momentum prototypes of the epoch with the best validation mIoU (the reference's
    /// choice; it leaks the evaluation split into model selection, and is labelled as such).
    case bestVal = "best-val"
}

/// Optional refinement of predictions.
public enum PredictRefinement: String, Sendable, CaseIterable, Equatable {
    case none
    /// Dense CRF on the softmax of the label-resolution logits with the store's `/images`.
    case crf
}

/// Every hyperparameter of a fit (PCA init, cosine k-means warm-up, PriMaPs-EM) and of
/// predicting with its result. Loaded from YAML (`Recipes/*.yaml`) with strict checking:
/// unknown keys and out-of-range values are errors naming the key and what is allowed.
/// `yaml()` prints a recipe back; `Recipe.parse(r.yaml()) == r`.
public struct Recipe: Equatable, Sendable {
    /// Free-form name, e.g. "cityscapes27-dino_vits8".
    public var name: String = "unnamed"
    /// Number of class prototypes K (27 Cityscapes / COCO-Stuff, 3 Potsdam).
    public var classes: Int = 27
    /// Images sampled (seeded) for the PCA initialisation (reference: about 93 batches of 32).
    public var pcaSampleImages: Int = 2976
    /// Feature cells taken per sampled image (0 = all cells).
    public var pcaRowsPerImage: Int = 0
    /// Epochs of cosine k-means warm-up (reference 2; longer gives the paper's "Baseline").
    public var warmupEpochs: Int = 2
    /// Adam learning rate of the warm-up.
    public var warmupLearningRate: Double = 5e-3
    /// Epochs of PriMaPs-EM (reference 50).
    public var epochs: Int = 50
    /// Images per step of both stages (reference 32). The last partial batch of an epoch is dropped.
    public var batchSize: Int = 32
    /// Adam learning rate of the EM stage.
    public var learningRate: Double = 5e-3
    /// Focal exponent of the class weights `(1 - mean softmax)^gamma`.
    public var gamma: Double = 2
    /// Momentum (EMA) update every this many EM steps.
    public var momentumEvery: Int = 10
    /// Cap of the EMA decay `min(1 - 1/n, cap)`.
    public var momentumDecayCap: Double = 0.98
    /// Probability of a horizontal flip per image and step.
    public var flipProbability: Double = 0.5
    /// Where the masks come from.
    public var proposals: ProposalsSource = .primaps
    /// PriMaPs similarity threshold psi for on-the-fly proposals.
    public var primapsThreshold: Double = 0.4
    /// Write the checkpoint every this many steps (and at every epoch end and at the end).
    public var checkpointEvery: Int = 50
    /// Seed of everything random in the run (PCA sample, epoch orders, flips).
    public var seed: UInt64 = 0
    /// Which prototypes are the result.
    public var selection: ModelSelection = .last
    /// Which copy `unseg predict` uses by default.
    public var predictCopy: PrototypeCopy = .momentum
    /// Refinement `unseg predict` applies by default.
    public var predictRefine: PredictRefinement = .none

    public init() {}

    /// The keys of the YAML form, in printing order.
    public static let keys = ["name", "classes", "pca_sample_images", "pca_rows_per_image", "warmup_epochs",
                              "warmup_learning_rate", "epochs", "batch_size", "learning_rate", "gamma",
                              "momentum_every", "momentum_decay_cap", "flip_probability", "proposals",
                              "primaps_threshold", "checkpoint_every", "seed", "selection", "predict_copy",
                              "predict_refine"]

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

    /// Parses recipe YAML. Missing keys take the defaults (the reference's settings).
    public static func parse(_ text: String) throws -> Recipe {
        let node: Any?
        do { node = try Yams.load(yaml: text) } catch {
            throw RecipeError("not valid YAML: \(error)")
        }
        guard let node else { return Recipe() }
        guard let dict = node as? [String: Any] else {
            throw RecipeError("a recipe is a mapping of keys to values (key: value per line), got \(type(of: node))")
        }
        for key in dict.keys.sorted() where !keys.contains(key) {
            throw RecipeError("unknown key '\(key)'; allowed keys: \(keys.joined(separator: ", "))")
        }
        var r = Recipe()
        func int(_ key: String, _ range: ClosedRange<Int>, _ dst: inout Int) throws {
            guard let v = dict[key] else { return }
            let i: Int?
            switch v {
            case let x as Int: i = x
            case let x as Double where x.rounded() == x && abs(x) < 1e15: i = Int(x)
            case let s as String: i = Int(s)
            default: i = nil
            }
            guard let n = i, range.contains(n) else {
                throw RecipeError("\(key): \(v) is not allowed; expected an integer in \(range.lowerBound)...\(range.upperBound == Int.max ? "" : String(range.upperBound))")
            }
            dst = n
        }
        func double(_ key: String, _ lo: Double, _ hi: Double, loOpen: Bool, hiOpen: Bool, _ dst: inout Double) throws {
            guard let v = dict[key] else { return }
            let d: Double?
            switch v {
            case let x as Double: d = x
            case let x as Int: d = Double(x)
            case let s as String: d = Double(s)
            default: d = nil
            }
            let range = "\(loOpen ? "(" : "[")\(lo), \(hi.isInfinite ? "inf" : "\(hi)")\(hiOpen ? ")" : "]")"
            guard let x = d, x.isFinite || (x.isInfinite && !hiOpen),
                  loOpen ? x > lo : x >= lo, hiOpen ? x < hi : x <= hi else {
                throw RecipeError("\(key): \(v) is not allowed; expected a number in \(range)")
            }
            dst = x
        }
        func choice<E: RawRepresentable & CaseIterable>(_ key: String, _ dst: inout E) throws where E.RawValue == String {
            guard let v = dict[key] else { return }
            guard let s = v as? String, let e = E(rawValue: s) else {
                throw RecipeError("\(key): '\(v)' is not allowed; expected one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            dst = e
        }
        if let v = dict["name"] {
            guard let s = v as? String ?? (v as? CustomStringConvertible)?.description, !s.isEmpty else {
                throw RecipeError("name: expected a non-empty string")
            }
            r.name = s
        }
        try int("classes", 1...254, &r.classes)
        try int("pca_sample_images", 1...Int.max, &r.pcaSampleImages)
        try int("pca_rows_per_image", 0...Int.max, &r.pcaRowsPerImage)
        try int("warmup_epochs", 0...100_000, &r.warmupEpochs)
        try double("warmup_learning_rate", 0, 1, loOpen: true, hiOpen: false, &r.warmupLearningRate)
        try int("epochs", 0...100_000, &r.epochs)
        try int("batch_size", 1...4096, &r.batchSize)
        try double("learning_rate", 0, 1, loOpen: true, hiOpen: false, &r.learningRate)
        try double("gamma", 0, 100, loOpen: false, hiOpen: false, &r.gamma)
        try int("momentum_every", 1...1_000_000, &r.momentumEvery)
        try double("momentum_decay_cap", 0, 1, loOpen: false, hiOpen: true, &r.momentumDecayCap)
        try double("flip_probability", 0, 1, loOpen: false, hiOpen: false, &r.flipProbability)
        try choice("proposals", &r.proposals)
        try double("primaps_threshold", 0, 1, loOpen: false, hiOpen: false, &r.primapsThreshold)
        try int("checkpoint_every", 1...Int.max, &r.checkpointEvery)
        var seed = 0
        try int("seed", 0...Int.max, &seed)
        r.seed = UInt64(seed)
        try choice("selection", &r.selection)
        if let v = dict["predict_copy"] {
            guard let s = v as? String, let c = PrototypeCopy(rawValue: s) else {
                throw RecipeError("predict_copy: '\(v)' is not allowed; expected one of momentum, running")
            }
            r.predictCopy = c
        }
        try choice("predict_refine", &r.predictRefine)
        return r
    }

    /// The recipe as YAML, every key in `keys` order with a comment; `parse(yaml())` gives it back.
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
        out += "pca_sample_images: \(pcaSampleImages)       # images sampled for the PCA initialisation\n"
        out += "pca_rows_per_image: \(pcaRowsPerImage)         # cells per sampled image, 0 = all\n"
        out += "warmup_epochs: \(warmupEpochs)            # cosine k-means warm-up\n"
        out += "warmup_learning_rate: \(num(warmupLearningRate))\n"
        out += "epochs: \(epochs)                  # PriMaPs-EM\n"
        out += "batch_size: \(batchSize)\n"
        out += "learning_rate: \(num(learningRate))\n"
        out += "gamma: \(num(gamma))                  # class weights (1 - mean softmax)^gamma\n"
        out += "momentum_every: \(momentumEvery)           # EMA update every N steps\n"
        out += "momentum_decay_cap: \(num(momentumDecayCap))   # d = min(1 - 1/n, cap)\n"
        out += "flip_probability: \(num(flipProbability))\n"
        out += "proposals: \(proposals.rawValue)            # file (unseg propose) | primaps (on the fly)\n"
        out += "primaps_threshold: \(num(primapsThreshold))\n"
        out += "checkpoint_every: \(checkpointEvery)         # steps\n"
        out += "seed: \(seed)\n"
        out += "selection: \(selection.rawValue)             # last | best-val (best-val leaks the val split)\n"
        out += "predict_copy: \(predictCopy.rawValue)       # momentum | running\n"
        out += "predict_refine: \(predictRefine.rawValue)         # none | crf\n"
        return out
    }

    /// The EM stage's settings.
    public func emConfig(threads: Int) -> EMConfig {
        EMConfig(batchSize: batchSize, adam: AdamConfig(learningRate: Float(learningRate)), gamma: gamma,
                 momentumEvery: momentumEvery, decayCap: momentumDecayCap, flipProbability: flipProbability,
                 threads: threads, seed: FitSeeds.emTrainer(seed))
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
    /// Seed of the image order of `epoch` of a stage (0 = warm-up, 1 = EM): a function of
    /// (seed, stage, epoch) only, so a resumed run visits the same images in the same order.
    public static func epochOrder(_ seed: UInt64, stage: Int, epoch: Int) -> UInt64 {
        derive(seed, (UInt64(stage + 16) << 40) | UInt64(epoch))
    }
}
