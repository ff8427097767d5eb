import ArgumentParser
import Foundation
import UnsegLinAlg
import UnsegPipeline
import UnsegProposals
import UnsegStore

extension Unseg {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the whole pipeline on a built-in synthetic corpus and print the methods' Acc / mIoU side by side.",
            discussion: """
            Generates train (with two zoomed-in crop views per image) and val stores, fits the k-means Baseline, \
            Segment k-means, the MaskContrast-style head, PriMaPs-EM, and PriMaPs-EM with the Two Tricks paper's \
            multi-scale consistency on train, predicts and evaluates val (Hungarian matching; "small" is the mean IoU \
            of ground-truth segments under 0.5% of the image), writes reports with pictures and exports \
            pseudo-labels. All files go to --workdir; each stage can be rerun alone with its subcommand.
            """)

        @Option(help: "Working directory for the stores and outputs.")
        var workdir: String = "unseg-demo"
        @Option(help: "classes (the default: the five methods on street scenes) or saliency (the Fiedler foreground with and without the guided filter, and CorLoc, on object-centric scenes).")
        var task: DemoTask = .classes
        @Option(help: "Training images.")
        var trainImages: Int = 300
        @Option(help: "Validation images.")
        var valImages: Int = 100
        @Option(help: "Random seed (corpus and fitting).")
        var seed: UInt64 = 0
        @Option(help: "A recipe to use instead of the built-in demo recipe (Recipes/demo.yaml).")
        var recipe: String?
        @Option(help: "Refinement of the training proposals: crf (the paper's, default), guided or none.")
        var refine: RefinementMethod = .crf
        @OptionGroup var parallel: ThreadsOption

        func validate() throws {
            guard trainImages >= 16 else { throw ValidationError("--train-images must be >= 16, got \(trainImages)") }
            guard valImages >= 1 else { throw ValidationError("--val-images must be >= 1, got \(valImages)") }
        }

        func run() throws {
            try reportingErrors {
                if task == .saliency {
                    let s = try SaliencyDemo.run(workdir: workdir, images: valImages, seed: seed,
                                                 threads: parallel.threads, log: { say($0) })
                    say("")
                    say("Object-centric synthetic scenes, saliency at threshold 0.5 (Acc / IoU, %) and max F-beta (beta^2 = 0.3):")
                    say(s.table())
                    sayFiles(s.files, seconds: s.seconds)
                    return
                }
                var o = DemoJob.Options()
                o.workdir = workdir
                o.trainImages = trainImages
                o.valImages = valImages
                o.seed = seed
                o.threads = parallel.threads
                o.proposalRefinement = refine
                if let r = recipe { o.recipe = try Recipe.load(path: r) }
                let summary = try DemoJob.run(o, log: { say($0) }, progress: { TerminalProgress(label: $0) })
                say("")
                say("Synthetic corpus, \(valImages) val images, Hungarian-matched (Acc / mIoU, %):")
                say(summary.table())
                sayFiles(summary.files, seconds: summary.seconds)
            }
        }
    }
}

/// The demo's file list and time.
private func sayFiles(_ files: [(String, String)], seconds: Double) {
    say("files:")
    var t = DemoFiles.table(files)
    if t.hasSuffix("\n") { t.removeLast() }
    if !t.isEmpty { say(t) }
    say(String(format: "done in %.0f s", seconds))
}

/// What `unseg demo` shows.
enum DemoTask: String, CaseIterable, ExpressibleByArgument {
    case classes, saliency
}
