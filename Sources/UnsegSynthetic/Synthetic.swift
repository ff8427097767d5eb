import Foundation
import UnsegCore
import UnsegLinAlg
import UnsegStore

// The synthetic corpus: street-scene-like label maps, RGB images and raw
// ViT-like features generated from a seed. The generative model is described
// in Docs/synthetic-corpus.md; the scene layout lives in SyntheticScene.swift
// and the feature / RGB rendering in SyntheticRender.swift.

/// Parameters of a synthetic corpus; everything else is derived from `seed`.
///
/// The class structure (class mean directions, sub-mode directions, colours,
/// nuisance directions) depends on `seed`, `channels`, `classes` and
/// `modesPerClass` only, so a "train" and a "val" corpus with the same seed share
/// their classes; the images also depend on `split` and the image index.
/// Decoding accepts missing keys (the defaults below are used), so a recipe can
/// name only what it changes.
public struct SyntheticConfig: Sendable, Codable, Equatable {
    /// Number of images `N` in the corpus (>= 1).
    public var imageCount: Int = 100
    /// Side of the square image in pixels (`H = W`); a multiple of `patchSize`.
    public var imageSize: Int = 320
    /// Image pixels per feature cell (8 for DINO ViT-S/8).
    public var patchSize: Int = 8
    /// Feature channels `C` (384 for ViT-S).
    public var channels: Int = 384
    /// Number of labelled classes `K` (2...254). 27 uses the cityscapes27 names and layout roles.
    public var classes: Int = 27
    /// Sub-modes per class (1...16): an instance picks one of them.
    public var modesPerClass: Int = 3
    /// Seed of the class structure and, with `split`, of the images.
    public var seed: UInt64 = 0
    /// Split name ("train", "val", ...): hashed into the image streams, not into the classes.
    public var split: String = "train"

    /// Isotropic feature noise: expected noise norm relative to a unit signal (per-channel std `noise / sqrt(C)`).
    public var noise: Float = 0.4
    /// Squared share of a sub-mode direction that is its own (not the class mean); 0 = modes equal the mean.
    public var modeSpread: Float = 0.2
    /// Per-instance jitter of the instance vector, relative to its unit sub-mode direction.
    public var instanceSpread: Float = 0.15
    /// Norm of the per-image nuisance offset added to every cell, relative to a unit signal.
    public var nuisance: Float = 0.15
    /// Standard deviation of log(cell norm factor): per-cell log-normal norm variation.
    public var normSpread: Float = 0.25
    /// Gaussian sigma, in cells, of the 3x3 spatial blur of the class mixture (0 = no blur).
    public var blurSigma: Float = 0.5
    /// Typical raw feature norm (DINO ViT-S/8 tokens after the final LayerNorm are tens).
    public var featureScale: Float = 30
    /// Drift of a labelled instance's features with the cell's vertical position, along a
    /// per-class unit direction: `+ depthDrift * (2t - 1) * classNorm * u_k` at row fraction `t`
    /// (DINO tokens of one object change with its scale and depth; 0 = none).
    public var depthDrift: Float = 1
    /// Extra small and thin objects per street image (`synth --small-objects N`): poles 1-3 pixels
    /// wide and signs 3-9 pixels across, below a feature cell at patch 8, so that a head on the
    /// cell grid loses them (the Two Tricks paper's multi-scale consistency is for these). 0: none,
    /// and the corpus is byte-identical to one made before the option existed.
    public var smallObjects: Int = 0

    /// The defaults: 100 images of 320x320, patch 8, 384 channels, 27 classes, seed 0, split "train".
    public init() {}

    /// A config with the common fields set and the generative knobs at their defaults.
    public init(imageCount: Int, imageSize: Int = 320, patchSize: Int = 8, channels: Int = 384,
                classes: Int = 27, modesPerClass: Int = 3, seed: UInt64 = 0, split: String = "train") {
        self.imageCount = imageCount
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.channels = channels
        self.classes = classes
        self.modesPerClass = modesPerClass
        self.seed = seed
        self.split = split
    }

