import Foundation
import UnsegCore
import UnsegLinAlg
import UnsegStore
import UnsegSynthetic

/// Writes a synthetic feature store (see Docs/synthetic-corpus.md for the generative model).
public enum Synthesize {
    /// Generates `config.imageCount` images and writes them to `path` atomically.
    ///
    /// Images are generated in parallel in blocks of `2 * threads` (each depends only
    /// on the seed and its index) and written in order, so the file's bytes do not
    /// depend on the thread count. Memory: one block of images.
    /// With `crops`, also `/features_crops` and `/crop_boxes` as `unseg-extract --crops` writes them:
    /// the scene rendered zoomed in to each box (Docs/synthetic-corpus.md).
    public static func writeStore(config: SyntheticConfig, path: String, options: StoreWriteOptions = StoreWriteOptions(),
                                  crops: CropViews? = nil, threads: Int = Parallel.coreCount, progress: ProgressSink? = nil) throws {
        try OutputGuard.check(outputs: [("--out", path)], inputs: [])
        try crops?.validate()
        let corpus = try SyntheticCorpus(config: config)
        // 27 classes carry the cityscapes27 names and protocol; other counts use identity ids ("genericN").
        let meta = StoreMetadata(backbone: "synthetic", patchSize: config.patchSize, dataset: "synthetic", split: config.split,
                                 labelProtocol: config.classes == 27 ? "cityscapes27" : "generic\(config.classes)",
                                 classNames: corpus.classNames)
        var attributes: [(String, String)] = []
        if let c = crops {
            attributes = [("crops_seed", String(config.seed)), ("crop_scale", "\(c.scale.lowerBound),\(c.scale.upperBound)")]
        }
        try writeImages(config: config, meta: meta, path: path, options: options, threads: threads, progress: progress,
                        attributes: attributes, cropCount: crops?.count ?? 0) { corpus.image($0, crops: crops) }
    }

    /// Writes the held-out mosaic corpus (`synth --scene mosaic`, Docs/maskcontrast.md): other
    /// statistics than the street corpus, for checking a method on data it was not tuned on.
    /// Same determinism as `writeStore`.
    public static func writeMosaicStore(config: SyntheticConfig, path: String, options: StoreWriteOptions = StoreWriteOptions(),
                                        threads: Int = Parallel.coreCount, progress: ProgressSink? = nil) throws {
        try OutputGuard.check(outputs: [("--out", path)], inputs: [])
        let corpus = try MosaicCorpus(config: config)
        let meta = StoreMetadata(backbone: "synthetic-mosaic", patchSize: config.patchSize, dataset: "synthetic-mosaic", split: config.split,
                                 labelProtocol: "generic\(config.classes)", classNames: corpus.classNames)
        try writeImages(config: config, meta: meta, path: path, options: options, threads: threads, progress: progress,
                        attributes: [("rare_classes", corpus.rareClasses.map(String.init).joined(separator: ","))]) { corpus.image($0) }
    }

    /// A store of `config.imageCount` generated images (features, RGB, labels, names), via `fill`.
    static func writeImages(config: SyntheticConfig, meta: StoreMetadata, path: String, options: StoreWriteOptions, threads: Int,
                            progress: ProgressSink?, attributes: [(String, String)] = [], cropCount: Int = 0,
                            image: @escaping @Sendable (Int) -> SyntheticImage) throws {
        let grid = config.gridSize
        let writer = try FeatureStoreWriter(path: path, metadata: meta, count: config.imageCount, gridHeight: grid,
                                            gridWidth: grid, channels: config.channels, options: options, cropCount: cropCount,
                                            attributes: attributes)
        defer { progress?.finish() }
        try fill(writer, count: config.imageCount, threads: threads, progress: progress) { i in
            let img = image(i)
            return Generated(features: img.features, image: img.image, labels: img.labels, name: img.name,
                             crops: Array(zip(img.cropFeatures, img.cropBoxes)))
        }
    }

    /// Cells of the stand-in peer's own "training" set: its cluster probe is fitted on the code of
    /// the first `standInTrainImages` train images of the seed (whatever split is written), so the
    /// train and val stores of one seed hold the same peer.
    public static let standInTrainImages = 32

