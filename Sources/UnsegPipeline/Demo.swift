import Foundation
import UnsegEvaluation
import UnsegImaging
import UnsegLinAlg
import UnsegProposals
import UnsegStore
import UnsegSynthetic

extension Recipe {
    /// The built-in recipe of `unseg demo` (also in `Recipes/demo.yaml`; a test keeps them equal).
    public static var demo: Recipe {
        var r = Recipe()
        r.name = "demo"
        r.classes = 27
        r.pcaSampleImages = 64
        r.pcaRowsPerImage = 0
        r.warmupEpochs = 10
        r.warmupLearningRate = 0.005
        r.epochs = 8
        r.batchSize = 16
        r.learningRate = 0.02
        r.gamma = 2
        r.momentumEvery = 2
        r.momentumDecayCap = 0.98
        r.flipProbability = 0.5
        r.proposals = .primapsCRF
        r.primapsThreshold = 0.4
        r.checkpointEvery = 20
        r.seed = 0
        r.selection = .last
        r.predictCopy = .momentum
        r.predictRefine = .none
        r.maskContrast.epochs = 8
        r.maskContrast.hidden = 128
        r.maskContrast.learningRate = 1.0
        r.segmentKMeans.pcaDims = 0
        r.masks.source = .file
        r.masks.primapsThreshold = 0.5
        return r
    }

    /// The "Baseline" row for this recipe: its cosine k-means warm-up alone (no EM), so that
    /// "+PriMaPs-EM" is exactly EM on top of the baseline's prototypes.
    public var baseline: Recipe {
        var r = self
        r.name = name + "-baseline"
        r.stages = r.stages.filter { $0 != .primapsEM }
        return r
    }

    /// The "Segment k-means" row: mask-level clustering of the stored features (identity head).
    public var segmentKMeansOnly: Recipe {
        var r = self
        r.name = name + "-segment-kmeans"
        r.stages = [.segmentKMeans]
        return r
    }

    /// Weight of the multi-scale consistency in the demo's "+multi-scale consistency" row (chosen on
    /// the corpus with small objects, Docs/fitting.md).
    public static let demoConsistencyWeight = 1.0

    /// The "+multi-scale consistency" row: PriMaPs-EM with the Two Tricks paper's crop consistency
    /// (needs the store's crop views).
    public var withConsistency: Recipe {
        var r = self
        r.name = name + "-consistency"
        r.primapsEM.consistencyWeight = Recipe.demoConsistencyWeight
        return r
    }

    /// The "MaskContrast-style" row: the contrastive head, then mask-level clustering through it.
    public var maskContrastOnly: Recipe {
        var r = self
        r.name = name + "-maskcontrast"
        r.stages = [.maskContrast, .segmentKMeans]
        return r
    }
}

/// One row of the demo's table.
public struct DemoRow: Sendable {
    public var method: String
    public var accuracy: Double
    public var miou: Double
    /// Mean IoU of the ground-truth segments under 0.5% of the image (`SegmentSizeIoU.smallIoU`).
    public var smallIoU: Double? = nil
}

/// What `unseg demo` did, for printing.
public struct DemoSummary: Sendable {
    public var rows: [DemoRow]
    public var files: [(String, String)]
    public var seconds: Double

    /// The table in the paper's form (Acc / mIoU, %, Hungarian-matched).
    public func table() -> String {
        var s = "method                      Acc     mIoU   small\n"
        s += "--------------------------  ------  ------  ------\n"
        for r in rows {
            s += r.method.padding(toLength: 26, withPad: " ", startingAt: 0) + String(format: "  %6.1f  %6.1f", r.accuracy, r.miou)
                + (r.smallIoU.map { String(format: "  %6.1f", $0) } ?? "       -") + "\n"
        }
        s += "(small: mean IoU of ground-truth segments under 0.5% of the image)\n"
        return s
    }
}

/// The demo's list of the files it wrote.
public enum DemoFiles {
    /// One line per file, "  <what>  <path>\n", descriptions padded to the longest one and never
    /// cut (`padding(toLength:)` would truncate the longer ones).
    public static func table(_ files: [(String, String)]) -> String {
        let width = files.map(\.0.count).max() ?? 0
        return files.map { "  " + $0.0 + String(repeating: " ", count: width - $0.0.count) + "  " + $0.1 + "\n" }.joined()
    }
}

