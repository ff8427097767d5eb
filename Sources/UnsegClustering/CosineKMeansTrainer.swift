import UnsegCore
import UnsegLinAlg

/// Settings of the cosine k-means warm-up (reference: Adam lr 5e-3, 2 epochs).
public struct CosineKMeansConfig: Sendable, Equatable, Codable {
    public var adam = AdamConfig()
    /// Worker threads over the images of a batch (results do not depend on it).
    public var threads: Int = 1
    /// Seed of the trainer's generator (used by `epochOrder`).
    public var seed: UInt64 = 0
    public init(adam: AdamConfig = AdamConfig(), threads: Int = 1, seed: UInt64 = 0) {
        self.adam = adam; self.threads = threads; self.seed = seed
    }
}

/// Statistics of one warm-up step.
public struct CosineKMeansStepStats: Sendable {
    public var step: Int
    /// Minus the mean cosine of each cell to its nearest prototype.
    public var loss: Double
    /// Cells assigned to each prototype in this batch, `[K]`.
    public var counts: [Int]
}

/// Everything needed to resume the warm-up bit-exactly, as plain arrays and scalars.
public struct CosineKMeansTrainerState: Sendable, Equatable {
    /// Prototypes (gains are 1 throughout the warm-up).
    public var model: PrototypeModel
    /// Adam state over the `K C` direction entries.
    public var adam: AdamState
    public var step: Int
    public var epoch: Int
    public var rngState: [UInt64]
    public var lossHistory: [Double]
    public init(model: PrototypeModel, adam: AdamState, step: Int, epoch: Int, rngState: [UInt64], lossHistory: [Double]) {
        self.model = model; self.adam = adam; self.step = step; self.epoch = epoch
        self.rngState = rngState; self.lossHistory = lossHistory
    }
}

/// One image's contribution to a cosine k-means step.
public struct CosineKMeansPart: Sendable, WireCodable {
    /// Sum over the image's cells of the cosine to the nearest prototype.
    public var cosSum: Double
    /// `[K, C]` sums of the normalised features assigned to each prototype.
    public var sums: [Float]
    /// `[K]` cells assigned to each prototype.
    public var counts: [Int]
    public init(cosSum: Double, sums: [Float], counts: [Int]) { self.cosSum = cosSum; self.sums = sums; self.counts = counts }
    public func encode(into w: inout WireWriter) { w.put(cosSum); w.put(sums); w.put(counts) }
    public init(wire r: inout WireReader) throws { cosSum = try r.double(); sums = try r.floats(); counts = try r.ints() }
}

/// Cosine k-means warm-up of the prototypes (the paper's "Baseline" when run longer).
///
/// Features and prototypes L2-normalised (eps 1e-12); loss = minus the mean over all cells of
/// the batch (feature resolution, as the reference's "baseline" state) of the cosine to the
/// nearest prototype (argmax, first on ties; assignments are constants). Only the directions
/// `v` are trained (Adam); gains stay 1, as the reference resets `weight_g` to ones.
/// Gradient: `dL/du_k = -(1/N) sum_{i in k} x_i / |x_i|`, chained through `u_k = v_k / |v_k|`.
public struct CosineKMeansTrainer: Sendable {
    public let config: CosineKMeansConfig
    public private(set) var model: PrototypeModel
    public private(set) var adam: AdamState
    public private(set) var stepCount = 0
    public var epoch = 0
    public private(set) var lossHistory: [Double] = []
    var rng: SeededRandom

    /// Starts from `initial` (e.g. `CosineKMeansTrainer.pcaInitialisation`); gains are set to 1.
    public init(initial: PrototypeModel, config: CosineKMeansConfig = CosineKMeansConfig()) throws {
        if initial.classCount < 1 || initial.classCount > 255 || initial.channelCount < 1 {
            throw ClusteringError("prototypes are [\(initial.classCount), \(initial.channelCount)]; need 1...255 classes and >= 1 channel")
        }
        if !(config.adam.learningRate > 0) { throw ClusteringError("learning_rate=\(config.adam.learningRate) should be > 0") }
        self.config = config
        model = PrototypeModel(directions: initial.directions)
        adam = AdamState(count: initial.classCount * initial.channelCount)
        rng = SeededRandom(seed: config.seed)
    }

