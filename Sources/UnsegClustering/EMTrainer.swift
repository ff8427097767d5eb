import UnsegCore
import UnsegLinAlg

/// One training image for PriMaPs-EM.
///
/// `features` `[h*w, C]` raw backbone features (row-major cells, not normalised);
/// label resolution `H x W`; `masks` `[H*W]` proposal index map: 0 = background /
/// unmasked (ignored), 1...M = mask index (PriMaPs pseudo-label with 255 mapped to 0).
public struct EMSample: Sendable {
    public var features: Matrix
    public var height: Int, width: Int
    public var labelHeight: Int, labelWidth: Int
    public var masks: [UInt8]
    /// Features the M-step trains on (`[h*w, C]`), when they differ from the E-step's: a
    /// photometrically augmented view of the image, as the reference's student augmentation.
    /// nil: the M-step uses `features`.
    public var mStepFeatures: Matrix? = nil
    /// A zoomed-in crop of the image for the multi-scale consistency (`EMConfig.consistencyWeight`);
    /// nil: the image adds nothing to that term.
    public var crop: EMCrop? = nil

    public init(features: Matrix, height: Int, width: Int, labelHeight: Int, labelWidth: Int, masks: [UInt8]) {
        self.features = features; self.height = height; self.width = width
        self.labelHeight = labelHeight; self.labelWidth = labelWidth; self.masks = masks
    }

    /// Checks shapes against a model with `channels` channels; throws a message naming the image.
    func validate(channels: Int, index: Int) throws {
        if height <= 0 || width <= 0 || labelHeight <= 0 || labelWidth <= 0 {
            throw ClusteringError("image \(index): grid sizes must be positive, got features \(height)x\(width), labels \(labelHeight)x\(labelWidth)")
        }
        if features.rows != height * width {
            throw ClusteringError("image \(index): features have \(features.rows) rows but the grid is \(height)x\(width) = \(height * width)")
        }
        if features.cols != channels {
            throw ClusteringError("image \(index): features have \(features.cols) channels but the prototypes were fitted on \(channels); use prototypes from the same backbone")
        }
        if let m = mStepFeatures, m.rows != features.rows || m.cols != features.cols {
            throw ClusteringError("image \(index): the M-step view is [\(m.rows), \(m.cols)] but the features are [\(features.rows), \(features.cols)]")
        }
        if let c = crop {
            if c.features.rows != features.rows || c.features.cols != features.cols {
                throw ClusteringError("image \(index): the crop's features are [\(c.features.rows), \(c.features.cols)] but the image's are [\(features.rows), \(features.cols)]; crops are resized to the full input size")
            }
            if let why = c.box.problem(width: labelWidth, height: labelHeight, patch: max(1, labelWidth / width)) {
                throw ClusteringError("image \(index): crop box (\(c.box.x0), \(c.box.y0), \(c.box.x1), \(c.box.y1)) is \(why)")
            }
        }
        if masks.count != labelHeight * labelWidth {
            throw ClusteringError("image \(index): mask map has \(masks.count) values but the label grid is \(labelHeight)x\(labelWidth) = \(labelHeight * labelWidth); upsample feature-resolution masks with NearestResampler.resample")
        }
    }
}

/// Settings of PriMaPs-EM (defaults: the reference's).
public struct EMConfig: Sendable, Equatable, Codable {
    /// Images per step the caller should pass (reference 32); `step` accepts any count >= 1.
    public var batchSize: Int = 32
    /// Adam for the running prototypes (lr 5e-3, betas 0.9/0.999, eps 1e-8, no weight decay).
    public var adam = AdamConfig()
    /// Exponent of the class weights `w_k = (1 - mean softmax_k)^gamma`.
    public var gamma: Double = 2
    /// Momentum (EMA) update every this many steps.
    public var momentumEvery: Int = 10
    /// Cap of the EMA decay `d = min(1 - 1/n, decayCap)`.
    public var decayCap: Double = 0.98
    /// Probability of a horizontal flip of each image (features, masks, labels together).
    public var flipProbability: Double = 0.5
    /// Worker threads over the images of a batch (results do not depend on it).
    public var threads: Int = 1
    /// Seed of the trainer's generator (flips, epoch orders).
    public var seed: UInt64 = 0
    /// Weight of the multi-scale consistency term (`MultiScaleConsistency`) on images with a crop; 0: off.
    public var consistencyWeight: Double = 0
    /// The teacher on the crop: the running prototypes before the step (the current model,
    /// stop-gradient, as the reference) or the momentum (EMA) copy.
    public var consistencyTeacher: PrototypeCopy = .running
    /// Cross-entropy to the teacher's soft or hard assignment.
    public var consistencyTarget: ConsistencyTarget = .soft

