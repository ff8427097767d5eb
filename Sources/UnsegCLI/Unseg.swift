import ArgumentParser
import Foundation
import UnsegPipeline
import UnsegStore
import UnsegCore
import UnsegLinAlg

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

    /// OpenBLAS kernels this CPU can run first (a restart when the linked OpenBLAS does not know
    /// the CPU; see `BLAS.restartWithBetterKernelsIfNeeded`), then the command.
    static func main() {
        BLAS.restartWithBetterKernelsIfNeeded()
        main(nil)
    }
}

/// Runs a command body; any error (file, data, an output path that clashes with an input or
/// cannot be written) becomes one paragraph on stderr and exit code 1. Unfinished outputs are
/// removed when the process is interrupted (SIGINT 130, SIGTERM 143).
///
/// Under mpirun (Open MPI): MPI starts here and ends here. An error every rank agreed on (a
/// `DistributedError`, naming the failing rank), or one every rank hit (they all reach the error
/// path within 10 s), is printed once by rank 0 and every rank exits 1. An error of one rank while
/// the others wait elsewhere is printed by that rank and aborts the job (mpirun exits 1).
///
/// `acrossProcesses`: the command shares its work between mpirun's processes (propose, predict,
/// evaluate, fit); the others refuse to run under mpirun with more than one process (they would
/// all write the same files).
func reportingErrors(acrossProcesses: Bool = false, _ body: () throws -> Void) throws {
    MemoryTuning.keepLargeBuffersInHeap()
    do {
        try Distributed.start()
    } catch {
        FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
        throw ExitCode.failure
    }
    // After MPI_Init, which installs signal handlers of its own: SIGINT / SIGTERM (mpirun forwards
    // them) must still remove this process's unfinished outputs and stop it.
    Temporaries.removeOnInterrupt()
    if Distributed.isActive && !acrossProcesses {
        if Distributed.isLead {
            FileHandle.standardError.write("error: this command runs on one process; under mpirun only propose, predict, evaluate and fit share their work (run it without mpirun, or with -np 1)\n".data(using: .utf8)!)
        }
        Distributed.finish()
        throw ExitCode.failure
    }
    do {
        try body()
        Distributed.finish()
    } catch let e as ExitCode {
        Distributed.finish()
        throw e
    } catch let e as CleanExit {
        Distributed.finish()
        throw e
    } catch {
        if !Distributed.isActive {
            FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
            throw ExitCode.failure
        }
        if error is DistributedError || Distributed.allFailedWithin(seconds: 10) {
            if Distributed.isLead {
                let text = error is DistributedError ? "\(error)" : "\(error) (every one of the \(Distributed.size) ranks stopped with this error)"
                FileHandle.standardError.write("error: \(text)\n".data(using: .utf8)!)
            }
            Distributed.finish()
            throw ExitCode.failure
        }
        Temporaries.removeAll()
        FileHandle.standardError.write("error: rank \(Distributed.rank) of \(Distributed.size) (\(Distributed.host)): \(error); stopping every rank\n".data(using: .utf8)!)
        Distributed.abort(1)
    }
}

/// Prints to stdout and flushes (so output interleaves correctly with stderr progress); under
/// mpirun only rank 0 prints.
func say(_ s: String) {
    guard Distributed.isLead else { return }
    print(s)
    fflush(nil)   // flushes every output stream (stdout among them)
}
