import ArgumentParser

import UnsegLinAlg
import UnsegPipeline
import UnsegStore
import UnsegSynthetic

extension Unseg {
    struct Synth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a synthetic feature store with planted semantic structure (the built-in default corpus).",
            discussion: "The generative model is described in Docs/synthetic-corpus.md. The same seed gives the same bytes.")

        @Option(help: "Output store (.h5); written to a temporary name and renamed when complete.")
        var out: String
        @Option(help: "street (the default corpus: street scenes, 27 classes), object (object-centric scenes: one or a few salient objects, binary labels, /boxes; for saliency and CorLoc) or mosaic (the held-out corpus: other class frequencies and sizes, rare classes only as small objects, texture drift within a class; Docs/maskcontrast.md).")
        var scene: SyntheticScene = .street
        @Option(help: "Number of images.")
        var images: Int = 200
        @Option(help: "Image side in pixels (square images).")
        var size: Int = 320
        @Option(help: "Pixels per feature cell (8 for ViT-S/8).")
        var patch: Int = 8
        @Option(help: "Feature channels (384 for ViT-S).")
        var channels: Int = 384
        @Option(help: "Number of semantic classes (27 uses the cityscapes27 names and protocol).")
        var classes: Int = 27
        @Option(help: "Random seed; classes are shared by every split made with the same seed.")
        var seed: UInt64 = 0
        @Option(help: "Split name written to the store (train, val, ...); images differ between splits.")
        var split: String = "train"
        @Flag(help: "Store features as float32 instead of float16.")
        var float32 = false
        @Option(help: "gzip level 1-9 with byte shuffle (default: no compression).")
        var deflate: Int?
        @Option(help: ArgumentHelp("Write the store in a peer's layout (as `unseg-extract --head` does) with a stand-in head: /features the code of a fixed random projection to this many channels, /features_backbone the synthetic features, /peer_clusters a cosine k-means on the code. For trying +SotA+PriMaPs-EM offline (Docs/fitting.md); not a trained peer.", valueName: "dim"))
        var standInHead: Int?
        @OptionGroup var parallel: ThreadsOption

        func validate() throws {
            guard images >= 1 else { throw ValidationError("--images must be >= 1, got \(images)") }
            if let d = deflate, !(1...9).contains(d) { throw ValidationError("--deflate must be in 1...9, got \(d)") }
            if let d = standInHead {
                guard (1...4096).contains(d), d >= classes else { throw ValidationError("--stand-in-head must be in \(classes)...4096 (at least --classes channels), got \(d)") }
                guard scene == .street else { throw ValidationError("--stand-in-head applies to --scene street") }
            }
            if scene == .object {
                guard size % max(patch, 1) == 0, size / max(patch, 1) >= 4, channels >= 4, patch >= 1 else {
                    throw ValidationError("--scene object needs --size a multiple of --patch with at least 4 cells per side and --channels >= 4")
                }
                return
            }
            // The generator's own checks, as usage errors (exit 64) naming the option.
            let config = SyntheticConfig(imageCount: images, imageSize: size, patchSize: patch, channels: channels,
                                         classes: classes, seed: seed, split: split)
            do { try config.validate() } catch {
                let flag = ["imageCount": "--images", "imageSize": "--size", "patchSize": "--patch", "channels": "--channels",
                            "classes": "--classes", "split": "--split"]
                var text = "\(error)"
                for (k, v) in flag { text = text.replacingOccurrences(of: k, with: v) }
                throw ValidationError(text)
            }
        }

        func run() throws {
            try reportingErrors {
                if scene == .object {
                    let oc = ObjectSceneConfig(imageCount: images, imageSize: size, patchSize: patch, channels: channels, seed: seed, split: split)
                    try Synthesize.writeObjectStore(config: oc, path: out, options: StoreWriteOptions(featureType: float32 ? .float32 : .float16, deflate: deflate),
                                                    threads: parallel.threads, progress: TerminalProgress(label: "synth"))
                    say("wrote \(out): \(images) object-centric images, \(size)x\(size), binary labels and boxes, seed \(seed)")
                    return
                }
                let config = SyntheticConfig(imageCount: images, imageSize: size, patchSize: patch, channels: channels,
                                             classes: classes, seed: seed, split: split)
                let opts = StoreWriteOptions(featureType: float32 ? .float32 : .float16, deflate: deflate)
                if scene == .mosaic {
                    try Synthesize.writeMosaicStore(config: config, path: out, options: opts, threads: parallel.threads,
                                                    progress: TerminalProgress(label: "synth"))
                    say("wrote \(out): \(images) held-out mosaic images, \(size)x\(size), \(classes) classes (rare: \(try MosaicCorpus(config: config).rareClasses.map(String.init).joined(separator: " "))), seed \(seed)")
                    return
                }
                if let d = standInHead {
                    try Synthesize.writePeerStandInStore(config: config, dim: d, path: out, options: opts, threads: parallel.threads,
                                                         progress: TerminalProgress(label: "synth"))
                    say("wrote \(out): \(images) images in a peer's layout: /features the stand-in head's \(d)-channel code, /features_backbone \(channels) channels, /peer_clusters \(classes) centroids, seed \(seed)")
                    return
                }
                try Synthesize.writeStore(config: config, path: out, options: opts, threads: parallel.threads,
                                          progress: TerminalProgress(label: "synth"))
                say("wrote \(out): \(images) images, \(size)x\(size), \(size / max(patch, 1))x\(size / max(patch, 1))x\(channels) features, \(classes) classes, seed \(seed)")
            }
        }
    }
}

/// Which synthetic corpus `unseg synth` writes.
enum SyntheticScene: String, CaseIterable, ExpressibleByArgument {
    case street, object, mosaic
}