    public init(batchSize: Int = 32, adam: AdamConfig = AdamConfig(), gamma: Double = 2, momentumEvery: Int = 10,
                decayCap: Double = 0.98, flipProbability: Double = 0.5, threads: Int = 1, seed: UInt64 = 0) {
        self.batchSize = batchSize; self.adam = adam; self.gamma = gamma; self.momentumEvery = momentumEvery
        self.decayCap = decayCap; self.flipProbability = flipProbability; self.threads = threads; self.seed = seed
    }

    func validate() throws {
        if batchSize < 1 { throw ClusteringError("batch_size=\(batchSize) should be >= 1") }
        if momentumEvery < 1 { throw ClusteringError("momentum_every=\(momentumEvery) should be >= 1") }
        if !(decayCap >= 0 && decayCap < 1) { throw ClusteringError("decay_cap=\(decayCap) should be in [0, 1)") }
        if !(flipProbability >= 0 && flipProbability <= 1) { throw ClusteringError("flip_probability=\(flipProbability) should be in [0, 1]") }
        if !(gamma >= 0) { throw ClusteringError("gamma=\(gamma) should be >= 0") }
        if !(adam.learningRate > 0) { throw ClusteringError("learning_rate=\(adam.learningRate) should be > 0") }
        if !(consistencyWeight >= 0 && consistencyWeight.isFinite) { throw ClusteringError("consistency_weight=\(consistencyWeight) should be finite and >= 0") }
    }
}

/// Loss, gradient and class statistics of one M-step (see `PriMaPsEM.lossAndGradient`).
public struct EMLossGradient: Sendable {
    /// Class-weighted cross-entropy averaged over all pixels of the batch (ignored pixels add 0).
    public var loss: Double
    /// Gradient w.r.t. the model's `flatParameters` (`[v..., g...]`).
    public var gradient: [Float]
    /// Gradient w.r.t. the effective weights `W'` `[K, C]`.
    public var effectiveGradient: Matrix
    /// `w_k = (1 - meanSoftmax_k)^gamma` as used (constants in the gradient).
    public var classWeights: [Float]
    /// Mean over all pixels of the batch of the softmax, `[K]`.
    public var meanSoftmax: [Float]
    public var labelledPixels: Int
    public var totalPixels: Int
}

/// Which copy of the prototypes to use.
public enum PrototypeCopy: String, Sendable, Codable, CaseIterable {
    case running, momentum
}

/// Statistics of one EM step.
public struct EMStepStats: Sendable {
    /// The step's number (1-based, after the step).
    public var step: Int
    public var loss: Double
    public var classWeights: [Float]
    public var meanSoftmax: [Float]
    /// Fraction of the batch's pixels that received a pseudo-label.
    public var labelledFraction: Double
    /// Images flipped in this step.
    public var flipped: Int
    /// EMA decay applied after this step, nil when no momentum update happened (0 = copy).
    public var momentumDecay: Double?
    /// The weighted multi-scale consistency term inside `loss` (0 when off or no image had a crop).
    public var consistencyLoss: Double = 0
}

