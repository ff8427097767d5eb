import Foundation
import UnsegLinAlg
import UnsegProposals
import UnsegStore
import UnsegCore

/// Which proposal method `unseg propose` runs.
public enum ProposalMethod: String, CaseIterable, Sendable {
    /// Principal mask proposals (Hahn et al. 2024), `PriMaPs.propose`.
    case primaps
    /// Spectral eigen-segments (Melas-Kyriazi et al. 2022), `Spectral.propose`.
    case spectral
    /// The Fiedler foreground (Deep Spectral Methods' localisation), `Spectral.fiedler`: one mask,
    /// plus a soft foreground map `/foreground` at image resolution.
    case fiedler
}

/// What the Fiedler foreground map `/foreground` is made from.
public enum FiedlerForeground: String, Sendable, CaseIterable, Equatable {
    /// The hard mask (1 / 0), upsampled bilinearly: soft only along the cell edges.
    case mask
    /// The eigenvector map `0.5 + 0.5 v_1 / max |v_1|`, upsampled bilinearly.
    case eigenvector
}

/// Everything that decides the content of a proposals file (all of it is written as root attributes).
public struct ProposeOptions: Sendable, Equatable {
    public var method: ProposalMethod = .primaps
    /// PriMaPs settings (threshold psi, coverage, solver, ...); used when `method == .primaps`.
    public var primaps = PriMaPsConfig()
    /// Spectral settings (segments, eigenvectors, seed, ...); used when `method == .spectral`.
    public var spectral = SpectralConfig()
    /// Refinement to image resolution; anything but `.none` needs `/images` in the store.
    public var refine: RefinementMethod = .none
    public var guided = GuidedFilterConfig()
    public var crf = DenseCRFConfig()
    /// `--method fiedler`: what `/foreground` upsamples: the hard mask (the default; the Two Tricks
    /// paper refines the binary mask with the guided filter) or the soft eigenvector map.
    public var foreground: FiedlerForeground = .mask
    /// Worker threads (one image per thread, single-threaded BLAS inside). >= 1.
    public var threads: Int = Parallel.coreCount
    /// Images read and processed per block (bounds memory); nil = `4 * threads`.
    public var blockSize: Int? = nil

    public init(method: ProposalMethod = .primaps, primaps: PriMaPsConfig = PriMaPsConfig(),
                spectral: SpectralConfig = SpectralConfig(), refine: RefinementMethod = .none,
                guided: GuidedFilterConfig = GuidedFilterConfig(), crf: DenseCRFConfig = DenseCRFConfig(),
                threads: Int = Parallel.coreCount, blockSize: Int? = nil) {
        self.method = method
        self.primaps = primaps
        self.spectral = spectral
        self.refine = refine
        self.guided = guided
        self.crf = crf
        self.threads = threads
        self.blockSize = blockSize
    }

    /// Checks every value before any work; throws `ProposeOptionError`, `ProposalError` or `RefinementError` naming the field.
    public func validate() throws {
        guard threads >= 1 else { throw ProposeOptionError("threads=\(threads) should be >= 1") }
        if let b = blockSize, b < 1 { throw ProposeOptionError("blockSize=\(b) should be >= 1") }
        switch method {
        case .primaps: try primaps.validate()
        case .fiedler:
            guard refine != .crf else {
                throw ProposeOptionError("--method fiedler refines its soft foreground map with --refine guided (the Two Tricks paper's filter) or none, not crf")
            }
        case .spectral:
            if case .segments(let s) = spectral.mode, !(1...(MaskProposals.maxMaskCount + 1)).contains(s) {
                throw ProposeOptionError("spectral segments=\(s) should be in 1...\(MaskProposals.maxMaskCount + 1)")
            }
            guard spectral.eigenvectors >= 1 else {
                throw ProposeOptionError("spectral eigenvectors=\(spectral.eigenvectors) should be >= 1")
            }
        }
        switch refine {
        case .none: break
        case .guided: try guided.validate()
        case .crf: try crf.validate()
        }
    }

