import Foundation
import Testing
import UnsegClustering
import UnsegCore
import UnsegLinAlg
import UnsegProposals
import UnsegStore
import UnsegTestSupport
@testable import UnsegPipeline

/// The switches that make unseg's fit / predict / test match the reference's training and test
/// scripts (issue "The paper's protocol, switch for switch").
@Suite struct ReferenceProtocolTests {
    /// Paper recipes ask for CRF-refined proposals; on the fly, they equal `unseg propose --refine crf`'s.
    @Test func onTheFlyProposalsAreTheCRFRefinedOnes() throws {
        for f in try FileManager.default.contentsOfDirectory(atPath: recipesDirectory()) where f.hasSuffix(".yaml") {
            #expect(try Recipe.load(path: recipesDirectory() + "/" + f).proposals == .primapsCRF, "\(f)")
        }
        let store = scratch("rp-store.h5"), props = scratch("rp-props.h5")
        try writePlantedStore(store, n: 5, seed: 3)
        _ = try ProposeJob.run(storePath: store, outputPath: props, options: ProposeOptions(refine: .crf, threads: 2))
        let s = try FeatureStore(path: store)
        let file = try ProposalsFile(path: props, store: s)
        var r = smallRecipe()
        r.proposals = .primapsCRF
        let provider = try ProposalProvider(options: FitOptions(recipe: r, storePath: store, checkpointPath: scratch("rp-unused.h5"), threads: 2), store: s)
        #expect(provider.refined && provider.onTheFly)
        let items = try StoreStream(store: s, prefetch: 0).nextBatch(5)
        let masks = try provider.masks(for: items)
        for i in 0..<5 { #expect(masks[i] == (try file.refined(i)), "image \(i): on-the-fly CRF proposals differ from unseg propose --refine crf") }
        r.proposals = .primapsUnrefined
        let unrefined = try ProposalProvider(options: FitOptions(recipe: r, storePath: store, checkpointPath: scratch("rp-unused.h5"), threads: 1), store: s)
        #expect(!unrefined.refined)
        let low = try unrefined.masks(for: items)
        let plain = scratch("rp-plain.h5")
        _ = try ProposeJob.run(storePath: store, outputPath: plain, options: ProposeOptions(threads: 1))
        let pf = try ProposalsFile(path: plain, store: s)
        for i in 0..<5 { #expect(low[i] == (try pf.labelResolutionMasks(i)), "image \(i): unrefined on-the-fly masks") }
    }

    /// `--init-from` loads the directions and resets the gains to 1, as the reference;
    /// `--keep-gains` keeps them.
    @Test func initFromResetsTheGainsUnlessAsked() throws {
        let store = scratch("rp-gains-store.h5"), src = scratch("rp-gains-src.h5")
        try writePlantedStore(store, n: 8, seed: 4)
        for p in [src, scratch("rp-gains-a.h5"), scratch("rp-gains-b.h5")] { try? FileManager.default.removeItem(atPath: p) }
        _ = try FitJob.run(FitOptions(recipe: smallRecipe(epochs: 3), storePath: store, checkpointPath: src, threads: 1))
        let source = try FitCheckpoint.load(path: src).momentum
        #expect(source.gains.contains { $0 != 1 }, "EM moved the gains: \(source.gains)")
        var r = smallRecipe(epochs: 0)
        r.stages = [.primapsEM]
        var o = FitOptions(recipe: r, storePath: store, checkpointPath: scratch("rp-gains-a.h5"), threads: 1)
        o.initFromPath = src
        let reset = try FitJob.run(o).checkpoint.momentum
        #expect(reset.gains == [Float](repeating: 1, count: reset.classCount))
        #expect(reset.directions == source.directions)
        o.checkpointPath = scratch("rp-gains-b.h5")
        o.keepGains = true
        #expect(try FitJob.run(o).checkpoint.momentum == source)
    }

    /// The CRF on a Baseline checkpoint refines the cosine scores (normalised label-resolution
    /// features, g = 1) through a softmax, checked against a direct computation.
    @Test func baselineCRFProbabilitiesAreTheSoftmaxOfCosineScores() throws {
        var rng = SeededRandom(seed: 21)
        let h = 5, w = 4, c = 7, k = 3, H = 13, W = 11
        let f = Matrix(rows: h * w, cols: c, data: (0..<(h * w * c)).map { _ in rng.gaussian() + 0.3 })
        let model = PrototypeModel(directions: Matrix(rows: k, cols: c, data: (0..<(k * c)).map { _ in rng.gaussian() }),
                                   gains: [2.5, 0.5, 7])   // gains are ignored by the cosine head
        let got = PredictJob.crfProbabilities(model: model, head: .cosine, features: f, h: h, w: w, H: H, W: W)
        // Direct: upsample the features, normalise each pixel, cosine with the unit prototypes, softmax.
        let up = BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: H, targetWidth: W).upsample(f)
        let u = model.directions.rowNormalized()
        var want = [Double]()
        for p in 0..<(H * W) {
            let x = (0..<c).map { Double(up.data[p * c + $0]) }
            let nx = max(x.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
            let cos = (0..<k).map { j in (0..<c).map { x[$0] * Double(u.data[j * c + $0]) }.reduce(0, +) / nx }
            let m = cos.max()!, e = cos.map { Foundation.exp($0 - m) }, s = e.reduce(0, +)
            want += e.map { $0 / s }
        }
        expectAllClose(got.map(Double.init), want, abs: 2e-6, "cosine-head CRF probabilities")
        // The weight-normalised head feeds the softmax of its logits (gains included).
        let lin = PredictJob.crfProbabilities(model: model, head: .weightNormalised, features: f, h: h, w: w, H: H, W: W)
        let logits = model.logits(features: f, h: h, w: w, H: H, W: W)
        expectAllClose(lin, Reduce.softmax(logits.data, rows: H * W, cols: k), abs: 1e-7, "linear-head CRF probabilities")
        // Both heads give the same argmax without refinement when g = 1.
        let unit = PrototypeModel(directions: model.directions)
        #expect(Reduce.rowArgmax(unit.cosineScores(features: f, h: h, w: w, H: H, W: W).data, rows: H * W, cols: k).map(Int.init)
                == unit.predict(features: f, h: h, w: w, H: H, W: W).map(Int.init))
    }

    /// A checkpoint knows its head: Baseline (cosine k-means) vs PriMaPs-EM.
    @Test func checkpointKnowsItsHead() throws {
        let store = scratch("rp-head-store.h5"), a = scratch("rp-head-a.h5"), b = scratch("rp-head-b.h5")
        try writePlantedStore(store, n: 8, seed: 5)
        for p in [a, b] { try? FileManager.default.removeItem(atPath: p) }
        var base = smallRecipe()
        base.stages = [.pcaInit, .cosineKMeans]
        _ = try FitJob.run(FitOptions(recipe: base, storePath: store, checkpointPath: a, threads: 1))
        _ = try FitJob.run(FitOptions(recipe: smallRecipe(), storePath: store, checkpointPath: b, threads: 1))
        #expect(try FitCheckpoint.load(path: a).head == .cosine)
        #expect(try FitCheckpoint.load(path: b).head == .weightNormalised)
    }
}

/// Stores with augmented views (`/features_views`): the M-step trains on a seeded view per
/// (epoch, image); results are the same on 1 and 2 threads and after a stop and resume.
@Suite struct MStepViewTests {
    @Test func viewsAreUsedDeterministicallyAndResumeExactly() throws {
        let store = scratch("views-store.h5"), plain = scratch("views-plain.h5")
        try writePlantedStore(store, n: 8, seed: 6)
        try writePlantedStore(plain, n: 8, seed: 6)
        try addNoisyViews(to: store)
        #expect(try FeatureStore(path: store).layout.viewCount == 3)
        func fit(_ s: String, threads: Int, name: String, stop: Int? = nil, resume: Bool = false) throws -> FitCheckpoint {
            let ck = scratch(name)
            if !resume { try? FileManager.default.removeItem(atPath: ck) }
            var o = FitOptions(recipe: smallRecipe(epochs: 3), storePath: s, checkpointPath: ck, resume: resume, threads: threads)
            o.stopAfterStep = stop
            return try FitJob.run(o).checkpoint
        }
        let one = try fit(store, threads: 1, name: "views-1.h5")
        let two = try fit(store, threads: 2, name: "views-2.h5")
        #expect(one.momentum == two.momentum && one.running == two.running, "1 vs 2 threads")
        _ = try fit(store, threads: 2, name: "views-r.h5", stop: 5)
        let resumed = try fit(store, threads: 1, name: "views-r.h5", resume: true)
        #expect(resumed.momentum == one.momentum && resumed.states == one.states, "stop after step 5 and resume")
        let noViews = try fit(plain, threads: 1, name: "views-plain-ck.h5")
        #expect(noViews.running != one.running, "the views change what the M-step sees")
    }
}