/// PriMaPs-EM building blocks (spec section 2): E-step pseudo-labels and the M-step loss.
///
/// Class weights, following the reference's `FocalLoss`: `mean_cls_conf` is the softmax
/// averaged over ALL pixels of ALL images of the batch (labelled or not), computed on the
/// detached logits, `w_k = (1 - mean_cls_conf_k)^gamma`; the loss is
/// `F.cross_entropy(weight=w, ignore_index, reduction="none").mean()`, i.e.
/// `(1/N) sum_{labelled i} w_{y_i} (-log p_{i, y_i})` with N = all pixels of the batch.
public enum PriMaPsEM {
    /// E-step for one image: argmax of `model`'s logits at label resolution, majority vote per
    /// mask (ties: lowest class), background ignored. Returns `[H*W]` labels, 255 = ignore.
    public static func pseudoLabels(model: PrototypeModel, sample: EMSample) -> [UInt8] {
        let cls = model.predict(features: sample.features, h: sample.height, w: sample.width,
                                H: sample.labelHeight, W: sample.labelWidth)
        return majorityVote(classMap: cls, masks: sample.masks, classCount: model.classCount)
    }

    /// Majority vote of `classMap [H*W]` (values < classCount) inside each mask of `masks [H*W]`
    /// (0 = background). Returns `[H*W]` labels, 255 outside masks. O(H W + 256 K).
    public static func majorityVote(classMap: [UInt8], masks: [UInt8], classCount: Int) -> [UInt8] {
        precondition(classMap.count == masks.count, "majorityVote: class map \(classMap.count) vs masks \(masks.count)")
        precondition(classCount >= 1 && classCount <= 255, "majorityVote: classCount \(classCount) outside 1...255")
        var out = [UInt8](repeating: 255, count: masks.count)
        classMap.withUnsafeBufferPointer { c in
            masks.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    EMKernels.majorityVote(classMap: c.baseAddress!, masks: m.baseAddress!, count: masks.count,
                                           classCount: classCount, out: o.baseAddress!)
                }
            }
        }
        return out
    }

    /// M-step loss and gradient of `model` on `samples` with the given pseudo-labels
    /// (`labels[i]` is `[H_i*W_i]`, 255 = ignore). `classWeights` overrides the batch weights
    /// (tests hold them fixed for finite differences). Parallel over images; the result does
    /// not depend on `threads`.
    public static func lossAndGradient(model: PrototypeModel, samples: [EMSample], labels: [[UInt8]],
                                       gamma: Double = 2, classWeights: [Float]? = nil,
                                       threads: Int = 1) throws -> EMLossGradient {
        if samples.isEmpty { throw ClusteringError("lossAndGradient: the batch is empty; pass at least one image") }
        for (i, s) in samples.enumerated() { try s.validate(channels: model.channelCount, index: i) }
        precondition(labels.count == samples.count, "lossAndGradient: \(labels.count) label maps for \(samples.count) images")
        let k = model.classCount, kp = PaddedLogits.paddedWidth(k)
        let weights = model.effectiveWeights()
        let passes: [EMKernels.ImagePass?] = LocalExecutor(threads: threads).mapLocal(samples.count) { i in
            let s = samples[i]
            precondition(labels[i].count == s.labelHeight * s.labelWidth, "labels of image \(i) have \(labels[i].count) values")
            let table = ResampleTable(BilinearResampler(sourceHeight: s.height, sourceWidth: s.width,
                                                        targetHeight: s.labelHeight, targetWidth: s.labelWidth))
            let low = PaddedLogits.compute(features: s.features, weights: weights, paddedWidth: kp)
            return low.withUnsafeBufferPointer { lp in
                labels[i].withUnsafeBufferPointer { lb in
                    EMKernels.mStepPass(low: lp.baseAddress!, table: table, kp: kp, classCount: k, labels: lb.baseAddress!)
                }
            }
        }
        return try finish(model: model, samples: samples, passes: passes, flipped: [Bool](repeating: false, count: samples.count),
                          gamma: gamma, classWeights: classWeights, executor: LocalExecutor(threads: threads))
    }

    /// Phase 2: the ordered reduction of the phase-1 contributions (softmax sums, pixel counts,
    /// per-label NLL sums, in image order) gives the batch class weights; then per-image
    /// low-resolution gradients `G^T F` (per-image work again), reduced in image order, chained
    /// through the weight normalisation.
    static func finish(model: PrototypeModel, samples: [EMSample], passes: [EMKernels.ImagePass?], flipped: [Bool],
                       gamma: Double, classWeights: [Float]?, executor: any ImageExecutor) throws -> EMLossGradient {
        let k = model.classCount, c = model.channelCount, kp = PaddedLogits.paddedWidth(k)
        // The passes' statistics travel; their gradient slots stay with the process that made them.
        let stats: [EMKernels.PassStats] = try executor.map(samples.count) { i in EMKernels.PassStats(passes[i]!) }
        var softSum = [Double](repeating: 0, count: k)
        var total = 0, labelled = 0
        for p in stats {
            for j in 0..<k { softSum[j] += p.softmaxSum[j] }
            total += p.pixels; labelled += p.labelled
        }
        let meanSoft = softSum.map { $0 / Double(total) }
        let w: [Float] = classWeights ?? meanSoft.map { Float(LibM.pow(max(0, 1 - $0), gamma)) }
        precondition(w.count == k, "class weights: \(w.count) for \(k) classes")
        var loss = 0.0
        for p in stats { for (si, lab) in p.slotLabels.enumerated() { loss += Double(w[lab]) * p.nllSum[si] } }
        loss /= Double(total)
        let scale = Float(1 / Double(total))
        let perImage: [[Float]] = try executor.map(samples.count) { i in
            let s = samples[i]
            let hw = s.height * s.width
            var g = EMKernels.combineSlots(passes[i]!, weights: w, scale: scale, cells: hw, kp: kp)
            if flipped[i] { g = EMKernels.flipRows(g, h: s.height, w: s.width, c: kp) }
            var out = [Float](repeating: 0, count: k * c)
            g.withUnsafeBufferPointer { gp in
                (s.mStepFeatures ?? s.features).data.withUnsafeBufferPointer { f in
                    out.withUnsafeMutableBufferPointer { o in
                        BLAS.sgemm(transA: true, transB: false, m: k, n: c, k: hw, alpha: 1,
                                   a: gp.baseAddress!, lda: kp, b: f.baseAddress!, ldb: c,
                                   beta: 0, c: o.baseAddress!, ldc: c)
                    }
                }
            }
            return out
        }
        var eff = Matrix(rows: k, cols: c)
        eff.data.withUnsafeMutableBufferPointer { e in
            for part in perImage {
                part.withUnsafeBufferPointer { p in for j in 0..<(k * c) { e[j] += p[j] } }
            }
        }
        return EMLossGradient(loss: loss, gradient: model.chainGradient(effectiveGradient: eff), effectiveGradient: eff,
                              classWeights: w, meanSoftmax: meanSoft.map { Float($0) },
                              labelledPixels: labelled, totalPixels: total)
    }
}

