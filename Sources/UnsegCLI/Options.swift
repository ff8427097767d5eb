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

/// `--classes`, `--json`, `--report`: the outputs and the class count of an evaluation
/// (`unseg evaluate`, `unseg test`).
struct EvaluationOutputOptions: ParsableArguments {
    @Option(help: "Class count, for a store whose labels follow no protocol unseg knows (e.g. 21 for the VOC fixture).")
    var classes: Int?
    @Option(help: "Also write the results as JSON here.")
    var json: String?
    @Option(help: "Also write report.md and its pictures (confusion, per-class IoU) into this folder.")
    var report: String?

    func validate() throws {
        if let c = classes, !(1...255).contains(c) { throw ValidationError("--classes must be in 1...255, got \(c)") }
    }
}

// Enum options parse from their raw values; a bad value is a usage error (exit 64) that lists the
// allowed ones, and `--help` shows them.
extension ProposalMethod: ExpressibleByArgument {}
extension RefinementMethod: ExpressibleByArgument {}
extension MatchingMode: ExpressibleByArgument {}
extension MapResize: ExpressibleByArgument {}
extension PrototypeCopy: ExpressibleByArgument {}
extension PredictRefinement: ExpressibleByArgument {}
extension TestTimeAugmentation: ExpressibleByArgument {}
extension EvaluationTask: ExpressibleByArgument {}
extension FiedlerForeground: ExpressibleByArgument {}