    enum CodingKeys: String, CodingKey {
        case imageCount, imageSize, patchSize, channels, classes, modesPerClass, seed, split
        case noise, modeSpread, instanceSpread, nuisance, normSpread, blurSigma, featureScale, depthDrift, smallObjects
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SyntheticConfig()
        imageCount = try c.decodeIfPresent(Int.self, forKey: .imageCount) ?? d.imageCount
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? d.channels
        classes = try c.decodeIfPresent(Int.self, forKey: .classes) ?? d.classes
        modesPerClass = try c.decodeIfPresent(Int.self, forKey: .modesPerClass) ?? d.modesPerClass
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        split = try c.decodeIfPresent(String.self, forKey: .split) ?? d.split
        noise = try c.decodeIfPresent(Float.self, forKey: .noise) ?? d.noise
        modeSpread = try c.decodeIfPresent(Float.self, forKey: .modeSpread) ?? d.modeSpread
        instanceSpread = try c.decodeIfPresent(Float.self, forKey: .instanceSpread) ?? d.instanceSpread
        nuisance = try c.decodeIfPresent(Float.self, forKey: .nuisance) ?? d.nuisance
        normSpread = try c.decodeIfPresent(Float.self, forKey: .normSpread) ?? d.normSpread
        blurSigma = try c.decodeIfPresent(Float.self, forKey: .blurSigma) ?? d.blurSigma
        featureScale = try c.decodeIfPresent(Float.self, forKey: .featureScale) ?? d.featureScale
        depthDrift = try c.decodeIfPresent(Float.self, forKey: .depthDrift) ?? d.depthDrift
        smallObjects = try c.decodeIfPresent(Int.self, forKey: .smallObjects) ?? d.smallObjects
    }

    /// Feature cells per image side, `imageSize / patchSize`.
    public var gridSize: Int { imageSize / max(patchSize, 1) }

    /// Checks every field; throws `SyntheticConfigError` naming the field, its value and the allowed range.
    public func validate() throws {
        func fail(_ field: String, _ value: Any, _ rule: String) -> SyntheticConfigError {
            SyntheticConfigError(field: field, message: "\(field)=\(value) \(rule)")
        }
        guard imageCount >= 1 else { throw fail("imageCount", imageCount, "should be >= 1") }
        guard (1...64).contains(patchSize) else { throw fail("patchSize", patchSize, "should be in 1...64 (8 for ViT-S/8)") }
        guard imageSize >= 1, imageSize <= 8192 else { throw fail("imageSize", imageSize, "should be in 1...8192") }
        guard imageSize % patchSize == 0 else {
            throw fail("imageSize", imageSize, "should be divisible by patchSize=\(patchSize); "
                       + "use e.g. \(max(4, imageSize / patchSize) * patchSize)")
        }
        guard imageSize / patchSize >= 4 else {
            throw fail("imageSize", imageSize, "gives \(imageSize / patchSize) cells per side with patchSize=\(patchSize); "
                       + "should give >= 4 (imageSize >= \(4 * patchSize))")
        }
        guard channels >= 8, channels <= 16384 else { throw fail("channels", channels, "should be in 8...16384") }
        guard (2...254).contains(classes) else {
            throw fail("classes", classes, "should be in 2...254 (labels are uint8 and 255 means ignore)")
        }
        guard (1...16).contains(modesPerClass) else { throw fail("modesPerClass", modesPerClass, "should be in 1...16") }
        guard !split.isEmpty else { throw fail("split", "\"\"", "should be a non-empty name such as \"train\" or \"val\"") }
        func check(_ field: String, _ v: Float, _ range: ClosedRange<Float>) throws {
            guard v.isFinite, range.contains(v) else { throw fail(field, v, "should be finite and in \(range)") }
        }
        try check("noise", noise, 0...100)
        try check("modeSpread", modeSpread, 0...1)
        try check("instanceSpread", instanceSpread, 0...100)
        try check("nuisance", nuisance, 0...100)
        try check("normSpread", normSpread, 0...3)
        try check("blurSigma", blurSigma, 0...10)
        try check("featureScale", featureScale, 1e-6...1e4)
        try check("depthDrift", depthDrift, 0...10)
        guard (0...64).contains(smallObjects) else { throw fail("smallObjects", smallObjects, "should be in 0...64 (extra small objects per image)") }
    }
}

/// A rejected `SyntheticConfig`: which field, with its value and what is allowed.
public struct SyntheticConfigError: Error, CustomStringConvertible, Equatable {
    /// The offending field of `SyntheticConfig`.
    public let field: String
    /// "field=value should be ..." with the allowed range.
    public let message: String
    public var description: String { "invalid synthetic corpus configuration: \(message)" }
}

/// One generated image: raw features, RGB pixels, labels and a name.
public struct SyntheticImage: Sendable, Equatable {
    /// Index of the image in its corpus.
    public let index: Int
    /// Raw (not L2-normalised) features, `[h*w, C]` row-major, cell `(y, x)` at row `y*w + x`.
    public var features: Matrix
    /// RGB pixels, `[H*W*3]` row-major, channel last.
    public var image: [UInt8]
    /// Class id per pixel, `[H*W]`; 255 = ignore.
    public var labels: [UInt8]
    /// Name such as "synthetic_train_000042".
    public var name: String
    /// Features `[h*w, C]` of zoomed-in crops (`image(_:crops:)`), one per box of `cropBoxes`.
    public var cropFeatures: [Matrix] = []
    public var cropBoxes: [CropBox] = []
}

