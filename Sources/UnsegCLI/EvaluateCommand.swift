import ArgumentParser
import Foundation
import UnsegEvaluation
import UnsegLinAlg
import UnsegPipeline
import UnsegStore

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
        @Option(help: "Predictions file written by `unseg predict` (/predictions [N, H, W] uint8); for --task saliency or corloc, a proposals file with /foreground (`unseg propose --method fiedler`).")
        var predictions: String
        @Option(help: "classes (Hungarian-matched mIoU / Acc), saliency (Acc, IoU, max F-beta against binary labels) or corloc (against the store's /boxes).")
        var task: EvaluationTask = .classes
        @Option(help: "hungarian (maximise matched pixels, the field's default), hungarian-iou (maximise summed IoU), or majority (many-to-one).")
        var matching: MatchingMode = .hungarian
        @OptionGroup var outputs: EvaluationOutputOptions
        @OptionGroup var parallel: ThreadsOption

        func run() throws {
            try reportingErrors(acrossProcesses: true) {
                // Output paths first (every rank alike): a bad --json / --report costs no evaluation.
                try OutputGuard.check(outputs: outputs.json.map { [("--json", $0)] } ?? [], inputs: [("--store", store), ("--predictions", predictions)],
                                      folders: outputs.report.map { [("--report", $0)] } ?? [])
                if task != .classes {
                    let r = try ForegroundEvaluation.run(task: task, storePath: store, proposalsPath: predictions, threads: parallel.threads)
                    say(r.table())
                    let files = try ForegroundEvaluation.write(r, storePath: store, proposalsPath: predictions,
                                                               json: outputs.json, report: outputs.report)
                    if !files.isEmpty { say("wrote " + files.joined(separator: ", ")) }
                    return
                }
                let rep = try EvaluateJob.run(storePath: store, predictionsPath: predictions, matching: matching,
                                              classCount: outputs.classes, threads: parallel.threads, progress: TerminalProgress(label: "evaluate"))
                say(rep.result.table())
                let files = try rep.write(json: outputs.json, report: outputs.report)
                if !files.isEmpty { say("wrote " + files.joined(separator: ", ")) }
            }
        }
    }
}