/// `unseg demo` as a library call: the whole pipeline on a synthetic corpus.
///
/// synth train (with two crop views per image) + val -> propose (PriMaPs) -> five fits, each
/// followed by predict val -> evaluate (Hungarian, IoU by object size) -> report: the k-means
/// Baseline (PCA + cosine k-means warm-up), Segment k-means (mask-level clustering of the stored
/// features), MaskContrast-style (contrastive head + mask clustering), PriMaPs-EM on top of the
/// Baseline, and PriMaPs-EM with the multi-scale consistency; then export. Every stage writes its file into
/// `workdir`, so any stage can be rerun alone with the matching subcommand.
public enum DemoJob {
    public struct Options: Sendable {
        public var workdir = "unseg-demo"
        public var trainImages = 300
        public var valImages = 100
        public var seed: UInt64 = 0
        public var threads = Parallel.coreCount
        public var recipe = Recipe.demo
        /// Refinement of the training proposals. The dense CRF (the paper's setting) lets pixels that
        /// fit no mask fall to background, which the M-step ignores; without it, majority votes
        /// relabel small objects inside large masks and EM trades mIoU for accuracy on this corpus.
        public var proposalRefinement: RefinementMethod = .crf
        public init() {}
    }

    /// Mean segment IoU per size bin of +PriMaPs-EM and +multi-scale consistency, bars side by side.
    static func sizeChart(without a: SegmentSizeIoU, with b: SegmentSizeIoU) -> RGBImage {
        var values: [Double] = [], names: [String] = [], colors: [RGB] = []
        for (i, bin) in SegmentSizeIoU.binNames.enumerated() where a.meanIoU[i] != nil && b.meanIoU[i] != nil {
            values += [a.meanIoU[i]!, b.meanIoU[i]!]
            names += ["\(bin) +PriMaPs-EM", "\(bin) +consistency"]
            colors += [RGB(150, 150, 160), RGB(31, 119, 180)]
        }
        return Charts.barChart(values: values, names: names,
                               title: String(format: "IoU by object size (val): small %.1f -> %.1f", a.smallIoU ?? 0, b.smallIoU ?? 0),
                               axisLabel: "mean segment IoU (%)", maxValue: 100, showMean: false, colors: colors)
    }

