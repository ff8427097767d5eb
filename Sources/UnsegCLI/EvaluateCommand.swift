import ArgumentParser
import Foundation
import UnsegEvaluation
import UnsegLinAlg
import UnsegPipeline

extension Unseg {
    struct Evaluate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hungarian-match predicted clusters to classes and report mIoU, pixel accuracy and per-class IoU.",
            discussion: """
            One confusion matrix is accumulated over the whole split (labels 255 and >= the class count are left out; \
            pixels with no prediction count as errors). Clusters left unmatched when there are more clusters than \
            classes count as errors for every pixel they cover. Percentages as in papers.
            """)

        @Option(help: "Feature store with /labels (the ground truth).")
        var store: String
        @Option(help: "Predictions file written by `unseg predict` (/predictions [N, H, W] uint8).")
        var predictions: String
        @Option(help: "hungarian (maximise matched pixels, the field's default), hungarian-iou (maximise summed IoU), or majority (many-to-one).")
        var matching: MatchingMode = .hungarian
        @OptionGroup var outputs: EvaluationOutputOptions
        @OptionGroup var parallel: ThreadsOption

        func run() throws {
            try reportingErrors {
                let rep = try EvaluateJob.run(storePath: store, predictionsPath: predictions, matching: matching,
                                              classCount: outputs.classes, threads: parallel.threads, progress: TerminalProgress(label: "evaluate"))
                say(rep.result.table())
                let files = try rep.write(json: outputs.json, report: outputs.report)
                if !files.isEmpty { say("wrote " + files.joined(separator: ", ")) }
            }
        }
    }
}