/// Everything needed to resume PriMaPs-EM bit-exactly, as plain arrays and scalars
/// (the lead writes it to HDF5). Restore with `EMTrainer(state:config:)`.
public struct EMTrainerState: Sendable, Equatable {
    public var running: PrototypeModel
    public var momentum: PrototypeModel
    public var adam: AdamState
    /// Steps done.
    public var step: Int
    /// Epoch counter (managed by the caller through `EMTrainer.epoch`).
    public var epoch: Int
    /// Momentum updates done (n of the last update).
    public var momentumUpdates: Int
    /// The four xoshiro256** words of the trainer's generator.
    public var rngState: [UInt64]
    /// Loss of every step so far.
    public var lossHistory: [Double]

    public init(running: PrototypeModel, momentum: PrototypeModel, adam: AdamState, step: Int, epoch: Int,
                momentumUpdates: Int, rngState: [UInt64], lossHistory: [Double]) {
        self.running = running; self.momentum = momentum; self.adam = adam; self.step = step; self.epoch = epoch
        self.momentumUpdates = momentumUpdates; self.rngState = rngState; self.lossHistory = lossHistory
    }
}

/// PriMaPs-EM trainer: running prototypes trained by Adam on mask-voted pseudo-labels of the
/// momentum prototypes, which follow the running ones by an EMA every `momentumEvery` steps.
///
/// Deterministic: a step's flips come from a per-step generator drawn from the trainer's
/// generator, per-image work writes to per-image slots, and reductions run in image order, so
/// results are bit-identical for any `config.threads`. BLAS runs single-threaded inside `step`.
///
/// The M-step uses the sample's `mStepFeatures` (an augmented view) when given, else the same
/// clean features as the E-step. With clean features a horizontal flip is mathematically a no-op
/// (bilinear upsampling with `align_corners=False` commutes with the flip, and the loss is a
/// sum over pixels); it is kept for fidelity and only changes the summation order.
///
/// Momentum schedule: the reference's (`updatesMomentum`, `momentumDecay`): after steps
/// 1 + every, 1 + 2 every, ... the n-th update sets `theta_M = d theta_M + (1 - d) theta_R` on `v`
/// and `g`, with `d = 0` (a copy) for n = 1, 2 and `min(1 - 1/n, decayCap)` from n = 3 on.
public struct EMTrainer: Sendable {
    public let config: EMConfig
    /// The prototypes trained by gradient.
    public private(set) var running: PrototypeModel
    /// The EMA prototypes: produce the pseudo-labels and are the result.
    public private(set) var momentum: PrototypeModel
    public private(set) var adam: AdamState
    /// Steps done so far.
    public private(set) var stepCount: Int = 0
    /// Epoch counter for the caller's bookkeeping (saved in the state).
    public var epoch: Int = 0
    /// Momentum updates done so far.
    public private(set) var momentumUpdates: Int = 0
    public private(set) var lossHistory: [Double] = []
    var rng: SeededRandom

