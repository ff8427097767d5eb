import ArgumentParser
import Foundation
import UnsegLinAlg
import UnsegPipeline
import UnsegCore

extension Unseg {
    struct Fit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fit class prototypes: PCA init, cosine k-means warm-up, PriMaPs-EM; checkpoints as it goes.",
            discussion: """
            The recipe (Recipes/*.yaml) holds every hyperparameter. The checkpoint is rewritten atomically every \
            checkpoint_every steps, at every epoch end and at the end; --resume continues a run from it and ends \
            with exactly the prototypes an uninterrupted run would have. Stores hold features only, so the M-step \
            uses the clean features (no photometric augmentation) with random horizontal flips.
            """)

        @Option(help: "Recipe YAML (see Recipes/).")
        var recipe: String
        @Option(help: "Training feature store.")
        var store: String
        @Option(help: "Proposals file written by `unseg propose` for this store (default: PriMaPs on the fly).")
        var proposals: String?
        @Option(help: "Labelled validation store: mIoU after every epoch (reported; selects only with selection: best-val).")
        var val: String?
        @Option(help: "Class count of the validation labels when the store names no protocol (default: the recipe's classes).")
        var valClasses: Int?
        @Option(help: "Checkpoint file (HDF5) written during the run.")
        var checkpoint: String
        @Flag(help: "Continue from --checkpoint if it exists.")
        var resume = false
        @Option(help: "Start PriMaPs-EM from the prototypes of this finished checkpoint (e.g. a Baseline fit): no PCA, no warm-up.")
        var initFrom: String?
        @Option(help: ArgumentHelp("Start PriMaPs-EM from a peer's cluster probe with gains 1 (STEGO / HP, the reference's +SotA+PriMaPs-EM): /peer_clusters of a store written by `unseg-extract --head`, normally --store itself. No PCA, no warm-up.", valueName: "store"))
        var initFromPeer: String?
        @Flag(help: "With --init-from: keep the source prototypes' gains g (default: reset them to 1, as the reference).")
        var keepGains = false
        @Option(help: "Override the recipe's seed.")
        var seed: UInt64?
        @Option(help: ArgumentHelp("Override the recipe's stages, comma-separated: e.g. maskcontrast,segment-kmeans for the MaskContrast-style method, segment-kmeans alone for segment k-means without training.", valueName: "list"))
        var stages: String?
        @OptionGroup var parallel: ThreadsOption
        @Option(help: .hidden)
        var debugStepDelayMs: Int = 0

        func validate() throws {
            if let c = valClasses, !(1...255).contains(c) { throw ValidationError("--val-classes must be in 1...255, got \(c)") }
            guard debugStepDelayMs >= 0 else { throw ValidationError("--debug-step-delay-ms must be >= 0") }
        }

        func run() throws {
            try reportingErrors(acrossProcesses: true) {
                var r = try Recipe.load(path: recipe)
                if let s = seed { r.seed = s }
                if let list = stages {
                    let names = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                    r.stages = try names.map { n in
                        guard let k = FitStageKind(rawValue: n) else {
                            throw RecipeError("--stages: '\(n)' is not a stage; stages are \(FitStageKind.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        return k
                    }
                    try r.validate()
                }
                let clear = isatty(STDERR_FILENO) != 0 ? "\r\u{1B}[K" : ""
                let lead = Distributed.isLead
                let log: @Sendable (String) -> Void = { line in if lead { FileHandle.standardError.write((clear + line + "\n").data(using: .utf8)!) } }
                var opts = FitOptions(recipe: r, storePath: store, proposalsPath: proposals, valPath: val, valClassCount: valClasses,
                                      checkpointPath: checkpoint, resume: resume, threads: parallel.threads,
                                      progress: TerminalProgress(label: "fit", unit: "step"), log: log,
                                      stepDelay: Double(debugStepDelayMs) / 1000)
                opts.initFromPath = initFrom
                opts.keepGains = keepGains
                opts.initFromPeerPath = initFromPeer
                let res = try FitJob.run(opts)
                let ck = res.checkpoint
                let steps = r.stages.map { k in "\(ck.loss(k).count) \(k.rawValue)" }.joined(separator: " + ")
                say("fit \(r.name): \(steps) steps" +
                    (res.resumedFrom.map { " (resumed at step \($0), ran \(res.stepsRun))" } ?? "") +
                    String(format: " in %.1f s", res.seconds))
                if let last = r.stages.reversed().lazy.compactMap({ ck.loss($0).last }).first { say(String(format: "final loss %.4f", last)) }
                if let v = ck.valHistory.last {
                    say(String(format: "val after %@ epoch %d: mIoU %.2f, Acc %.2f", v.stage.rawValue, v.epoch, v.miou, v.accuracy))
                }
                say("prototypes: \(res.selection)")
                say("checkpoint: \(checkpoint)")
            }
        }
    }
}