    /// Writes a synthetic store in a peer's layout (what `unseg-extract --head` writes), with a
    /// stand-in for the peer: `/features` = the code `f P^T` of a fixed random projection
    /// `P [dim, C]` (Gaussian, 1/sqrt(C), seeded by the corpus seed), `/features_backbone` = the
    /// synthetic features `f`, `/peer_clusters` = its "cluster probe": cosine k-means (K = classes)
    /// on the code of the seed's first `standInTrainImages` train images. It is not STEGO or HP:
    /// it stands in for one so that the +SotA+PriMaPs-EM path runs offline (Docs/fitting.md).
    public static func writePeerStandInStore(config: SyntheticConfig, dim: Int, path: String,
                                             options: StoreWriteOptions = StoreWriteOptions(),
                                             threads: Int = Parallel.coreCount, progress: ProgressSink? = nil) throws {
        try OutputGuard.check(outputs: [("--out", path)], inputs: [])
        let corpus = try SyntheticCorpus(config: config)
        let c = config.channels, grid = config.gridSize
        var rng = SeededRandom.stream(seed: config.seed, index: 0x5354_414e_4449_4e00)   // "STANDIN"
        let scale = 1 / Float(c).squareRoot()
        let projection = Matrix(rows: dim, cols: c, data: (0..<(dim * c)).map { _ in rng.gaussian() * scale })
        let code: @Sendable (Matrix) -> Matrix = { BLAS.matmul($0, projection, transB: true) }
        // The stand-in's cluster probe, fitted on its own training images.
        var train = config
        train.split = "train"
        train.imageCount = standInTrainImages
        let trainCorpus = try SyntheticCorpus(config: train)
        let codes = Parallel.map(standInTrainImages, threads: threads) { code(trainCorpus.image($0).features) }
        let rows = codes.reduce(0) { $0 + $1.rows }
        var sample = Matrix(rows: rows, cols: dim)
        var at = 0
        for m in codes { sample.data.replaceSubrange((at * dim)..<((at + m.rows) * dim), with: m.data); at += m.rows }
        let probe = try KMeans.fit(sample, config: KMeansConfig(clusters: config.classes, restarts: 2, metric: .cosine,
                                                                seed: config.seed, threads: threads))
        let meta = StoreMetadata(backbone: "stand-in+synthetic", patchSize: config.patchSize, dataset: "synthetic", split: config.split,
                                 labelProtocol: config.classes == 27 ? "cityscapes27" : "generic\(config.classes)",
                                 classNames: corpus.classNames)
        let writer = try FeatureStoreWriter(path: path, metadata: meta, count: config.imageCount, gridHeight: grid,
                                            gridWidth: grid, channels: dim, options: options, backboneChannels: c,
                                            attributes: [("head", "stand-in"), ("head_backbone", "synthetic"),
                                                         ("head_description", "a fixed random projection (not a trained peer), cluster probe by cosine k-means on its code"),
                                                         ("mask_features", "features_backbone")])
        writer.peerClusters = probe.centers
        defer { progress?.finish() }
        try fill(writer, count: config.imageCount, threads: threads, progress: progress) { i in
            let img = corpus.image(i)
            return Generated(features: code(img.features), image: img.image, labels: img.labels, name: img.name, backbone: img.features)
        }
    }

    /// Generates images `0..<count` in parallel blocks of `2 * threads` (each a function of its
    /// index only) and writes them in order, boxes included; commits, or discards on error. The
    /// file's bytes do not depend on the thread count. Memory: one block of images.
    /// One generated image as `fill` writes it.
    struct Generated: Sendable {
        var features: Matrix, image: [UInt8], labels: [UInt8], name: String
        /// `/boxes` rows (image index, x0, y0, x1, y1).
        var boxes: [[Float]] = []
        /// A peer's store: the backbone features behind the code in `features`.
        var backbone: Matrix? = nil
        var crops: [(features: Matrix, box: CropBox)] = []
    }

    static func fill(_ writer: FeatureStoreWriter, count: Int, threads: Int, progress: ProgressSink?,
                     generate: @escaping @Sendable (Int) -> Generated) throws {
        let block = max(1, 2 * threads)
        var done = 0
        do {
            while done < count {
                let n = min(block, count - done), base = done
                let images = Parallel.map(n, threads: threads) { generate(base + $0) }
                for (k, img) in images.enumerated() {
                    try writer.write(base + k, features: img.features, image: img.image, labels: img.labels, name: img.name,
                                     backbone: img.backbone, crops: img.crops)
                    writer.boxes += img.boxes
                }
                done += n
                progress?.update(done: done, total: count, note: nil)
            }
            try writer.commit()
        } catch {
            writer.discard()
            throw error
        }
    }

    /// Writes an object-centric store (`synth --scene object`): features, images, binary labels
    /// (protocol `generic2`: background, foreground) and `/boxes`. Same determinism as `writeStore`.
    public static func writeObjectStore(config: ObjectSceneConfig, path: String, options: StoreWriteOptions = StoreWriteOptions(),
                                        threads: Int = Parallel.coreCount, progress: ProgressSink? = nil) throws {
        try OutputGuard.check(outputs: [("--out", path)], inputs: [])
        let scene = try ObjectScene(config: config)
        let g = config.gridSize
        let meta = StoreMetadata(backbone: "synthetic", patchSize: config.patchSize, dataset: "synthetic-objects", split: config.split,
                                 labelProtocol: "generic2", classNames: ["background", "foreground"])
        let writer = try FeatureStoreWriter(path: path, metadata: meta, count: config.imageCount, gridHeight: g, gridWidth: g,
                                            channels: config.channels, options: options)
        defer { progress?.finish() }
        try fill(writer, count: config.imageCount, threads: threads, progress: progress) { i in
            let img = scene.image(i)
            return Generated(features: img.features, image: img.image, labels: img.labels, name: img.name, boxes: img.boxes)
        }
    }
}
