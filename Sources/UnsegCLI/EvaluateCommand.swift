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

            --predictions takes unseg's own files or any tool's maps:
            - a file of `unseg predict` (--task classes) or `unseg propose --method fiedler` (saliency, corloc), \
            checked against the store it was made from;
            - a folder of PNGs, one per image (subfolders allowed, hidden files skipped), or an `unseg export` folder. \
            Label maps are 8- or 16-bit grey (the value is the id) or palette PNGs (the index is the id), 255 = no \
            prediction; ids must be below --clusters (default: the protocol's class count). Soft maps for saliency and \
            CorLoc are grey, 0-255 or 0/1 (a map holding only 0 and 1 is a mask). A file matches an image when its \
            name without .png is the image's /names entry, with or without an extension (.jpg) and a suffix such as \
            _leftImg8bit, _pred or _mask (--suffix adds one); a missing, extra or doubled name is an error;
            - an HDF5 file another tool wrote, with --dataset NAME: [N, H, W] in the store's image order, integer ids \
            (uint8, uint16, int64, ...) or for soft maps uint8 0-255 / 0/1 or float in [0, 1].
            Foreign maps must have the store's label size unless --resize nearest (label maps) or bilinear (soft maps) \
            is given. They carry no provenance: counts and sizes are checked instead, and the JSON and report say so.
            """)

        @Option(help: "Feature store with /labels (the ground truth).")
        var store: String
        @Option(help: "What to score: a file of `unseg predict` (/predictions) or, for --task saliency or corloc, of `unseg propose --method fiedler` (/foreground); a folder of PNGs, one per image; or an HDF5 file with --dataset.")
        var predictions: String
        @Option(help: "classes (Hungarian-matched mIoU / Acc), saliency (Acc, IoU, max F-beta against binary labels) or corloc (against the store's /boxes).")
        var task: EvaluationTask = .classes
        @Option(help: "hungarian (maximise matched pixels, the field's default), hungarian-iou (maximise summed IoU), or majority (many-to-one).")
        var matching: MatchingMode = .hungarian
        @Option(help: "Read this [N, H, W] dataset of an HDF5 file that another tool wrote (no unseg attributes needed).")
        var dataset: String?
        @Option(help: "Ids in foreign label maps (PNG folder, --dataset): 0..<N, 255 = none. Default: the protocol's class count (an export's manifest count).")
        var clusters: Int?
        @Option(help: "Resize foreign maps of another size to the store's labels: nearest (label maps) or bilinear (soft maps). Default: sizes must match.")
        var resize: MapResize = .none
        @Option(help: "A file-name suffix to drop when matching PNGs to /names (repeatable; _leftImg8bit, _pred, _mask, ... are built in).")
        var suffix: [String] = []
        @Flag(help: "Also report IoU by object size: each ground-truth segment (a connected region of one class) binned by its share of the image, its IoU counted within its bounding box (always on with --report; --task classes).")
        var bySize = false
        @OptionGroup var outputs: EvaluationOutputOptions
        @OptionGroup var parallel: ThreadsOption

        func validate() throws {
            if bySize && task != .classes { throw ValidationError("--by-size scores class segments; it applies to --task classes") }
            if let k = clusters, !(1...254).contains(k) { throw ValidationError("--clusters must be in 1...254 (255 means no prediction), got \(k)") }
            if resize == .bilinear && task == .classes {
                throw ValidationError("--resize bilinear would mix the ids of neighbouring pixels; resize label maps with --resize nearest (bilinear is for --task saliency / corloc)")
            }
            if clusters != nil && task != .classes {
                throw ValidationError("--clusters counts the ids of label maps; --task \(task.rawValue) scores soft foreground maps")
            }
            if let s = suffix.first(where: { $0.isEmpty || $0.contains("/") }) {
                throw ValidationError("--suffix '\(s)' must be a non-empty file-name part without '/'")
            }
            if let d = dataset, d.isEmpty || d == "/" { throw ValidationError("--dataset must name a dataset, e.g. --dataset predictions") }
        }

        func run() throws {
            try reportingErrors(acrossProcesses: true) {
                // Output paths first (every rank alike): a bad --json / --report costs no evaluation.
                try OutputGuard.check(outputs: outputs.json.map { [("--json", $0)] } ?? [], inputs: [("--store", store), ("--predictions", predictions)],
                                      folders: outputs.report.map { [("--report", $0)] } ?? [])
                let foreign = ForeignMapsOptions(dataset: dataset, resize: resize, clusters: clusters, suffixes: suffix)
                if task != .classes {
                    let r = try ForegroundEvaluation.run(task: task, storePath: store, proposalsPath: predictions, foreign: foreign,
                                                         threads: parallel.threads)
                    if r.source.isForeign { say("predictions: " + r.source.detail) }
                    say(r.table())
                    let files = try ForegroundEvaluation.write(r, storePath: store, proposalsPath: predictions,
                                                               json: outputs.json, report: outputs.report)
                    if !files.isEmpty { say("wrote " + files.joined(separator: ", ")) }
                    return
                }
                let rep = try EvaluateJob.run(storePath: store, predictionsPath: predictions, matching: matching,
                                              classCount: outputs.classes, foreign: foreign, bySize: bySize || outputs.report != nil,
                                              threads: parallel.threads, progress: TerminalProgress(label: "evaluate"))
                if rep.source.isForeign { say("predictions: " + rep.source.detail) }
                say(rep.result.table())
                if let b = rep.bySize { say("IoU by object size (ground-truth segments, mean IoU %):\n" + b.table()) }
                let files = try rep.write(json: outputs.json, report: outputs.report)
                if !files.isEmpty { say("wrote " + files.joined(separator: ", ")) }
            }
        }
    }
}