    /// Starts from `initial` (both copies; normally the cosine k-means warm-up result).
    /// Throws on an invalid config or an empty model.
    public init(initial: PrototypeModel, config: EMConfig) throws {
        try config.validate()
        if initial.classCount < 1 || initial.classCount > 255 || initial.channelCount < 1 {
            throw ClusteringError("prototypes are [\(initial.classCount), \(initial.channelCount)]; need 1...255 classes and >= 1 channel")
        }
        self.config = config
        running = initial
        momentum = initial
        adam = AdamState(count: initial.parameterCount)
        rng = SeededRandom(seed: config.seed)
    }

    /// Restores a trainer from a saved state (bit-exact continuation).
    public init(state: EMTrainerState, config: EMConfig) throws {
        try config.validate()
        let r = state.running, m = state.momentum
        if r.classCount != m.classCount || r.channelCount != m.channelCount {
            throw ClusteringError("saved state: running prototypes [\(r.classCount), \(r.channelCount)] and momentum [\(m.classCount), \(m.channelCount)] differ")
        }
        if state.adam.m.count != r.parameterCount || state.adam.v.count != r.parameterCount {
            throw ClusteringError("saved state: Adam moments have \(state.adam.m.count)/\(state.adam.v.count) entries, the prototypes \(r.parameterCount)")
        }
        if state.rngState.count != 4 {
            throw ClusteringError("saved state: generator state has \(state.rngState.count) words, needs 4")
        }
        self.config = config
        running = r; momentum = m; adam = state.adam
        stepCount = state.step; epoch = state.epoch; momentumUpdates = state.momentumUpdates
        lossHistory = state.lossHistory
        let s = state.rngState
        rng = SeededRandom(state: (s[0], s[1], s[2], s[3]))
    }

    /// A snapshot of everything needed to resume.
    public var state: EMTrainerState {
        let s = rng.state
        return EMTrainerState(running: running, momentum: momentum, adam: adam, step: stepCount, epoch: epoch,
                              momentumUpdates: momentumUpdates, rngState: [s.0, s.1, s.2, s.3], lossHistory: lossHistory)
    }