    /// The root attributes that record these options in a proposals file (Float parameters are
    /// stored as the Double of their shortest decimal form: 0.4, not 0.4000000059604645).
    public var attributes: [(String, AttributeValue)] {
        func f(_ x: Float) -> AttributeValue { .double(Double("\(x)") ?? Double(x)) }
        var a: [(String, AttributeValue)] = [("method", .string(method.rawValue)), ("refine", .string(refine.rawValue))]
        switch method {
        case .fiedler:
            a += [("solver", .string(spectral.solver.rawValue)), ("foreground", .string(foreground.rawValue))]
        case .primaps:
            a += [("threshold", f(primaps.threshold)), ("coverage", f(primaps.coverage)),
                  ("max_masks", .int(primaps.maxMasks)), ("solver", .string(primaps.solver.rawValue)),
                  ("solver_tolerance", f(primaps.tolerance)), ("solver_max_matvecs", .int(primaps.maxMatvecs))]
        case .spectral:
            switch spectral.mode {
            case .foreground: a.append(("spectral_mode", .string("foreground")))
            case .segments(let s): a += [("spectral_mode", .string("segments")), ("segments", .int(s))]
            case .adaptiveSegments: a.append(("spectral_mode", .string("adaptive-segments (largest eigengap)")))
            }
            a += [("eigenvectors", .int(spectral.eigenvectors)), ("seed", .int(Int(truncatingIfNeeded: spectral.seed))),
                  ("kmeans_restarts", .int(spectral.restarts)), ("kmeans_max_iterations", .int(spectral.maxIterations))]
        }
        switch refine {
        case .none: break
        case .guided: a += [("guided_radius", .int(guided.radius)), ("guided_eps", f(guided.eps))]
        case .crf:
            a += [("crf_iterations", .int(crf.iterations)),
                  ("crf_gaussian_sxy", f(crf.gaussianSxy)), ("crf_gaussian_compat", f(crf.gaussianCompat)),
                  ("crf_bilateral_sxy", f(crf.bilateralSxy)), ("crf_bilateral_srgb", f(crf.bilateralSrgb)),
                  ("crf_bilateral_compat", f(crf.bilateralCompat)),
                  ("crf_probability_clip", f(crf.probabilityClip))]
        }
        return a
    }
}

/// A bad option of the propose job, phrased for the user (names the field and its value).
public struct ProposeOptionError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = "propose: " + message }
}

/// What one `ProposeJob.run` did.
public struct ProposeSummary: Sendable {
    public var storePath: String
    public var outputPath: String
    public var imageCount: Int
    /// Masks per image (K, background excluded), in store order.
    public var maskCounts: [Int]
    /// Wall time of the whole job, seconds.
    public var seconds: Double
    /// Overlay PNGs written (with `overlays:`).
    public var overlayFiles: [String] = []
    /// The features the masks were computed from: `/features`, or `/features_backbone` for a peer's store.
    public var featuresDataset: String = "/features"
    public var imagesPerSecond: Double { seconds > 0 ? Double(imageCount) / seconds : 0 }
    public var meanMasks: Double { maskCounts.isEmpty ? 0 : Double(maskCounts.reduce(0, +)) / Double(maskCounts.count) }
}

