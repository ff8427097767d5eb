import ArgumentParser
import Foundation
import UnsegPipeline

extension Unseg {
    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The reference test script's table: momentum / running prototypes, with and without the CRF (and flip averaging).",
            discussion: """
            For a checkpoint and a labelled store, one prediction pass per row: the momentum (theta_m) and running \
            (theta_r) prototypes, each without and with the dense CRF (when the store has /images), each without and \
            with flip averaging (when the store has /features_flipped). Hungarian-matched Acc / mIoU, as the paper reports.
            """)

        @Option(help: "Checkpoint written by `unseg fit`.")
        var checkpoint: String
        @Option(help: "Labelled feature store (/labels; /images for the CRF rows).")
        var store: String
        @OptionGroup var outputs: EvaluationOutputOptions
        @OptionGroup var parallel: ThreadsOption

        func run() throws {
            try reportingErrors {
                var o = TestJob.Options(checkpointPath: checkpoint, storePath: store, classCount: outputs.classes, threads: parallel.threads)
                o.progress = { TerminalProgress(label: $0) }
                let rows = try TestJob.run(o)
                say(TestJob.table(rows))
                let files = try TestJob.write(rows, checkpoint: checkpoint, store: store, json: outputs.json, report: outputs.report)
                if !files.isEmpty { say("wrote " + files.joined(separator: ", ")) }
            }
        }
    }
}
