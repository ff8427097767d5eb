import Foundation
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
    public static func writeStore(config: SyntheticConfig, path: String, options: StoreWriteOptions = StoreWriteOptions(),
                                  threads: Int = Parallel.coreCount, progress: ProgressSink? = nil) throws {
        try OutputGuard.check(outputs: [("--out", path)], inputs: [])
        let corpus = try SyntheticCorpus(config: config)
        let grid = config.gridSize
        // 27 classes carry the cityscapes27 names and protocol; other counts use identity ids ("genericN").
        let meta = StoreMetadata(backbone: "synthetic", patchSize: config.patchSize, dataset: "synthetic", split: config.split,
                                 labelProtocol: config.classes == 27 ? "cityscapes27" : "generic\(config.classes)",
                                 classNames: corpus.classNames)
        let writer = try FeatureStoreWriter(path: path, metadata: meta, count: config.imageCount, gridHeight: grid,
                                            gridWidth: grid, channels: config.channels, options: options)
        defer { progress?.finish() }
        try fill(writer, count: config.imageCount, threads: threads, progress: progress) { i in
            let img = corpus.image(i)
            return (img.features, img.image, img.labels, img.name, [])
        }
    }

    /// Generates images `0..<count` in parallel blocks of `2 * threads` (each a function of its
    /// index only) and writes them in order, boxes included; commits, or discards on error. The
    /// file's bytes do not depend on the thread count. Memory: one block of images.
    static func fill(_ writer: FeatureStoreWriter, count: Int, threads: Int, progress: ProgressSink?,
                     generate: @escaping @Sendable (Int) -> (Matrix, [UInt8], [UInt8], String, [[Float]])) throws {
        let block = max(1, 2 * threads)
        var done = 0
        do {
            while done < count {
                let n = min(block, count - done), base = done
                let images = Parallel.map(n, threads: threads) { generate(base + $0) }
                for (k, img) in images.enumerated() {
                    try writer.write(base + k, features: img.0, image: img.1, labels: img.2, name: img.3)
                    writer.boxes += img.4
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
            return (img.features, img.image, img.labels, img.name, img.boxes)
        }
    }
}