/// `unseg propose` as a library call: stream a feature store in blocks, compute mask proposals
/// (PriMaPs or spectral) for several images at once (one per thread, single-threaded BLAS), refine
/// them to image resolution if asked, and write a proposals file.
///
/// Output (`LabelMapsFormat.proposals`, written under a temporary name and renamed at the end):
/// `/masks` uint8 `[N, h, w]` (0 = background, 1...K), `/refined` uint8 `[N, H, W]` when refined,
/// root attributes `format`, `version`, `store` (source path), `images`, `grid_height/width`,
/// `image_height/width`, the method and all its parameters (`ProposeOptions.attributes`) and
/// mask-count statistics (`mask_count_min/max/mean/total`, `empty_images`).
///
/// Memory: two blocks of `blockSize` images (one being computed, one prefetched). Output is
/// byte-identical whatever the thread count or block size.
public enum ProposeJob {
    /// Runs the job. Validates options and inputs before doing any work: a refinement without
    /// `/images` in the store throws a `StoreError` naming the store and writes nothing.
    /// - Throws: `StoreError` (files), `ProposalError` / `RefinementError` (options or an image the
    ///   method rejects, e.g. non-finite features, with the image index); on error no output file is left.
    /// - overlays: also write `count` PNGs of image | masks | refined masks into `directory`.
    public static func run(storePath: String, outputPath: String, options: ProposeOptions = ProposeOptions(),
                           overlays: (directory: String, count: Int)? = nil,
                           progress: ProgressSink? = nil) throws -> ProposeSummary {
        try options.validate()
        try OutputGuard.check(outputs: [("--out", outputPath)], inputs: [("--store", storePath)],
                              folders: overlays.map { [("--overlays", $0.directory)] } ?? [])
        // A peer's store (`unseg-extract --head`): the masks come from /features_backbone.
        let store = try FeatureStore(path: storePath, view: .masks)
        let l = store.layout
        if options.refine != .none && !l.hasImages {
            throw StoreError(file: storePath, dataset: "/images",
                             "missing; --refine \(options.refine.rawValue) needs the RGB images [N, H, W, 3] uint8 in the store; use --refine none or a store written with images")
        }
        if options.method == .spectral, case .segments(let s) = options.spectral.mode, s > l.cellCount {
            throw StoreError(file: storePath, dataset: "/features",
                             "spectral segments=\(s) exceeds the \(l.gridHeight)x\(l.gridWidth) = \(l.cellCount) cells of the feature grid; use fewer segments")
        }
        let refined = options.refine != .none
        let fiedler = options.method == .fiedler
        // Under mpirun rank 0 writes (see ShardOutput); every rank proposes for its share of the images.
        let writer = Distributed.isLead ? try ProposalsWriter(path: outputPath, store: store, refined: refined, foreground: fiedler,
                                                              parameters: options.attributes) : nil
        var committed = false
        defer { if !committed { writer?.discard() } }
        let cells = l.cellCount, pixels = l.imageHeight * l.imageWidth
        let shard = try ShardOutput(count: l.imageCount, recordSize: 8 + cells + (refined ? pixels : 0) + (fiedler ? pixels : 0))

        let start = Date()
        let threads = max(1, min(options.threads, max(l.imageCount, 1)))
        let block = options.blockSize ?? 4 * threads
        BLASPolicy.imagesInParallel.apply()
        var maskCounts: [Int] = []
        maskCounts.reserveCapacity(l.imageCount)
        try shard.finish({
        let stream = try StoreStream(store: store, subset: Array(shard.range), includeImages: refined, prefetch: block, decodeThreads: threads)
        var done = 0
        while true {
            let items = try stream.nextBatch(block)
            if items.isEmpty { break }
            let results = try Parallel.tryMap(items.count, threads: threads) { j -> (MaskProposals, [UInt8]?, [UInt8]?) in
                try processWithForeground(items[j], layout: l, options: options, storePath: storePath)
            }
            for (j, (p, r, fg)) in results.enumerated() {
                let i = items[j].index
                try shard.put(Self.record(p, r, fg)) { try writer!.write(i, masks: p.labels, refined: r, foreground: fg) }
                maskCounts.append(p.maskCount)
            }
            done += items.count
            let rate = Double(done) / max(Date().timeIntervalSince(start), 1e-9)
            progress?.update(done: done, total: shard.range.count, note: String(format: "%.1f img/s", rate))
        }
        progress?.finish()
        }, write: { i, rec in
            var rd = WireReader(Array(rec[0..<8]))
            maskCounts.append(try rd.int())
            let masks = Array(rec[8..<(8 + cells)])
            let r = refined ? Array(rec[(8 + cells)..<(8 + cells + pixels)]) : nil
            let fg = fiedler ? Array(rec[(rec.count - pixels)...]) : nil
            try writer!.write(i, masks: masks, refined: r, foreground: fg)
        })
        guard let writer else {
            // Rank > 0: its share is with rank 0, which writes the file.
            return ProposeSummary(storePath: storePath, outputPath: outputPath, imageCount: l.imageCount, maskCounts: [],
                                  seconds: Date().timeIntervalSince(start))
        }
        try writer.commit(maskCounts: maskCounts)
        committed = true
        var summary = ProposeSummary(storePath: storePath, outputPath: outputPath, imageCount: l.imageCount,
                                     maskCounts: maskCounts, seconds: Date().timeIntervalSince(start))
        summary.featuresDataset = store.featuresName
        if let ov = overlays, ov.count > 0 {
            summary.overlayFiles = try ProposalOverlays.write(store: store, proposals: try ProposalsFile(path: outputPath, store: store),
                                                              to: ov.directory, count: ov.count)
        }
        return summary
    }

