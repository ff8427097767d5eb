import ArgumentParser
import Foundation
import UnsegClustering
import UnsegLinAlg
import UnsegPipeline

extension Unseg {
    struct Predict: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per-pixel cluster ids from fitted prototypes: a predictions file that `unseg evaluate` reads.",
            discussion: """
            Logits are computed at feature resolution and upsampled bilinearly to the label resolution (exact by \
            linearity); the id is their argmax. --refine crf runs a dense CRF on their softmax with the store's images. \
            A mask-clustering checkpoint (stages ending in segment-kmeans) scores each cell's embedding against its \
            centroids (cosine); with --proposals, every mask of the predicted store takes the cluster of its mean embedding.
            """)

        @Option(help: "Checkpoint written by `unseg fit`.")
        var checkpoint: String
        @Option(help: "Feature store to predict.")
        var store: String
        @Option(help: "Output predictions file (HDF5).")
        var out: String
        @Option(help: "Prototype copy: momentum or running (default: the recipe's predict_copy; best-val selection when the recipe says so).")
        var copy: PrototypeCopy?
        @Option(help: "Refinement: none or crf (default: the recipe's predict_refine). crf needs /images in the store.")
        var refine: PredictRefinement?
        @Option(help: "Test-time augmentation: none, or flip (average with the store's /features_flipped, as the reference test script).")
        var tta: TestTimeAugmentation = .none
        @Option(help: "Proposals of the predicted store (`unseg propose`): mask voting for a mask-clustering checkpoint.")
        var proposals: String?
        @OptionGroup var parallel: ThreadsOption

        func validate() throws {
        }

        func run() throws {
            try reportingErrors(acrossProcesses: true) {
                let s = try PredictJob.run(PredictOptions(checkpointPath: checkpoint, storePath: store, outPath: out,
                                                          copy: copy, refine: refine, tta: tta,
                                                          threads: parallel.threads, progress: TerminalProgress(label: "predict"),
                                                          proposalsPath: proposals))
                say(String(format: "wrote %@: %d images, %d clusters, prototypes %@, refine %@, %.1f s",
                           s.outPath, s.imageCount, s.classCount, s.prototypes, s.refine.rawValue, s.seconds))
            }
        }
    }
}
