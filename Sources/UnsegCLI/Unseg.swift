import ArgumentParser
import Foundation
import UnsegPipeline
import UnsegStore

@main
struct Unseg: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unseg",
        abstract: "Unsupervised semantic segmentation on frozen self-supervised features (DINO / DINOv2) stored in HDF5.",
        discussion: """
        A run goes: synth (or your own feature store) -> propose -> fit -> predict -> evaluate -> export.
        Every stage reads the files the previous one wrote, so any stage can be rerun alone.
        `unseg demo` runs the whole pipeline on a synthetic corpus.
        """,
        version: "0.1.0",
        subcommands: [Demo.self, Synth.self, Inspect.self, Propose.self, Fit.self, Predict.self, Evaluate.self, Test.self, Export.self])
}

/// Runs a command body; any error (file, data, an output path that clashes with an input or
/// cannot be written) becomes one paragraph on stderr and exit code 1. Unfinished outputs are
/// removed when the process is interrupted (SIGINT 130, SIGTERM 143).
func reportingErrors(_ body: () throws -> Void) throws {
    Temporaries.removeOnInterrupt()
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch {
        FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
        throw ExitCode.failure
    }
}

/// Prints to stdout and flushes (so output interleaves correctly with stderr progress).
func say(_ s: String) {
    print(s)
    fflush(nil)   // flushes every output stream (stdout among them)
}
