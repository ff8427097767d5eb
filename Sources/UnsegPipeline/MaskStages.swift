import Foundation
import UnsegClustering
import UnsegCore
import UnsegLinAlg
import UnsegStore

/// `maskcontrast`: the contrastive projection head over epochs of batches with their masks.
struct MaskContrastRunner: StageRunner {
    var kind: FitStageKind { .maskContrast }
    func epochs(_ recipe: Recipe) -> Int { recipe.maskContrast.epochs }
    func initialState(from previous: StageOutput?, recipe: Recipe, threads: Int) throws -> StateRecord {
        // The head's input width is the store's: known when the stage runs (see `run`).
        var r = StateRecord()
        r.set("fresh", 1)
        return r
    }
    func run(_ ck: inout FitCheckpoint, context c: FitJob.Loop) throws -> StageOutput {
        let saved = try savedState(ck, c)
        let config = c.recipe.maskContrastConfig(threads: c.options.threads)
        let l = c.store.layout
        var t: MaskContrastTrainer
        if (try? saved.int("fresh")) == 1 {
            t = try MaskContrastTrainer(inputChannels: l.channels, config: config)
        } else {
            t = try MaskContrastTrainer(state: try MaskContrastTrainerState(record: saved), config: config)
            guard t.query.inputChannels == l.channels else {
                throw StoreError(file: c.options.checkpointPath, "damaged checkpoint: /stages/maskcontrast holds a head over \(t.query.inputChannels) channels, the store \(l.channels)")
            }
        }
        let keyView: String
        if l.viewCount > 0 {
            keyView = "one of the \(l.viewCount) augmented views in \(c.store.path):/features_views per image and epoch (seeded)"
        } else if l.hasFlippedFeatures {
            keyView = "the flipped features, flipped back (\(c.store.path):/features_flipped)"
        } else {
            keyView = "the stored features themselves (the store has no /features_flipped or /features_views; extract with --flip or --views for a second view)"
        }
        c.options.log?("maskcontrast: \(config.head.rawValue) head \(l.channels) -> \(t.query.outputDim), \(t.query.parameterCount) parameters; key view: \(keyView)")
        let seed = c.recipe.seed
        try c.runEpochs(&ck, kind: .maskContrast, orderStage: 2, epochs: c.recipe.maskContrast.epochs, state: { t.state.record }) { items, epoch in
            let masks = try c.proposals.featureMasks(for: items)
            let batch = try zip(items, masks).map { item, m -> MaskContrastSample in
                let key: Matrix
                if !item.isHere {
                    key = item.features   // another rank's image
                } else if l.viewCount > 0 {
                    // A function of (seed, epoch, image): resuming and threads change nothing.
                    var r = SeededRandom.stream(seed: FitSeeds.keyView(seed), index: UInt64(epoch) << 32 | UInt64(item.index))
                    key = try c.store.features(item.index, source: .view(r.int(below: l.viewCount)))
                } else if l.hasFlippedFeatures {
                    key = try c.store.features(item.index, source: .flipped)
                } else {
                    key = item.features
                }
                return MaskContrastSample(query: item.features, key: key, masks: m)
            }
            let st = try t.step(batch: batch, epoch: epoch, executor: c.executor)
            return (st.loss, nil)
        }
        return StageOutput(head: t.query)
    }
}

/// `segment-kmeans`: one pass over the training store: every mask's vector through the head
/// (the trained one, or the identity), then the mask clustering (PCA whitening, k-means).
struct SegmentKMeansRunner: StageRunner {
    var kind: FitStageKind { .segmentKMeans }
    func epochs(_ recipe: Recipe) -> Int { 0 }
    func initialState(from previous: StageOutput?, recipe: Recipe, threads: Int) throws -> StateRecord {
        var r = StateRecord()
        r.set("done", 0)
        previous?.head?.save(into: &r, at: "head")
        return r
    }
    func run(_ ck: inout FitCheckpoint, context c: FitJob.Loop) throws -> StageOutput {
        let saved = try savedState(ck, c)
        if (try? saved.int("done")) == 1 { return StageOutput(prototypes: try MaskClusterModel(record: saved, at: "model").prototypes) }
        let l = c.store.layout
        let head = saved.scalars["head/kind"] != nil ? try ProjectionHead(record: saved, at: "head")
            : ProjectionHead(kind: .identity, inputChannels: l.channels, hidden: 0, outputDim: l.channels, seed: 0)
        let started = Date()
        // Blocks of images in store order; under mpirun each rank reads (and makes masks for) only
        // its share of every block, the others are `StoreItem.elsewhere`.
        let n = l.imageCount, block = max(c.batchLen, 1)
        let mine = stride(from: 0, to: n, by: block).flatMap { b in Distributed.shard(min(block, n - b)).map { b + $0 } }
        let stream = try StoreStream(store: c.store, subset: mine, prefetch: 2 * block, decodeThreads: c.options.threads)
        var rows: [Float] = []
        var maskCount = 0, done = 0
        for b in stride(from: 0, to: n, by: block) {
            let len = min(block, n - b), own = Distributed.shard(len)
            let here = try stream.nextBatch(own.count)
            let items = (0..<len).map { j in own.contains(j) ? here[j - own.lowerBound] : StoreItem.elsewhere(b + j) }
            let masks = try c.proposals.featureMasks(for: items)
            let sk = c.recipe.segmentKMeans, sampleSeed = FitSeeds.segmentKMeans(c.recipe.seed) ^ 0xCE11
            let parts = try c.executor.map(items.count) { i in
                sk.vectors == .cells
                    ? MaskClusterModel.cellSamples(head: head, features: items[i].features, masks: masks[i], perMask: sk.cellsPerMask,
                                                   seed: sampleSeed, image: items[i].index)
                    : MaskClusterModel.maskVectors(head: head, features: items[i].features, masks: masks[i]).vectors
            }
            for v in parts { rows += v.data; maskCount += v.rows }
            done += items.count
        }
        let config = c.recipe.maskClusterConfig(threads: c.options.threads)
        let vectors = Matrix(rows: maskCount, cols: head.outputDim, data: rows)
        let (model, km): (MaskClusterModel, KMeansResult)
        do { (model, km) = try MaskClusterModel.fit(vectors: vectors, head: head, config: config) } catch let e as ClusteringError {
            throw StoreError(file: c.store.path, "segment k-means over \(done) images: \(e.message)")
        }
        c.options.log?(String(format: "segment k-means: %d %@ of %d images through the %@ head (%d dims)%@, %d clusters, %d restarts, inertia %.4g (restart %d), %.1f s",
                              maskCount, c.recipe.segmentKMeans.vectors == .cells ? "cells sampled per mask" : "masks", done, head.kind.rawValue, head.outputDim,
                              model.whitening.map { ", whitened to \($0.components.rows) dims" } ?? "", config.classes,
                              config.restarts, km.inertia, km.restart, Date().timeIntervalSince(started)))
        var r = saved
        model.save(into: &r, at: "model")
        r.set("done", 1)
        r.set("masks", maskCount)
        ck.states[.segmentKMeans] = r
        if let v = c.validator {
            let res = try v.evaluate(model.prototypes, embedding: model)
            ck.valHistory.append(ValRecord(stage: .segmentKMeans, epoch: 1, miou: res.miou, accuracy: res.accuracy))
            c.options.log?(String(format: "segment k-means: val mIoU %.2f Acc %.2f", res.miou, res.accuracy))
        }
        return StageOutput(prototypes: model.prototypes)
    }
}
