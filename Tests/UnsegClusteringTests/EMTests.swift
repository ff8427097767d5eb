import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegClustering
import UnsegCore

@Suite struct EMTests {
    // Planted problem: K = 3 classes in C = 8 channels; the last 3 channels carry strong per-cell
    // noise (sigma 1.0 vs class signal 1.2) that dominates the cosine geometry and misleads
    // cosine k-means (its result is near chance here), while the mask votes still carry the regions.
    static let K = 3, C = 8, h = 6, w = 6, H = 12, W = 12
    static var means: Matrix {
        var m = Matrix(rows: K, cols: C)
        for k in 0..<K { m[k, k] = 1.2; m[k, 3 + k % 2] = 0.4; m[k, C - 1] += 0.5 }
        return m
    }

    func problem(seed: UInt64, count: Int, noise: Float = 0.5, nuisance: Float = 1.0) -> (samples: [EMSample], truth: [[UInt8]]) {
        plantedBatch(count: count, h: Self.h, w: Self.w, H: Self.H, W: Self.W, means: Self.means, noise: noise,
                     nuisance: nuisance, nuisanceDims: 3, seed: seed)
    }

    /// PCA init + cosine k-means warm-up on the planted features (the method's initialisation;
    /// lr 0.02 instead of 5e-3 so that 60 steps converge on this small problem).
    func warmUp(_ samples: [EMSample], seed: UInt64, steps: Int) throws -> PrototypeModel {
        var acc = PCAAccumulator(channels: Self.C)
        for s in samples { try acc.add(s.features) }
        let pca = try acc.finalize(components: Self.K)
        var t = try CosineKMeansTrainer(initial: CosineKMeansTrainer.pcaInitialisation(pca),
                                        config: CosineKMeansConfig(adam: AdamConfig(learningRate: 0.02), seed: seed))
        var first = 0.0, last = 0.0
        for s in 0..<steps {
            let order = t.epochOrder(count: samples.count)
            let batch = order.prefix(8).map { samples[$0].features }
            let st = try t.step(batch: batch)
            if s == 0 { first = st.loss }
            last = st.loss
        }
        #expect(last < first, "seed \(seed): warm-up loss did not fall (\(first) -> \(last))")
        return t.model
    }

    func accuracy(_ model: PrototypeModel, _ p: (samples: [EMSample], truth: [[UInt8]])) -> Double {
        let pred = p.samples.map { model.predict(features: $0.features, h: $0.height, w: $0.width, H: $0.labelHeight, W: $0.labelWidth) }
        return bestPermutationAccuracy(pred, p.truth, k: Self.K)
    }

    @Test func emImprovesOnItsKMeansInit() throws {
        let seed: UInt64 = 100
        let train = problem(seed: seed, count: 48)
        let init0 = try warmUp(train.samples, seed: seed, steps: 60)
        // lr 0.05 instead of 5e-3 so that 120 steps suffice (the reference runs thousands).
        var t = try EMTrainer(initial: init0, config: EMConfig(batchSize: 8, adam: AdamConfig(learningRate: 0.05),
                                                               threads: 2, seed: seed))
        for _ in 0..<20 {   // 20 epochs of 6 steps = 120 steps, 12 momentum updates
            let order = t.epochOrder(count: train.samples.count)
            for b in 0..<6 { _ = try t.step(batch: order[(b * 8)..<(b * 8 + 8)].map { train.samples[$0] }) }
            t.epoch += 1
        }
        let held = problem(seed: seed + 1, count: 24)
        let before = accuracy(init0, held), after = accuracy(t.momentum, held)
        // Measured at this seed: 0.356 -> 0.675 (oracle prototypes = class means: 0.97). Mask votes turn
        // the init's scattered pixel decisions into region-consistent labels, and the cross-entropy learns
        // to down-weight the nuisance channels: require a clear gain on held-out images.
        #expect(after > before + 0.15, "seed \(seed): accuracy \(before) -> \(after)")
        #expect(t.stepCount == 120 && t.momentumUpdates == 11)
    }

    @Test func warmUpRecoversCleanClasses() throws {
        // Without nuisance noise, PCA init + cosine k-means warm-up alone finds the classes.
        let seed: UInt64 = 105
        let train = problem(seed: seed, count: 32, noise: 0.3, nuisance: 0)
        let model = try warmUp(train.samples, seed: seed, steps: 60)
        let acc = accuracy(model, problem(seed: seed + 1, count: 16, noise: 0.3, nuisance: 0))
        #expect(acc > 0.9, "seed \(seed): warm-up accuracy \(acc)")
        #expect(model.gains == [1, 1, 1], "warm-up keeps g = 1")
    }

