import ArgumentParser
import UnsegClustering
import UnsegEvaluation
import UnsegLinAlg
import UnsegPipeline
import UnsegProposals

/// `--threads`, shared by every command that works over images.
struct ThreadsOption: ParsableArguments {
    @Option(help: "Threads (default: all cores); results do not depend on it.")
    var threads: Int = Parallel.coreCount

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be >= 1, got \(threads)") }
    }
}

// Enum options parse from their raw values; a bad value is a usage error (exit 64) that lists the
// allowed ones, and `--help` shows them.
extension ProposalMethod: ExpressibleByArgument {}
extension RefinementMethod: ExpressibleByArgument {}
extension MatchingMode: ExpressibleByArgument {}
extension PrototypeCopy: ExpressibleByArgument {}
extension PredictRefinement: ExpressibleByArgument {}
extension TestTimeAugmentation: ExpressibleByArgument {}
