import ArgumentParser
import UnsegPipeline
import UnsegStore

extension Unseg {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a store's attributes, datasets, shapes, dtypes, chunking, compression and feature norms.")

        @Argument(help: "An HDF5 file: a feature store or an unseg output.")
        var file: String

        @Option(help: "How many images to summarise (feature norms, labels).")
        var images: Int = 4

        func validate() throws {
            guard images >= 0 else { throw ValidationError("--images must be >= 0, got \(images)") }
        }

        func run() throws {
            try reportingErrors {
                say(try UnsegStore.Inspect.report(path: file, sampleImages: images))
            }
        }
    }
}