    @Test func warmUpResumeIsBitExact() throws {
        let seed: UInt64 = 106
        let p = problem(seed: seed, count: 8)
        let feats = p.samples.map(\.features)
        let init0 = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: seed))
        var a = try CosineKMeansTrainer(initial: init0)
        for s in 0..<6 { _ = try a.step(batch: [feats[s % 8], feats[(s + 3) % 8]]) }
        var b = try CosineKMeansTrainer(initial: init0)
        for s in 0..<3 { _ = try b.step(batch: [feats[s % 8], feats[(s + 3) % 8]]) }
        var c = try CosineKMeansTrainer(state: b.state)
        for s in 3..<6 { _ = try c.step(batch: [feats[s % 8], feats[(s + 3) % 8]]) }
        #expect(c.state == a.state, "seed \(seed)")
    }

    @Test func identicalOnOneAndTwoThreads() throws {
        let seed: UInt64 = 101
        let p = problem(seed: seed, count: 12)
        let init0 = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: seed))
        var runs: [EMTrainerState] = []
        for threads in [1, 2] {
            var t = try EMTrainer(initial: init0, config: EMConfig(momentumEvery: 3, threads: threads, seed: seed))
            for s in 0..<7 { _ = try t.step(batch: Array(p.samples[(s % 3 * 4)..<(s % 3 * 4 + 4)])) }
            runs.append(t.state)
        }
        #expect(runs[0] == runs[1], "seed \(seed): 1 and 2 threads differ")
        #expect(runs[0].momentumUpdates == 2)
    }

    @Test func resumeFromSavedStateIsBitExact() throws {
        let seed: UInt64 = 102
        let p = problem(seed: seed, count: 16)
        let init0 = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: seed))
        let config = EMConfig(momentumEvery: 4, threads: 2, seed: seed)
        func batch(_ t: inout EMTrainer) -> [EMSample] {
            // Batch order drawn from the trainer's generator, so it is part of the saved state.
            t.epochOrder(count: p.samples.count).prefix(4).map { p.samples[$0] }
        }
        var full = try EMTrainer(initial: init0, config: config)
        for _ in 0..<11 { _ = try full.step(batch: batch(&full)) }
        var first = try EMTrainer(initial: init0, config: config)
        for _ in 0..<6 { _ = try first.step(batch: batch(&first)) }
        first.epoch = 1
        // Round-trip through plain arrays, as a checkpoint would store them.
        let s = first.state
        let copied = EMTrainerState(
            running: PrototypeModel(directions: Matrix(rows: s.running.classCount, cols: s.running.channelCount, data: Array(s.running.directions.data)), gains: Array(s.running.gains)),
            momentum: PrototypeModel(directions: Matrix(rows: s.momentum.classCount, cols: s.momentum.channelCount, data: Array(s.momentum.directions.data)), gains: Array(s.momentum.gains)),
            adam: AdamState(m: Array(s.adam.m), v: Array(s.adam.v), step: s.adam.step),
            step: s.step, epoch: s.epoch, momentumUpdates: s.momentumUpdates, rngState: Array(s.rngState),
            lossHistory: Array(s.lossHistory))
        var resumed = try EMTrainer(state: copied, config: config)
        for _ in 0..<5 { _ = try resumed.step(batch: batch(&resumed)) }
        #expect(resumed.running == full.running, "seed \(seed): running prototypes differ after resume")
        #expect(resumed.momentum == full.momentum, "seed \(seed): momentum prototypes differ after resume")
        #expect(resumed.adam == full.adam && resumed.lossHistory == full.lossHistory)
        #expect(resumed.epoch == 1 && resumed.stepCount == 11)
    }

    /// The reference's schedule (primaps ema.py with update_after_step=0, update_every=1, called
    /// when `global_step > 0 and global_step % every == 0`): updates after steps 11, 21, 31, ...
    /// for every = 10; the first two copy, update k >= 3 uses min(1 - 1/k, cap).
    @Test func momentumScheduleFollowsTheReference() throws {
        let updateSteps = (1...45).filter { EMTrainer.updatesMomentum(afterStep: $0, every: 10) }
        #expect(updateSteps == [11, 21, 31, 41])
        #expect((1...7).filter { EMTrainer.updatesMomentum(afterStep: $0, every: 2) } == [3, 5, 7])
        #expect((1...4).filter { EMTrainer.updatesMomentum(afterStep: $0, every: 1) } == [2, 3, 4])
        let decays = (1...6).map { EMTrainer.momentumDecay(update: $0, cap: 0.98) }
        #expect(decays[0] == 0 && decays[1] == 0, "the first two updates copy")
        expectClose(decays[2], 2.0 / 3.0, abs: 1e-15, "update 3")
        expectClose(decays[3], 3.0 / 4.0, abs: 1e-15, "update 4")
        expectClose(decays[5], 5.0 / 6.0, abs: 1e-15, "update 6")
        #expect(EMTrainer.momentumDecay(update: 50, cap: 0.98) == 0.98)
        #expect(EMTrainer.momentumDecay(update: 1000, cap: 0.98) == 0.98)

        // Through the trainer (every = 2): updates after steps 3 (copy), 5 (copy), 7 (2/3).
        let seed: UInt64 = 103
        let p = problem(seed: seed, count: 4)
        let init0 = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: seed))
        var t = try EMTrainer(initial: init0, config: EMConfig(momentumEvery: 2, seed: seed))
        var decays2: [Double?] = []
        for step in 1...7 {
            let mBefore = t.momentum.flatParameters
            let d = try t.step(batch: p.samples).momentumDecay
            decays2.append(d)
            if step < 3 { #expect(t.momentum == init0, "no update before step 3 (step \(step))") }
            if step == 3 || step == 5 { #expect(t.momentum == t.running, "update after step \(step) copies") }
            if step == 7 {
                let r = t.running.flatParameters, m = t.momentum.flatParameters
                let d3 = EMTrainer.momentumDecay(update: 3, cap: 0.98), df = Float(d3), rf = Float(1 - d3)
                for j in 0..<m.count { #expect(m[j] == df * mBefore[j] + rf * r[j], "update 3: d = 2/3, entry \(j)") }
            }
        }
        #expect(decays2 == [nil, nil, 0, nil, 0, nil, 1 - 1.0 / 3])
    }

    @Test func majorityVoteAndNearestMasks() {
        // Mask 1: classes 2,2,1 -> 2; mask 2: 0,1 tie -> 0 (lowest); mask 3 absent; background ignored.
        let cls: [UInt8] = [2, 2, 1, 0, 1, 2]
        let masks: [UInt8] = [1, 1, 1, 2, 2, 0]
        #expect(PriMaPsEM.majorityVote(classMap: cls, masks: masks, classCount: 3) == [2, 2, 2, 0, 0, 255])
        // 2x2 -> 4x4 nearest.
        let up = NearestResampler.resample([1, 2, 3, 0], height: 2, width: 2, toHeight: 4, toWidth: 4)
        #expect(up == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 0, 0, 3, 3, 0, 0])
    }

    @Test func flipLeavesTheLossUnchanged() throws {
        // With precomputed features a flip is an exact symmetry (align_corners=False bilinear commutes
        // with it): the step loss with every image flipped equals the unflipped one up to rounding.
        let seed: UInt64 = 104
        let p = problem(seed: seed, count: 4)
        let init0 = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: seed))
        var a = try EMTrainer(initial: init0, config: EMConfig(flipProbability: 0, seed: seed))
        var b = try EMTrainer(initial: init0, config: EMConfig(flipProbability: 1, seed: seed))
        let sa = try a.step(batch: p.samples), sb = try b.step(batch: p.samples)
        #expect(sb.flipped == 4 && sa.flipped == 0)
        #expect(abs(sa.loss - sb.loss) <= 1e-5 * abs(sa.loss), "seed \(seed): \(sa.loss) vs \(sb.loss)")
        #expect(sa.labelledFraction == sb.labelledFraction)
    }

    @Test func validation() throws {
        let init0 = PrototypeModel(directions: randomMatrix(3, 4, seed: 1))
        var t = try EMTrainer(initial: init0, config: EMConfig())
        #expect(throws: ClusteringError("EM step: the batch is empty; pass at least one image")) {
            try t.step(batch: [])
        }
        let bad = EMSample(features: randomMatrix(4, 4, seed: 2), height: 2, width: 2, labelHeight: 4, labelWidth: 4,
                           masks: [UInt8](repeating: 1, count: 4))
        do {
            _ = try t.step(batch: [bad])
            Issue.record("mask size mismatch should throw")
        } catch {
            #expect("\(error)".contains("mask map has 4 values but the label grid is 4x4 = 16"))
        }
        #expect(t.stepCount == 0, "a failed step changes nothing")
        #expect(throws: ClusteringError("decay_cap=1.0 should be in [0, 1)")) {
            try EMTrainer(initial: init0, config: EMConfig(decayCap: 1))
        }
    }
}
