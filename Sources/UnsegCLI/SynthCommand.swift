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
        @Option(help: ArgumentHelp("Also write the features of this many zoomed-in crops per image (/features_crops [C, N, h, w, D]) and their boxes (/crop_boxes [C, N, 4]), as `unseg-extract --crops` does: the scene rendered zoomed in to each box. For the multi-scale consistency of PriMaPs-EM (primaps-em.consistency_weight, Docs/fitting.md). --scene street only.", valueName: "C"))
        var crops: Int?
        @Option(help: ArgumentHelp("Crop side as fractions MIN,MAX of the image side, drawn uniformly per crop (with --crops; the reference's crop is half the side).", valueName: "MIN,MAX"))
        var cropScale: String = "0.5,0.5"
        @Option(help: ArgumentHelp("Extra small and thin objects per image: poles 1-3 pixels wide and signs 3-9 pixels across, below one feature cell at --patch 8 (what the multi-scale consistency is for; `unseg evaluate --report` shows IoU by object size). --scene street only.", valueName: "N"))
        var smallObjects: Int = 0
        @OptionGroup var parallel: ThreadsOption

        /// `--crops` / `--crop-scale` as crop views, nil without `--crops`; usage errors name the option.
        func cropViews() throws -> CropViews? {
            guard let c = crops else { return nil }
            let parts = cropScale.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
            let values = parts.count == 1 ? [parts[0], parts[0]] : parts
            guard values.count == 2, let lo = values[0], let hi = values[1], lo > 0, lo <= hi, hi <= 1 else {
                throw ValidationError("--crop-scale takes MIN,MAX with 0 < MIN <= MAX <= 1 (fractions of the image side; the reference's is 0.5,0.5), got '\(cropScale)'")
            }
            let v = CropViews(count: c, scale: lo...hi)
            do { try v.validate() } catch let e as SyntheticConfigError {
                throw ValidationError("--crops: " + e.message)
            }
            return v
        }

        func validate() throws {
            guard images >= 1 else { throw ValidationError("--images must be >= 1, got \(images)") }
            _ = try cropViews()
            if crops != nil || smallObjects != 0 {
                guard scene == .street, standInHead == nil else { throw ValidationError("--crops and --small-objects apply to --scene street (without --stand-in-head)") }
            }
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
            do { try config.validate() } catch {
                let flag = ["imageCount": "--images", "imageSize": "--size", "patchSize": "--patch", "channels": "--channels",
                            "classes": "--classes", "split": "--split", "smallObjects": "--small-objects"]
                var text = "\(error)"
                for (k, v) in flag { text = text.replacingOccurrences(of: k, with: v) }
                throw ValidationError(text)
            }
        }

        /// The street corpus's configuration from the options.
        var config: SyntheticConfig {
            var c = SyntheticConfig(imageCount: images, imageSize: size, patchSize: patch, channels: channels,
                                    classes: classes, seed: seed, split: split)
            c.smallObjects = smallObjects
            return c
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
                let views = try cropViews()
                try Synthesize.writeStore(config: config, path: out, options: opts, crops: views, threads: parallel.threads,
                                          progress: TerminalProgress(label: "synth"))
                say("wrote \(out): \(images) images, \(size)x\(size), \(size / max(patch, 1))x\(size / max(patch, 1))x\(channels) features, \(classes) classes, seed \(seed)"
                    + (smallObjects > 0 ? ", \(smallObjects) extra small objects per image" : "")
                    + (views.map { ", \($0.count) crop views per image (side \(cropScale) of the image)" } ?? ""))
            }
        }
    }
}

/// Which synthetic corpus `unseg synth` writes.
enum SyntheticScene: String, CaseIterable, ExpressibleByArgument {
    case street, object, mosaic
}
