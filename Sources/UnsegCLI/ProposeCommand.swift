import ArgumentParser
import Foundation
import UnsegLinAlg
import UnsegPipeline
import UnsegProposals
import UnsegStore

extension Unseg {
    struct Propose: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compute mask proposals (PriMaPs or spectral) for every image of a store, optionally refined to image resolution.",
            discussion: """
            Writes /masks uint8 [N, h, w] (0 = background, 1..K) on the feature grid and, with --refine guided|crf, \
            /refined uint8 [N, H, W] at image resolution (needs /images in the store). The method and all its \
            parameters are stored as root attributes. Images are processed several at once, one per thread.
            """)

        @Option(help: "Feature store (/features; /images needed for --refine and --overlays).")
        var store: String
        @Option(help: "Output proposals file (written atomically).")
        var out: String
        @Option(help: "primaps (principal mask proposals) or spectral (eigen-segments).")
        var method: ProposalMethod = .primaps
        @Option(help: "none, guided (guided filter, radius 9, eps 1e-3) or crf (dense CRF, 10 mean-field iterations).")
        var refine: RefinementMethod = .none
        @Option(help: "--method fiedler: /foreground from the hard mask (mask, the Two Tricks setting) or the soft eigenvector map (eigenvector).")
        var foreground: FiedlerForeground = .mask
        @Option(help: "PriMaPs relative similarity threshold psi in [0, 1].")
        var threshold: Float = 0.4
        @Option(help: "PriMaPs: stop once this fraction of cells is covered, in (0, 1].")
        var coverage: Float = 0.95
        @Option(help: "Spectral: number of k-means segments on the eigenvectors (one becomes background).")
        var segments: Int = 15
        @Flag(help: "Spectral: choose the number of segments per image by the largest eigengap (Deep Spectral Methods' adaptive count) instead of --segments.")
        var eigengap = false
        @OptionGroup var parallel: ThreadsOption
        @Option(help: "Also write PNGs of image | masks | refined masks into this directory.")
        var overlays: String?
        @Option(help: "How many images get an overlay PNG.")
        var overlayCount: Int = 16

        func validate() throws {
            if eigengap && method != .spectral { throw ValidationError("--eigengap is an option of --method spectral") }
            if foreground != .mask && method != .fiedler { throw ValidationError("--foreground is an option of --method fiedler") }
            guard threshold >= 0 && threshold <= 1 else { throw ValidationError("--threshold must be in [0, 1], got \(threshold)") }
            guard coverage > 0 && coverage <= 1 else { throw ValidationError("--coverage must be in (0, 1], got \(coverage)") }
            guard (1...255).contains(segments) else { throw ValidationError("--segments must be in 1...255, got \(segments)") }
            guard overlayCount >= 0 else { throw ValidationError("--overlay-count must be >= 0, got \(overlayCount)") }
        }

        func run() throws {
            try reportingErrors(acrossProcesses: true) {
                var o = ProposeOptions(method: method, refine: refine, threads: parallel.threads)
                o.foreground = foreground
                o.primaps.threshold = threshold
                o.primaps.coverage = coverage
                o.spectral.mode = eigengap ? .adaptiveSegments : .segments(count: segments)
                let s = try ProposeJob.run(storePath: store, outputPath: out, options: o,
                                           overlays: overlays.map { ($0, overlayCount) }, progress: TerminalProgress(label: "propose"))
                say(String(format: "%d images, %.1f masks/image (min %d, max %d), %.1f images/s; wrote %@",
                           s.imageCount, s.meanMasks, s.maskCounts.min() ?? 0, s.maskCounts.max() ?? 0, s.imagesPerSecond, out))
                if s.featuresDataset != "/features" {
                    say("masks from \(store):\(s.featuresDataset) (the backbone's features of a peer's store; /features holds the peer's code)")
                }
                if let dir = overlays, !s.overlayFiles.isEmpty { say("wrote \(s.overlayFiles.count) overlays to \(dir)") }
            }
        }
    }
}