    /// A random order of `count` items from the trainer's generator (so it is checkpointed).
    public mutating func epochOrder(count: Int) -> [Int] { rng.permutation(count) }

    /// The EMA decay of the n-th momentum update (n >= 1), as the reference's EMA module
    /// (`ema.py`, `update_after_step=0`, `update_every=1`) gives it: the first two updates copy
    /// (the second copies on initialisation, then lerps between equal values), update n >= 3 uses
    /// `min(1 - 1/n, cap)`.
    public static func momentumDecay(update n: Int, cap: Double) -> Double {
        n <= 2 ? 0 : min(1 - 1 / Double(n), cap)
    }

    /// Whether the momentum copy is updated after the `step`-th step (1-based), as the reference:
    /// its check `global_step > 0 and global_step % every == 0` sees the steps done before the
    /// current one (`global_step = step - 1`), so with `every = 10` the updates come after steps
    /// 11, 21, 31, ...
    public static func updatesMomentum(afterStep step: Int, every: Int) -> Bool {
        let done = step - 1
        return done > 0 && done % every == 0
    }

    /// One EM step on `batch`: flip, E-step with the momentum copy, weighted cross-entropy
    /// M-step on the running copy, Adam update, and the EMA update on the reference's schedule.
    ///
    /// Cost per image: two `[h*w, C] x [C, K]` gemms, the fused upsample/argmax and
    /// upsample/softmax/adjoint passes over `H W K` values, one `[K, h*w] x [h*w, C]` gemm.
    /// Memory per image until the batch weights are known: `4 h w K' L` bytes (L = distinct
    /// pseudo-labels in the image, K' = K rounded up to 4), 1.8 MB at 40x40, K = 27, L = 9.
    /// Measured (release, baseline x86-64 SSE2 build, 40x40x384 -> 320x320, K = 27): about
    /// 94 images/s on one thread; the exp of the softmax is about a quarter of the time.
    /// Throws (without changing the trainer) on an empty batch or shape mismatches.
    public mutating func step(batch: [EMSample], executor: (any ImageExecutor)? = nil) throws -> EMStepStats {
        if batch.isEmpty { throw ClusteringError("EM step: the batch is empty; pass at least one image") }
        let run = executor ?? LocalExecutor(threads: config.threads)
        for (i, s) in batch.enumerated() where run.holds(i, of: batch.count) { try s.validate(channels: running.channelCount, index: i) }

        let stepSeed = rng.next()
        let k = running.classCount, kp = PaddedLogits.paddedWidth(k)
        let wM = momentum.effectiveWeights(), wR = running.effectiveWeights()
        let wMR = PaddedLogits.stack(wM, wR)
        let flipP = config.flipProbability
        let flips: [Bool] = (0..<batch.count).map { i in
            var r = SeededRandom.stream(seed: stepSeed, index: UInt64(i))
            return r.bernoulli(flipP)
        }
        let passes: [EMKernels.ImagePass?] = run.mapLocal(batch.count) { i in
            let s = batch[i]
            let h = s.height, w = s.width, H = s.labelHeight, W = s.labelWidth
            var feats = s.features
            var masks = s.masks
            if flips[i] {
                feats = Matrix(rows: h * w, cols: feats.cols, data: EMKernels.flipRows(feats.data, h: h, w: w, c: feats.cols))
                masks = EMKernels.flipBytes(masks, h: H, w: W)
            }
            let table = ResampleTable(BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: H, targetWidth: W))
            // Both copies' logits from one product, unless the M-step sees another view.
            let pair = s.mStepFeatures == nil ? PaddedLogits.computePair(features: feats, stacked: wMR, paddedWidth: kp) : nil
            var low = pair?.first ?? PaddedLogits.compute(features: feats, weights: wM, paddedWidth: kp)
            var cls = [UInt8](repeating: 0, count: H * W)
            var labels = [UInt8](repeating: 255, count: H * W)
            let rowScratch = UnsafeMutablePointer<Float>.allocate(capacity: w * kp)
            let pixel = UnsafeMutablePointer<Float>.allocate(capacity: kp)
            defer { rowScratch.deallocate(); pixel.deallocate() }
            low.withUnsafeBufferPointer { lp in
                cls.withUnsafeMutableBufferPointer { cp in
                    masks.withUnsafeBufferPointer { mp in   // background pixels: no vote, no argmax
                        EMKernels.argmaxUpsampled(low: lp.baseAddress!, table: table, kp: kp, rowScratch: rowScratch,
                                                  pixel: pixel, out: cp.baseAddress!, masks: mp.baseAddress!)
                    }
                }
            }
            cls.withUnsafeBufferPointer { c in
                masks.withUnsafeBufferPointer { m in
                    labels.withUnsafeMutableBufferPointer { o in
                        EMKernels.majorityVote(classMap: c.baseAddress!, masks: m.baseAddress!, count: H * W,
                                               classCount: k, out: o.baseAddress!)
                    }
                }
            }
            if var view = s.mStepFeatures {
                if flips[i] { view = Matrix(rows: h * w, cols: view.cols, data: EMKernels.flipRows(view.data, h: h, w: w, c: view.cols)) }
                PaddedLogits.computeInto(features: view, weights: wR, paddedWidth: kp, out: &low)
            } else {
                low = pair!.second
            }
            return low.withUnsafeBufferPointer { lp in
                labels.withUnsafeBufferPointer { lb in
                    EMKernels.mStepPass(low: lp.baseAddress!, table: table, kp: kp, classCount: k, labels: lb.baseAddress!)
                }
            }
        }
        let lg = try PriMaPsEM.finish(model: running, samples: batch, passes: passes, flipped: flips,
                                  gamma: config.gamma, classWeights: nil, executor: run)
        var grads = lg.gradient
        var consistency = 0.0
        if config.consistencyWeight > 0 {
            // On the unflipped image and crop (a flip of both changes nothing but the summation order).
            let mc = try MultiScaleConsistency.lossAndGradient(
                student: running, teacher: config.consistencyTeacher == .momentum ? momentum : running, samples: batch,
                weight: config.consistencyWeight, target: config.consistencyTarget, executor: run)
            consistency = mc.loss
            for j in 0..<grads.count { grads[j] += mc.gradient[j] }
        }
        var params = running.flatParameters
        Adam.update(params: &params, grads: grads, state: &adam, config: config.adam)
        running.flatParameters = params
        stepCount += 1
        lossHistory.append(lg.loss + consistency)
        var decay: Double? = nil
        if EMTrainer.updatesMomentum(afterStep: stepCount, every: config.momentumEvery) {
            momentumUpdates += 1
            let d = EMTrainer.momentumDecay(update: momentumUpdates, cap: config.decayCap)
            decay = d
            if d == 0 {
                momentum = running
            } else {
                let df = Float(d), rf = Float(1 - d)
                var mp = momentum.flatParameters
                let rp = running.flatParameters
                for j in 0..<mp.count { mp[j] = df * mp[j] + rf * rp[j] }
                momentum.flatParameters = mp
            }
        }
        return EMStepStats(step: stepCount, loss: lg.loss + consistency, classWeights: lg.classWeights, meanSoftmax: lg.meanSoftmax,
                           labelledFraction: Double(lg.labelledPixels) / Double(lg.totalPixels),
                           flipped: flips.filter { $0 }.count, momentumDecay: decay, consistencyLoss: consistency)
    }

    /// Per-pixel class at label resolution `[H*W]` from the chosen copy (argmax, first on ties).
    public func predict(features: Matrix, h: Int, w: Int, H: Int, W: Int, copy: PrototypeCopy = .momentum) -> [UInt8] {
        (copy == .momentum ? momentum : running).predict(features: features, h: h, w: w, H: H, W: W)
    }
}

