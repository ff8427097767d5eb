import ArgumentParser
import Foundation
import UnsegLinAlg
import UnsegPipeline

extension Unseg {
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export predictions as PNGs: plain 8-bit ids for training code, palette PNGs, side-by-side samples, manifest.json.",
            discussion: """
            DIR/labels/<name>.png hold the ids (255 = ignore), DIR/color/<name>.png the same ids with a palette, \
            DIR/samples/<name>.png image | prediction | ground truth. Names come from the store's /names. \
            With --matching-from (JSON of `unseg evaluate --json`) cluster ids become class ids (unmatched -> 255).
            """)

        @Option(help: "Predictions file written by `unseg predict`.")
        var predictions: String
        @Option(help: "The feature store the predictions were made from (names, images, labels).")
        var store: String
        @Option(help: "Output directory.")
        var out: String
        @Option(help: "JSON from `unseg evaluate --json`: map clusters to classes with its \"matching\".")
        var matchingFrom: String?
        @Option(help: "Side-by-side pictures for this many images.")
        var sample: Int = 16
        @OptionGroup var parallel: ThreadsOption

        func validate() throws {
            guard sample >= 0 else { throw ValidationError("--sample must be >= 0, got \(sample)") }
        }

        func run() throws {
            try reportingErrors {
                let s = try ExportJob.run(ExportOptions(predictionsPath: predictions, storePath: store, outDir: out,
                                                        matchingFrom: matchingFrom, sample: sample, threads: parallel.threads,
                                                        progress: TerminalProgress(label: "export")))
                say("wrote \(s.labelFiles.count) label PNGs (\(s.ids)), \(s.colorFiles.count) palette PNGs, \(s.sampleFiles.count) samples and \(s.manifestPath)")
            }
        }
    }
}