/// Zoomed-in crop views to render with each image (`synth --crops C --crop-scale MIN,MAX`).
public struct CropViews: Sendable, Equatable {
    /// Crops per image (1...1024).
    public var count: Int
    /// Side as a fraction of the image side (the reference's crop is half: 0.5...0.5).
    public var scale: ClosedRange<Double>
    public init(count: Int, scale: ClosedRange<Double> = 0.5...0.5) { self.count = count; self.scale = scale }

    /// Throws a message naming the option unless 1 <= count <= 1024 and 0 < MIN <= MAX <= 1.
    public func validate() throws {
        guard (1...1024).contains(count) else {
            throw SyntheticConfigError(field: "crops", message: "crops=\(count) should be in 1...1024 (crops per image)")
        }
        guard scale.lowerBound > 0, scale.upperBound <= 1 else {
            throw SyntheticConfigError(field: "cropScale", message: "crop-scale=\(scale.lowerBound),\(scale.upperBound) should satisfy 0 < MIN <= MAX <= 1 (fractions of the image side; the reference's is 0.5,0.5)")
        }
    }
}

/// A deterministic synthetic street-scene corpus with ViT-like raw features.
///
/// `image(i)` depends only on (config, i): each image draws from its own
/// `SeededRandom.stream`, so images can be generated in any order and in
/// parallel with identical results. Cost of one 320x320 image with 40x40x384
/// features: a few milliseconds (O(H*W + h*w*C*m) with m ~ 2-4 instances mixed per cell).
public struct SyntheticCorpus: Sendable {
    /// The validated configuration.
    public let config: SyntheticConfig
    /// One name per class: cityscapes27 names when `classes == 27`, else "class_00", "class_01", ...
    public let classNames: [String]
    /// Unit class mean directions, `[K, C]`: the nearest-mean oracle's prototypes.
    public let classMeans: Matrix
    /// Unit sub-mode directions, `[K * modesPerClass, C]`, row `k * modesPerClass + j`.
    public let modeDirections: Matrix
    /// Label protocol name for the store: "cityscapes27" when `classes == 27`, else "synthetic<K>".
    public var protocolName: String { config.classes == 27 ? "cityscapes27" : "synthetic\(config.classes)" }

    let structure: ClassStructure
    let roles: SceneRoles
    let imageSeed: UInt64

    /// Validates `config` and derives the class structure from its seed. O(K * modes * C).
    /// Throws `SyntheticConfigError` for an invalid configuration.
    public init(config: SyntheticConfig) throws {
        try config.validate()
        self.config = config
        let k = config.classes
        classNames = k == 27 ? SyntheticCorpus.cityscapes27ClassNames
            : (0..<k).map { String(format: "class_%02d", $0) }
        roles = k == 27 ? SceneRoles.cityscapes27() : SceneRoles.generic(classCount: k)
        structure = ClassStructure(config: config, groups: roles.groupOfClass)
        classMeans = structure.means
        modeDirections = structure.modes
        imageSeed = SyntheticCorpus.mix(config.seed ^ SyntheticCorpus.fnv1a(config.split))
    }

    /// Number of images.
    public var count: Int { config.imageCount }

    /// Name of image `index`, e.g. "synthetic_train_000042".
    public func name(_ index: Int) -> String {
        "synthetic_\(config.split)_" + String(format: "%06d", index)
    }

    /// Generates image `index` (0 ..< imageCount); a pure function of (config, index), and with
    /// `crops` its zoomed-in crop views (boxes `CropBox.draw` seeded by (seed, split, image, crop)),
    /// rendered from the same scene, instance vectors and nuisance as the full view.
    public func image(_ index: Int, crops: CropViews? = nil) -> SyntheticImage {
        let boxes = (0..<(crops?.count ?? 0)).map {
            CropBox.draw(seed: imageSeed, image: index, crop: $0, size: config.imageSize, patch: config.patchSize, scale: crops!.scale)
        }
        return image(index, boxes: boxes)
    }

    /// Image `index` with crop views of the given boxes (integer pixel boxes inside the image).
    func image(_ index: Int, boxes: [CropBox]) -> SyntheticImage {
        precondition(index >= 0 && index < config.imageCount,
                     "synthetic image index \(index) out of range 0..<\(config.imageCount)")
        var rng = SeededRandom.stream(seed: imageSeed, index: UInt64(index))
        let scene = SceneBuilder.build(size: config.imageSize, roles: roles, modesPerClass: config.modesPerClass,
                                       smallObjects: config.smallObjects, rng: &rng)
        let render = Renderer(config: config, structure: structure)
        let cropSeed = SyntheticCorpus.mix(imageSeed ^ 0x43_524F_5056_4945 ^ UInt64(index))
        let (features, rgb, cropFeatures) = render.render(scene: scene, rng: &rng, crops: boxes, cropSeed: cropSeed)
        var img = SyntheticImage(index: index, features: features, image: rgb, labels: scene.labels, name: name(index))
        img.cropFeatures = cropFeatures
        img.cropBoxes = boxes
        return img
    }