    /// Restores a trainer from a saved state.
    public init(state: CosineKMeansTrainerState, config: CosineKMeansConfig = CosineKMeansConfig()) throws {
        let kc = state.model.classCount * state.model.channelCount
        if state.adam.m.count != kc || state.adam.v.count != kc {
            throw ClusteringError("saved warm-up state: Adam moments have \(state.adam.m.count)/\(state.adam.v.count) entries, the prototypes \(kc)")
        }
        if state.rngState.count != 4 { throw ClusteringError("saved warm-up state: generator state has \(state.rngState.count) words, needs 4") }
        self.config = config
        model = state.model; adam = state.adam; stepCount = state.step; epoch = state.epoch
        lossHistory = state.lossHistory
        let s = state.rngState
        rng = SeededRandom(state: (s[0], s[1], s[2], s[3]))
    }

    public var state: CosineKMeansTrainerState {
        let s = rng.state
        return CosineKMeansTrainerState(model: model, adam: adam, step: stepCount, epoch: epoch,
                                        rngState: [s.0, s.1, s.2, s.3], lossHistory: lossHistory)
    }

    /// Prototypes from a PCA: the first K principal directions as `v_k`, `g_k = 1` (spec's init step 1).
    public static func pcaInitialisation(_ pca: PCA) -> PrototypeModel {
        PrototypeModel(directions: pca.components)
    }

    /// A random order of `count` items from the trainer's generator (checkpointed with the state).
    public mutating func epochOrder(count: Int) -> [Int] { rng.permutation(count) }

    /// The ordered reduction of a step: contributions summed in image order (so the result does
    /// not depend on where the per-image work ran). Returns the `[K, C]` sums, the counts, the
    /// cell total and the cosine sum.
    public static func reduce(_ parts: [CosineKMeansPart], classes k: Int, channels c: Int) -> (Matrix, [Int], Int, Double) {
        var total = 0, cosSum = 0.0
        var counts = [Int](repeating: 0, count: k)
        var g = Matrix(rows: k, cols: c)
        for p in parts {
            cosSum += p.cosSum
            for j in 0..<k { counts[j] += p.counts[j]; total += p.counts[j] }
            for j in 0..<(k * c) { g.data[j] += p.sums[j] }
        }
        return (g, counts, total, cosSum)
    }

    /// One Adam step on a batch of images' features (`[h*w, C]` each, any cell counts).
    /// O(cells C K) (one gemm per image). Throws on an empty batch or channel mismatch.
    public mutating func step(batch: [Matrix], executor: (any ImageExecutor)? = nil) throws -> CosineKMeansStepStats {
        if batch.isEmpty { throw ClusteringError("warm-up step: the batch is empty; pass at least one image") }
        let k = model.classCount, c = model.channelCount
        let run = executor ?? LocalExecutor(threads: config.threads)
        for (i, f) in batch.enumerated() where f.cols != c && run.holds(i, of: batch.count) {
            throw ClusteringError("image \(i): features have \(f.cols) channels but the prototypes have \(c); use prototypes from the same backbone")
        }
        let u = model.directions.rowNormalized()
        // Per-image work: nearest prototype of every cell, the cosine sum, per-prototype sums of
        // the normalised features and counts.
        let parts: [CosineKMeansPart] = try run.map(batch.count) { i in
            let xn = batch[i].rowNormalized()
            let n = xn.rows
            let s = BLAS.matmul(xn, u, transB: true)
            var sums = [Float](repeating: 0, count: k * c)
            var counts = [Int](repeating: 0, count: k)
            var cosSum = 0.0
            xn.data.withUnsafeBufferPointer { xp in
                s.data.withUnsafeBufferPointer { sp in
                    sums.withUnsafeMutableBufferPointer { acc in
                        for r in 0..<n {
                            let best = Reduce.argmax(sp.baseAddress! + r * k, k)
                            cosSum += Double(sp[r * k + best])
                            counts[best] += 1
                            let dst = acc.baseAddress! + best * c, src = xp.baseAddress! + r * c
                            var j = 0
                            while j + 8 <= c { store8(load8(dst + j) + load8(src + j), dst + j); j += 8 }
                            while j < c { dst[j] += src[j]; j += 1 }
                        }
                    }
                }
            }
            return CosineKMeansPart(cosSum: cosSum, sums: sums, counts: counts)
        }
        let (g0, counts, total, cosSum) = Self.reduce(parts, classes: k, channels: c)
        var g = g0
        if total == 0 { throw ClusteringError("warm-up step: the batch has no feature cells") }
        let scale = -1 / Float(total)
        for j in 0..<(k * c) { g.data[j] *= scale }
        let full = model.chainGradient(effectiveGradient: g)
        var params = model.directions.data
        Adam.update(params: &params, grads: Array(full[0..<(k * c)]), state: &adam, config: config.adam)
        model.directions.data = params
        stepCount += 1
        let loss = -cosSum / Double(total)
        lossHistory.append(loss)
        return CosineKMeansStepStats(step: stepCount, loss: loss, counts: counts)
    }
}