    public static func run(_ o: Options, log: @escaping (String) -> Void,
                           progress: @escaping (String) -> ProgressSink?) throws -> DemoSummary {
        let start = Date()
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: o.workdir, withIntermediateDirectories: true) } catch {
            throw OutputPathError("--workdir \(o.workdir): cannot create the folder (\(AtomicDirectory.reason(error))); choose a writable path")
        }
        func path(_ name: String) -> String { o.workdir + "/" + name }
        var files: [(String, String)] = []
        var recipe = o.recipe
        recipe.seed = o.seed

        // 1. Synthetic corpus: same seed, two splits (shared classes, different images).
        for (name, n, split) in [("train.h5", o.trainImages, "train"), ("val.h5", o.valImages, "val")] {
            let config = SyntheticConfig(imageCount: n, imageSize: 320, patchSize: 8, channels: 384,
                                         classes: recipe.classes, seed: o.seed, split: split)
            // The training images' crop views serve the consistency row only (/features is the same without them).
            try Synthesize.writeStore(config: config, path: path(name), crops: split == "train" ? CropViews(count: 2) : nil,
                                      threads: o.threads, progress: progress("synth \(split)"))
            files.append((split + " store", path(name)))
            log("synth: \(n) \(split) images -> \(path(name))")
        }

        // 2. Proposals of the training images (PriMaPs, refined to image resolution), with overlays to look at.
        let props = path("train-proposals.h5")
        var popt = ProposeOptions()
        popt.primaps.threshold = Float(recipe.primapsThreshold)
        popt.refine = o.proposalRefinement
        popt.threads = o.threads
        let ps = try ProposeJob.run(storePath: path("train.h5"), outputPath: props, options: popt, progress: progress("propose"))
        let trainStore = try FeatureStore(path: path("train.h5"))
        let overlays = try ProposalOverlays.write(store: trainStore, proposals: ProposalsFile(path: props, store: trainStore),
                                                  to: path("proposal-overlays"), count: 8)
        files += [("train proposals", props), ("proposal overlays (PNG)", path("proposal-overlays"))]
        log(String(format: "propose: %.1f masks per image, %.0f images/s -> %@ (%d overlays)", ps.meanMasks, ps.imagesPerSecond, props, overlays.count))

        // The mask stages' masks: PriMaPs at their own threshold (masks.primaps_threshold, finer than
        // EM's; chosen on the held-out mosaic corpus, Docs/maskcontrast.md), feature resolution.
        var maskProps = props
        if abs(recipe.masks.primapsThreshold - recipe.primapsThreshold) > 1e-9 {
            maskProps = path("train-masks.h5")
            var mopt = ProposeOptions()
            mopt.primaps.threshold = Float(recipe.masks.primapsThreshold)
            mopt.threads = o.threads
            let ms = try ProposeJob.run(storePath: path("train.h5"), outputPath: maskProps, options: mopt, progress: progress("propose masks"))
            files.append(("mask-stage proposals", maskProps))
            log(String(format: "propose (mask stages, threshold %.2f): %.1f masks per image -> %@", recipe.masks.primapsThreshold, ms.meanMasks, maskProps))
        }

        // 3. Baseline (cosine k-means), Segment k-means, MaskContrast-style, and PriMaPs-EM on top of
        // the Baseline, each: fit -> predict val -> evaluate.
        var rows: [DemoRow] = []
        var sizes: [String: SegmentSizeIoU] = [:]
        for (label, r, tag) in [("Baseline (k-means)", recipe.baseline, "baseline"), ("Segment k-means", recipe.segmentKMeansOnly, "segment-kmeans"),
                                ("MaskContrast-style", recipe.maskContrastOnly, "maskcontrast"), ("+PriMaPs-EM", recipe, "primaps-em"),
                                ("+multi-scale consistency", recipe.withConsistency, "consistency")] {
            let ckpt = path("\(tag).h5")
            if fm.fileExists(atPath: ckpt) { try fm.removeItem(atPath: ckpt) }
            let masksOnly = r.stages.allSatisfy(\.isMaskStage)
            var fo = FitOptions(recipe: r, storePath: path("train.h5"), proposalsPath: masksOnly ? maskProps : props, checkpointPath: ckpt)
            fo.threads = o.threads
            // EM starts from the Baseline's prototypes: the same as fitting warm-up + EM in one run
            // (bit-identical, tested), without redoing PCA and the warm-up.
            if tag == "primaps-em" || tag == "consistency" { fo.initFromPath = path("baseline.h5") }
            fo.progress = progress("fit \(tag)")
            let fit = try FitJob.run(fo)
            log(String(format: "fit %@: %d steps in %.1f s -> %@", tag, fit.stepsRun, fit.seconds, ckpt))
            let preds = path("\(tag)-val-predictions.h5")
            var po = PredictOptions(checkpointPath: ckpt, storePath: path("val.h5"), outPath: preds)
            po.threads = o.threads
            po.progress = progress("predict \(tag)")
            _ = try PredictJob.run(po)
            let rep = try EvaluateJob.run(storePath: path("val.h5"), predictionsPath: preds, bySize: true, threads: o.threads)
            let reportDir = path("\(tag)-report")
            try EvaluationReportWriter.write(rep, to: reportDir)
            let json = path("\(tag)-metrics.json")
            try rep.jsonData().write(to: URL(fileURLWithPath: json), options: .atomic)
            rows.append(DemoRow(method: label, accuracy: rep.result.accuracy, miou: rep.result.miou, smallIoU: rep.bySize?.smallIoU))
            sizes[tag] = rep.bySize
            files += [("\(label) checkpoint", ckpt), ("\(label) val predictions", preds), ("\(label) report", reportDir + "/report.md")]
            log(String(format: "evaluate %@: Acc %.1f, mIoU %.1f -> %@", tag, rep.result.accuracy, rep.result.miou, reportDir))
            if tag == "primaps-em" {
                // 5. Export pseudo-labels of the val split, cluster ids mapped to classes by the evaluation's matching.
                var eo = ExportOptions(predictionsPath: preds, storePath: path("val.h5"), outDir: path("export"), matchingFrom: json)
                eo.threads = o.threads
                eo.progress = progress("export")
                let ex = try ExportJob.run(eo)
                files.append(("pseudo-labels (PNG) + manifest", ex.manifestPath))
                log("export: \(ex.labelFiles.count) label PNGs, \(ex.sampleFiles.count) side-by-side samples -> \(ex.outDir)")
            }
        }
        if let a = sizes["primaps-em"], let b = sizes["consistency"] {
            let chart = path("iou-by-size.png")
            try PNG.write(DemoJob.sizeChart(without: a, with: b), to: chart)
            files.append(("IoU by object size, with and without the consistency (PNG)", chart))
        }
        return DemoSummary(rows: rows, files: files, seconds: Date().timeIntervalSince(start))
    }
}