    /// The 27 cityscapes27 class names in protocol order.
    public static let cityscapes27ClassNames: [String] = [
        "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge",
        "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
        "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
    ]

    /// FNV-1a 64-bit hash of the UTF-8 bytes (stable across runs and machines).
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// SplitMix64 finaliser.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Class-level structure shared by every image of a seed.
///
/// mean_k = normalize(sqrt(wc) g + sqrt(wg) G_group(k) + sqrt(wo) e_k): a direction
/// common to all tokens (g), one per semantic group (G) and one per class (e), all
/// random Gaussian directions. Sub-mode j of class k is
/// normalize(sqrt(1 - s) mean_k + sqrt(s) d_kj) with s = modeSpread.
struct ClassStructure: Sendable {
    static let commonShare: Float = 0.2
    static let groupShare: Float = 0.1
    static let nuisanceRank = 4

    let means: Matrix          // [K, C]
    let modes: Matrix          // [K*M, C]
    let voidDirection: [Float] // [C], features of unlabelled regions
    let nuisance: Matrix       // [nuisanceRank, C]
    let classNorm: [Float]     // [K], per-class norm factor
    let drift: Matrix          // [K, C], unit directions of the depth drift
    let classColor: [SIMD3<Float>]     // [K]
    let modeColor: [SIMD3<Float>]      // [K*M] offsets
    let classTexture: [Float]  // [K] texture amplitude (0...255 units)

    init(config: SyntheticConfig, groups: [Int]) {
        let c = config.channels, k = config.classes, m = config.modesPerClass
        var rng = SeededRandom(seed: SyntheticCorpus.mix(config.seed ^ 0x5EED_C1A5_5E50_0001))
        func unit() -> [Float] {
            var v = (0..<c).map { _ in rng.gaussian() }
            let n = max(Reduce.dot(v, v).squareRoot(), 1e-12)
            for i in 0..<c { v[i] /= n }
            return v
        }
        func combine(_ parts: [([Float], Float)]) -> [Float] {
            var v = [Float](repeating: 0, count: c)
            for (p, w) in parts { for i in 0..<c { v[i] += w * p[i] } }
            let n = max(Reduce.dot(v, v).squareRoot(), 1e-12)
            for i in 0..<c { v[i] /= n }
            return v
        }
        let common = unit()
        let groupCount = (groups.max() ?? 0) + 1
        let groupDirs = (0..<groupCount).map { _ in unit() }
        var means = Matrix(rows: k, cols: c)
        var modes = Matrix(rows: k * m, cols: c)
        let wc = ClassStructure.commonShare, wg = ClassStructure.groupShare, wo = 1 - wc - wg
        let s = config.modeSpread
        for cls in 0..<k {
            let mean = combine([(common, wc.squareRoot()), (groupDirs[groups[cls]], wg.squareRoot()), (unit(), wo.squareRoot())])
            means.setRow(cls, mean)
            for j in 0..<m {
                modes.setRow(cls * m + j, m == 1 ? mean : combine([(mean, (1 - s).squareRoot()), (unit(), s.squareRoot())]))
            }
        }
        self.means = means
        self.modes = modes
        voidDirection = combine([(common, wc.squareRoot()), (unit(), (1 - wc).squareRoot())])
        var nuis = Matrix(rows: ClassStructure.nuisanceRank, cols: c)
        for q in 0..<ClassStructure.nuisanceRank { nuis.setRow(q, unit()) }
        nuisance = nuis
        classNorm = (0..<k).map { _ in Float(exp(Double(rng.float(in: -0.2..<0.2)))) }
        // Colours: cityscapes-like hand-picked bases for 27 classes, random otherwise.
        var colors: [SIMD3<Float>] = []
        for cls in 0..<k {
            if k == 27 {
                colors.append(SceneRoles.cityscapesColor[cls])
            } else {
                colors.append(SIMD3(rng.float(in: 30..<225), rng.float(in: 30..<225), rng.float(in: 30..<225)))
            }
        }
        classColor = colors
        modeColor = (0..<(k * m)).map { _ in
            SIMD3(rng.float(in: -22..<22), rng.float(in: -22..<22), rng.float(in: -22..<22))
        }
        classTexture = (0..<k).map { cls in
            k == 27 ? SceneRoles.cityscapesTexture[cls] : rng.float(in: 3..<14)
        }
        // A generator of its own, so that the structure above does not depend on it.
        rng = SeededRandom(seed: SyntheticCorpus.mix(config.seed ^ 0x5EED_C1A5_5E50_0002))
        var drift = Matrix(rows: k, cols: c)
        for cls in 0..<k { drift.setRow(cls, unit()) }
        self.drift = drift
    }
}