    /// One image's results as a shard record (see `ShardOutput`): mask count, masks, refined, foreground.
    static func record(_ p: MaskProposals, _ refined: [UInt8]?, _ foreground: [UInt8]?) -> [UInt8] {
        var w = WireWriter()
        w.put(p.maskCount)
        return w.bytes + p.labels + (refined ?? []) + (foreground ?? [])
    }

    /// `process`, plus for `.fiedler` the soft foreground map `[H*W]` uint8 (0...255 = 0...1):
    /// the feature-resolution soft map upsampled bilinearly, guided-filtered with `--refine guided`
    /// (radius 9, eps 1e-3, the image's grayscale as the guide, result clamped to [0, 1]); the
    /// refined mask is then that map thresholded at 0.5.
    static func processWithForeground(_ item: StoreItem, layout l: StoreLayout, options: ProposeOptions,
                                      storePath: String) throws -> (MaskProposals, [UInt8]?, [UInt8]?) {
        guard options.method == .fiedler else {
            let (p, r) = try process(item, layout: l, options: options, storePath: storePath)
            return (p, r, nil)
        }
        let f: (mask: [UInt8], soft: [Float])
        do { f = try Spectral.fiedler(features: item.features, height: l.gridHeight, width: l.gridWidth, solver: options.spectral.solver) } catch {
            throw StoreError(file: storePath, dataset: "/features", "image \(item.index): \(error)")
        }
        let p = MaskProposals.fromLabels(f.mask, maskCount: f.mask.contains(1) ? 1 : 0, height: l.gridHeight, width: l.gridWidth,
                                         stats: ProposalStats())
        let source = options.foreground == .mask ? f.mask.map(Float.init) : f.soft
        var soft = BilinearResampler(sourceHeight: l.gridHeight, sourceWidth: l.gridWidth, targetHeight: l.imageHeight,
                                     targetWidth: l.imageWidth).upsample(Matrix(rows: l.cellCount, cols: 1, data: source)).data
        var refined: [UInt8]?
        if options.refine == .guided, let image = item.image {
            do {
                let g = try GuidedFilter(image: image, height: l.imageHeight, width: l.imageWidth, config: options.guided)
                soft = g.apply(soft)
            } catch {
                throw StoreError(file: storePath, dataset: "/images", "image \(item.index): \(error)")
            }
            refined = soft.map { $0 >= 0.5 ? 1 : 0 }
        }
        let fg = soft.map { UInt8(min(max(($0 * 255).rounded(), 0), 255)) }
        return (p, refined, fg)
    }

    /// Proposals and (when asked) the refined map of one image. Errors carry the image index.
    static func process(_ item: StoreItem, layout l: StoreLayout, options: ProposeOptions,
                        storePath: String) throws -> (MaskProposals, [UInt8]?) {
        let p: MaskProposals
        do {
            switch options.method {
            case .primaps:
                p = try PriMaPs.propose(features: item.features, height: l.gridHeight, width: l.gridWidth, config: options.primaps)
            case .spectral:
                p = try Spectral.propose(features: item.features, height: l.gridHeight, width: l.gridWidth, config: options.spectral)
            case .fiedler:
                var c = options.spectral
                c.mode = .foreground
                p = try Spectral.propose(features: item.features, height: l.gridHeight, width: l.gridWidth, config: c)
            }
        } catch {
            throw StoreError(file: storePath, dataset: "/features", "image \(item.index): \(error)")
        }
        guard options.refine != .none, let image = item.image else { return (p, nil) }
        // Refine wants cell-major `[h*w, K+1]`; proposals hold channel-major `[K+1, h*w]`.
        let maps = p.logProbabilities.transposed()
        do {
            let r = try Refine.refine(maps: maps, featureHeight: l.gridHeight, featureWidth: l.gridWidth, image: image,
                                      imageHeight: l.imageHeight, imageWidth: l.imageWidth, method: options.refine,
                                      guided: options.guided, crf: options.crf)
            return (p, r)
        } catch {
            throw StoreError(file: storePath, dataset: "/images", "image \(item.index): \(error)")
        }
    }
}
