import Foundation
import Testing
import UnsegClustering
import UnsegLinAlg
import UnsegStore
import UnsegTestSupport
@testable import UnsegPipeline

/// A recipe of the mask stages for the small planted stores.
func maskRecipe(head: Bool = true, epochs: Int = 3, batch: Int = 4, seed: UInt64 = 7) -> Recipe {
    var r = Recipe()
    r.name = "mask-test"
    r.classes = 4
    r.batchSize = batch
    r.checkpointEvery = 3
    r.seed = seed
    r.stages = head ? [.maskContrast, .segmentKMeans] : [.segmentKMeans]
    r.maskContrast.epochs = epochs
    r.maskContrast.hidden = 16
    r.maskContrast.dim = 8
    r.maskContrast.queue = 12
    r.maskContrast.learningRate = 0.5
    r.segmentKMeans.pcaDims = 4
    r.segmentKMeans.restarts = 3
    r.masks.primapsThreshold = 0.4
    return r
}

@Suite struct MaskStageTests {
    /// The key view is the flipped-back features or, where the store has augmented views, a seeded
    /// one per (epoch, image): the same bits on 1 and 2 threads and after a stop and resume;
    /// a different head than the plain store's.
    @Test("maskcontrast: seeded key views, identical on 1 and 2 threads and after stop + resume")
    func keyViewsDeterministicAndResumable() throws {
        let store = scratch("mc-views.h5"), plain = scratch("mc-plain.h5"), flipped = scratch("mc-flipped.h5")
        for s in [store, plain, flipped] { try writePlantedStore(s, n: 12, seed: 6) }
        try addNoisyViews(to: store)
        _ = try runPython("""
        import h5py, sys, numpy as np
        with h5py.File(sys.argv[1], 'a') as f:
            x = f['features'][...]
            f.create_dataset('features_flipped', data=(x + np.random.default_rng(1).normal(0, 0.3, x.shape)).astype(x.dtype))
        """, args: [flipped])
        func fit(_ s: String, threads: Int, name: String, stop: Int? = nil, resume: Bool = false) throws -> FitCheckpoint {
            let ck = scratch(name)
            if !resume { try? FileManager.default.removeItem(atPath: ck) }
            var o = FitOptions(recipe: maskRecipe(), storePath: s, checkpointPath: ck, resume: resume, threads: threads)
            o.stopAfterStep = stop
            return try FitJob.run(o).checkpoint
        }
        let one = try fit(store, threads: 1, name: "mc-1.h5")
        let two = try fit(store, threads: 2, name: "mc-2.h5")
        #expect(one.isDone && one.states == two.states, "1 vs 2 threads")
        _ = try fit(store, threads: 2, name: "mc-r.h5", stop: 4)
        let mid = try FitCheckpoint.load(path: scratch("mc-r.h5"))
        #expect(mid.stage == .maskContrast && mid.step == 3, "stopped in the head's training (checkpoint every 3 steps)")
        let resumed = try fit(store, threads: 1, name: "mc-r.h5", resume: true)
        #expect(resumed.states == one.states, "stop after step 4 and resume")
        let model = try #require(try one.maskModel())
        #expect(model.head.kind == .mlp && model.centroids.rows == 4 && model.whitening?.components.rows == 4)
        let noViews = try fit(plain, threads: 1, name: "mc-plain-ck.h5")
        let flip = try fit(flipped, threads: 1, name: "mc-flip-ck.h5")
        let heads = try [one, noViews, flip].map { try #require(try $0.maskModel()).head }
        #expect(heads[0] != heads[1] && heads[1] != heads[2], "the key view changes what the head learns")
        #expect(one.head == .maskClusters && one.inputChannels == 16)
    }

    /// Prediction through the mask clustering: every cell its nearest centroid; with proposals, the
    /// cells of a mask share the mask's cluster and background cells keep their own (cluster ids
    /// are all semantic: none is reserved for, or merged with, background).
    @Test("predict with a mask-clustering checkpoint, with and without mask voting")
    func predictWithMaskVoting() throws {
        let train = scratch("sk-train.h5"), val = scratch("sk-val.h5")
        try writePlantedStore(train, n: 12, seed: 3)
        try writePlantedStore(val, n: 4, seed: 4, split: "val")
        let ck = scratch("sk.h5")
        try? FileManager.default.removeItem(atPath: ck)
        let fit = try FitJob.run(FitOptions(recipe: maskRecipe(head: false), storePath: train, checkpointPath: ck, threads: 2))
        let model = try #require(try fit.checkpoint.maskModel())
        #expect(model.head.kind == .identity && fit.checkpoint.step == 0)
        // Proposals of the val store: one mask over the left half, background elsewhere.
        let props = scratch("sk-props.h5")
        try? FileManager.default.removeItem(atPath: props)
        let store = try FeatureStore(path: val)
        let l = store.layout
        let w = try ProposalsWriter(path: props, store: store, refined: false, parameters: [("method", .string("primaps"))])
        let masks = (0..<(l.gridHeight * l.gridWidth)).map { UInt8($0 % l.gridWidth < l.gridWidth / 2 ? 1 : 0) }
        for i in 0..<l.imageCount { try w.write(i, masks: masks, refined: nil as [UInt8]?) }
        try w.commit(maskCounts: [Int](repeating: 1, count: l.imageCount))
        let plain = scratch("sk-pred.h5"), voted = scratch("sk-pred-voted.h5")
        for f in [plain, voted] { try? FileManager.default.removeItem(atPath: f) }
        _ = try PredictJob.run(PredictOptions(checkpointPath: ck, storePath: val, outPath: plain, threads: 2))
        _ = try PredictJob.run(PredictOptions(checkpointPath: ck, storePath: val, outPath: voted, threads: 1, proposalsPath: props))
        let a = try PredictionsFile(path: plain, store: store), b = try PredictionsFile(path: voted, store: store)
        for i in 0..<l.imageCount {
            let pa = try a.read(i), pb = try b.read(i)
            let f = try store.features(i)
            let cells = model.prototypes.lowResolutionLogits(features: model.embedCells(f)).rowArgmax()
            let votedCells = model.prototypes.lowResolutionLogits(features: model.embedCells(f, masks: masks)).rowArgmax()
            // Inside the mask one cluster; outside each cell keeps its own.
            #expect(Set((0..<cells.count).filter { masks[$0] == 1 }.map { votedCells[$0] }).count == 1)
            #expect((0..<cells.count).filter { masks[$0] == 0 }.allSatisfy { votedCells[$0] == cells[$0] })
            // The label-resolution maps: the right-half pixels far from the mask border agree.
            let W = l.imageWidth
            for y in 0..<l.imageHeight { for x in (W * 3 / 4)..<W { #expect(pa[y * W + x] == pb[y * W + x]) } }
        }
        // --proposals with a prototype checkpoint is refused, naming the option.
        let pck = scratch("sk-proto.h5")
        try? FileManager.default.removeItem(atPath: pck)
        _ = try FitJob.run(FitOptions(recipe: smallRecipe(epochs: 1), storePath: train, checkpointPath: pck, threads: 2))
        #expect(throws: RecipeError.self) {
            try PredictJob.run(PredictOptions(checkpointPath: pck, storePath: val, outPath: scratch("sk-x.h5"), proposalsPath: props))
        }
    }

    @Test("recipes: mask stages do not mix with prototype stages; maskcontrast needs segment-kmeans after it; --init-from is refused")
    func recipeRules() throws {
        var r = maskRecipe()
        r.stages = [.pcaInit, .segmentKMeans]
        #expect(throws: RecipeError.self) { try r.validate() }
        r.stages = [.maskContrast]
        #expect { try r.validate() } throws: { ($0 as? RecipeError)?.message.contains("end the list with segment-kmeans") == true }
        #expect { _ = try Recipe.parse("stages: [maskcontrast, segment-kmeans]\nmaskcontrast:\n  head: identity\n") } throws: {
            ($0 as? RecipeError)?.message.contains("maskcontrast.head") == true
        }
        #expect { _ = try Recipe.parse("maskcontrast:\n  class_balance: yes\n") } throws: {
            ($0 as? RecipeError)?.message.contains("expected true or false") == true
        }
        let parsed = try Recipe.parse(maskRecipe().yaml())
        #expect(parsed == maskRecipe())
        let store = scratch("mc-init.h5")
        try writePlantedStore(store, n: 8, seed: 2)
        var o = FitOptions(recipe: maskRecipe(), storePath: store, checkpointPath: scratch("mc-init-ck.h5"))
        o.initFromPath = store
        #expect { _ = try FitJob.run(o) } throws: { ($0 as? RecipeError)?.message.contains("--init-from") == true }
        // masks.source file without --proposals.
        var f = maskRecipe()
        f.masks.source = .file
        #expect { _ = try FitJob.run(FitOptions(recipe: f, storePath: store, checkpointPath: scratch("mc-file-ck.h5"))) } throws: {
            ($0 as? RecipeError)?.message.contains("--proposals") == true
        }
    }
}
