import UnsegCore
import UnsegLinAlg

/// Optimiser of the contrastive head.
public enum HeadOptimizer: String, Sendable, CaseIterable, Equatable, Codable {
    /// SGD with momentum (PyTorch's: no dampening, no Nesterov), L2 weight decay, poly schedule.
    case sgd
    /// Adam (PyTorch's), L2 weight decay added to the gradient, poly schedule.
    case adam
}

/// Settings of the MaskContrast-style head training.
public struct MaskContrastConfig: Sendable, Equatable {
    public var head: HeadKind = .mlp
    /// Hidden width of the MLP head.
    public var hidden: Int = 256
    /// Embedding dimension D.
    public var dim: Int = 32
    /// Softmax temperature T of the logits `q . p / T`.
    public var temperature: Float = 0.5
    /// Prototypes kept as extra negatives (FIFO).
    public var queueSize: Int = 256
    /// Momentum m of the key head `key = m key + (1 - m) query`.
    public var keyMomentum: Float = 0.999
    /// Class-balancing weights `1 / log(1.02 + share of cells)` over the targets.
    public var classBalance: Bool = true
    public var optimizer: HeadOptimizer = .sgd
    public var learningRate: Float = 0.1
    /// SGD momentum.
    public var sgdMomentum: Float = 0.9
    public var weightDecay: Float = 1e-4
    /// Poly schedule, set per epoch as the reference does: `lr (1 - epoch / epochs)^power`
    /// (power 0: constant).
    public var polyPower: Double = 0.9
    /// Epochs of the stage (for the schedule).
    public var epochs: Int = 1
    /// Seed of the head's initialisation.
    public var seed: UInt64 = 0
    public var threads: Int = 1
    public init() {}
}

/// One image of a contrastive step, at feature resolution.
public struct MaskContrastSample: Sendable {
    /// Features of the query view `[n, C]`.
    public var query: Matrix
    /// Features of the key view `[n, C]` (flipped back, or an augmented view; the same cells).
    public var key: Matrix
    /// Mask id per cell `[n]`, 0 = background (ignored).
    public var masks: [UInt8]
    public init(query: Matrix, key: Matrix, masks: [UInt8]) {
        self.query = query; self.key = key; self.masks = masks
    }
}

/// The prototypes of one step: the batch's masks (image order, ascending mask id) and the queue.
public struct ContrastiveKeys: Sendable {
    /// `[J, D]`: the batch's prototypes first (`batchCount` rows), then the queue's entries.
    public var keys: Matrix
    public var batchCount: Int
    /// Per image: the mask id -> row of `keys` (-1: no such mask), 256 entries each.
    public var rowOfMask: [[Int32]]
    /// Cells of each batch prototype's mask `[batchCount]`.
    public var counts: [Int]
}

/// One image's prototypes (`[m, D]`), their mask ids and cell counts.
struct KeyPart: Sendable, WireCodable {
    var protos: [Float]
    var ids: [UInt8]
    var counts: [Int]
    init(protos: [Float], ids: [UInt8], counts: [Int]) { self.protos = protos; self.ids = ids; self.counts = counts }
    func encode(into w: inout WireWriter) { w.put(protos); w.put(ids); w.put(counts) }
    init(wire r: inout WireReader) throws { protos = try r.floats(); ids = try r.bytes(); counts = try r.ints() }
}

/// One image's weighted loss and head gradient.
struct LossPart: Sendable, WireCodable {
    var loss: Double
    var grads: [Float]
    init(loss: Double, grads: [Float]) { self.loss = loss; self.grads = grads }
    func encode(into w: inout WireWriter) { w.put(loss); w.put(grads) }
    init(wire r: inout WireReader) throws { loss = try r.double(); grads = try r.floats() }
}

/// A FIFO of recent prototypes (a ring buffer of `capacity` rows of D).
public struct PrototypeQueue: Sendable, Equatable {
    public var entries: Matrix
    /// The row the next prototype goes to.
    public var pointer: Int
    /// Rows holding prototypes (`capacity` once full).
    public var filled: Int
    public var capacity: Int { entries.rows }

    public init(capacity: Int, dim: Int) {
        entries = Matrix(rows: capacity, cols: dim)
        pointer = 0
        filled = 0
    }

    public init(entries: Matrix, pointer: Int, filled: Int) throws {
        guard pointer >= 0, pointer < max(entries.rows, 1), filled >= 0, filled <= entries.rows else {
            throw ClusteringError("saved queue: pointer \(pointer), filled \(filled) for \(entries.rows) rows; the checkpoint is damaged")
        }
        self.entries = entries; self.pointer = pointer; self.filled = filled
    }

    /// The filled rows (their order does not matter to the loss; it is fixed, so bits are).
    public var current: Matrix { entries.rows(0..<filled) }

    /// Appends rows in order, overwriting the oldest once full.
    public mutating func enqueue(_ rows: Matrix) {
        let cap = capacity, d = entries.cols
        guard cap > 0 else { return }
        precondition(rows.cols == d, "queue: prototypes of \(rows.cols) dims, queue of \(d)")
        for i in 0..<rows.rows {
            for j in 0..<d { entries.data[pointer * d + j] = rows.data[i * d + j] }
            pointer = (pointer + 1) % cap
            filled = min(filled + 1, cap)
        }
    }
}

/// Statistics of one contrastive step.
public struct MaskContrastStepStats: Sendable {
    public var step: Int
    /// Weighted cross-entropy of the batch (0 when the batch has no masks).
    public var loss: Double
    /// Prototypes of the batch (masks) and cells that took part.
    public var prototypes: Int
    public var cells: Int
    public var learningRate: Float
}

/// Everything needed to resume the head training bit-exactly.
public struct MaskContrastTrainerState: Sendable, Equatable {
    public var query: ProjectionHead
    public var key: ProjectionHead
    /// SGD velocity or Adam's first moment (per parameter).
    public var optimizer: AdamState
    public var queue: PrototypeQueue
    public var step: Int
    public var epoch: Int
    public var lossHistory: [Double]
    public init(query: ProjectionHead, key: ProjectionHead, optimizer: AdamState, queue: PrototypeQueue, step: Int, epoch: Int, lossHistory: [Double]) {
        self.query = query; self.key = key; self.optimizer = optimizer; self.queue = queue
        self.step = step; self.epoch = epoch; self.lossHistory = lossHistory
    }
}

/// MaskContrast-style training of a projection head over frozen features (Van Gansbeke et al.,
/// ICCV 2021, with the backbone frozen and several proposal masks per image).
///
/// A step: (1) the key head moves towards the query head (`m = 0.999`); (2) per image, the key
/// head embeds the key view and every mask's prototype is `normalize(sum of its key embeddings)`;
/// (3) per image, every query cell inside a mask scores all prototypes of the batch and the
/// queue, `logits = q . p / T`, positive = its own mask's prototype; the loss is the
/// cross-entropy weighted per target `w_t = 1 / log(1.02 + share of cells of t)`, normalised by
/// the sum of the weights (PyTorch's `cross_entropy(weight=)`); (4) the query head's gradient,
/// summed over images in image order, goes to the optimiser; (5) the batch's prototypes enter
/// the queue. Per-image work runs on the executor; every reduction is in image order, so the
/// bits do not depend on threads or processes.
public struct MaskContrastTrainer: Sendable {
    public let config: MaskContrastConfig
    public private(set) var query: ProjectionHead
    public private(set) var key: ProjectionHead
    public private(set) var optimizer: AdamState
    public private(set) var queue: PrototypeQueue
    public private(set) var stepCount = 0
    public var epoch = 0
    public private(set) var lossHistory: [Double] = []

    /// A fresh head (seeded) and its key copy, an empty queue.
    public init(inputChannels c: Int, config: MaskContrastConfig) throws {
        try Self.check(config)
        self.config = config
        query = ProjectionHead(kind: config.head, inputChannels: c, hidden: config.hidden, outputDim: config.dim, seed: config.seed)
        key = query
        optimizer = AdamState(count: query.parameterCount)
        queue = PrototypeQueue(capacity: config.queueSize, dim: query.outputDim)
    }

    public init(state s: MaskContrastTrainerState, config: MaskContrastConfig) throws {
        try Self.check(config)
        guard s.key.parameterCount == s.query.parameterCount, s.key.outputDim == s.query.outputDim,
              s.optimizer.m.count == s.query.parameterCount, s.queue.entries.cols == s.query.outputDim,
              s.queue.capacity == config.queueSize, s.query.kind == config.head, s.query.outputDim == config.dim || config.head == .identity,
              s.query.hidden == (config.head == .mlp ? config.hidden : 0)
        else {
            throw ClusteringError("saved head state does not match the recipe (head \(s.query.kind.rawValue) [\(s.query.inputChannels) -> \(s.query.outputDim)], \(s.optimizer.m.count) optimiser entries, queue \(s.queue.capacity)x\(s.queue.entries.cols)); resume with the recipe that wrote it")
        }
        self.config = config
        query = s.query; key = s.key; optimizer = s.optimizer; queue = s.queue
        stepCount = s.step; epoch = s.epoch; lossHistory = s.lossHistory
    }

    static func check(_ c: MaskContrastConfig) throws {
        guard c.head != .identity else { throw ClusteringError("maskcontrast.head: identity has nothing to train; use linear or mlp (segment-kmeans alone clusters with the identity head)") }
        guard c.temperature > 0, c.learningRate > 0, c.queueSize >= 0, c.keyMomentum >= 0, c.keyMomentum <= 1 else {
            throw ClusteringError("maskcontrast: temperature \(c.temperature), learning rate \(c.learningRate), queue \(c.queueSize), key momentum \(c.keyMomentum) out of range")
        }
    }

    public var state: MaskContrastTrainerState {
        MaskContrastTrainerState(query: query, key: key, optimizer: optimizer, queue: queue, step: stepCount, epoch: epoch, lossHistory: lossHistory)
    }

    /// Learning rate of the steps of `epoch` (0-based): `lr (1 - epoch / epochs)^power`.
    public func learningRate(epoch e: Int) -> Float {
        let t = min(Double(e) / Double(max(config.epochs, 1)), 1)
        return config.polyPower == 0 ? config.learningRate : Float(Double(config.learningRate) * LibM.pow(1 - t, config.polyPower))
    }

    // MARK: the parts of a step (public so tests can check each against hand-computed values)

    /// Every mask's prototype from the key head: per image (on the executor), then concatenated in
    /// image order with the queue's entries after them.
    public static func keys(head: ProjectionHead, batch: [MaskContrastSample], queue: PrototypeQueue,
                            executor: any ImageExecutor) throws -> ContrastiveKeys {
        let d = head.outputDim
        let parts: [KeyPart] = try executor.map(batch.count) { i in
            let s = batch[i]
            let ms = MaskSlots(s.masks)
            if ms.cells.isEmpty { return KeyPart(protos: [], ids: [], counts: []) }
            let e = head.embed(s.key.gatherRows(ms.cells))
            var sums = [Float](repeating: 0, count: ms.ids.count * d)
            for (r, c) in ms.cells.enumerated() {
                let k = ms.slot[Int(s.masks[c])]
                for j in 0..<d { sums[k * d + j] += e.data[r * d + j] }
            }
            var m = Matrix(rows: ms.ids.count, cols: d, data: sums)
            m.normalizeRows(eps: 1e-12)
            return KeyPart(protos: m.data, ids: ms.ids, counts: ms.counts)
        }
        var data: [Float] = []
        var rowOfMask: [[Int32]] = []
        var counts: [Int] = []
        for p in parts {
            var table = [Int32](repeating: -1, count: 256)
            for (k, id) in p.ids.enumerated() { table[Int(id)] = Int32(counts.count + k) }
            rowOfMask.append(table)
            data += p.protos
            counts += p.counts
        }
        let b = counts.count
        data += queue.current.data
        return ContrastiveKeys(keys: Matrix(rows: b + queue.filled, cols: d, data: data), batchCount: b,
                               rowOfMask: rowOfMask, counts: counts)
    }

    /// Per-target weights `w_t / sum_i w_{t_i}` (`w_t = 1 / log(1.02 + share_t)`, or 1 without balancing).
    public static func targetWeights(counts: [Int], balance: Bool) -> [Double] {
        let total = Double(counts.reduce(0, +))
        guard total > 0 else { return counts.map { _ in 0 } }
        let w = counts.map { balance ? 1 / LibM.log(1.02 + Double($0) / total) : 1 }
        let z = zip(counts, w).reduce(0.0) { $0 + Double($1.0) * $1.1 }
        return w.map { $0 / z }
    }

    /// The weighted loss of `head` on the batch against `keys`, and its gradient w.r.t. the head's
    /// parameters (summed over images in image order). O(cells (C H + H D + J D)).
    public static func lossAndGradient(head: ProjectionHead, batch: [MaskContrastSample], keys: ContrastiveKeys,
                                       temperature: Float, balance: Bool, executor: any ImageExecutor) throws -> (loss: Double, grads: [Float]) {
        let weights = targetWeights(counts: keys.counts, balance: balance).map { Float($0) }
        let wd = weights.map { Double($0) }
        let jn = keys.keys.rows, d = head.outputDim
        let invT = 1 / temperature
        let parts: [LossPart] = try executor.map(batch.count) { i in
            let s = batch[i]
            let table = keys.rowOfMask[i]
            var cells: [Int] = [], targets: [Int] = []
            for (c, m) in s.masks.enumerated() where m != 0 && table[Int(m)] >= 0 { cells.append(c); targets.append(Int(table[Int(m)])) }
            if cells.isEmpty || jn == 0 { return LossPart(loss: 0, grads: [Float](repeating: 0, count: head.parameterCount)) }
            let f = s.query.gatherRows(cells)
            let act = head.forward(f)
            let n = cells.count
            var g = Matrix(rows: n, cols: jn)
            var loss = 0.0
            act.q.data.withUnsafeBufferPointer { qp in
                keys.keys.data.withUnsafeBufferPointer { kp in
                    g.data.withUnsafeMutableBufferPointer { gp in
                        BLAS.sgemm(transA: false, transB: true, m: n, n: jn, k: d, alpha: invT, a: qp.baseAddress!, lda: d,
                                   b: kp.baseAddress!, ldb: d, beta: 0, c: gp.baseAddress!, ldc: jn)
                        for r in 0..<n {
                            let row = gp.baseAddress! + r * jn, t = targets[r]
                            var mx = row[0]
                            for j in 1..<jn where row[j] > mx { mx = row[j] }
                            let lt = row[t]
                            var sum: Float = 0
                            var j = 0
                            while j + 8 <= jn {
                                let e = FastMath.exp(load8(row + j) - SIMD8(repeating: mx))
                                store8(e, row + j)
                                sum += e.sum()
                                j += 8
                            }
                            while j < jn { let e = FastMath.exp(row[j] - mx); row[j] = e; sum += e; j += 1 }
                            loss += wd[t] * (Double(mx) + LibM.log(Double(sum)) - Double(lt))
                            // dL/dq = sum_j a (p_j - [j = t]) k_j / T, with a = w_t / sum of weights.
                            let a = weights[t] * invT, scale = a / sum
                            for j in 0..<jn { row[j] *= scale }
                            row[t] -= a
                        }
                    }
                }
            }
            let gq = BLAS.matmul(g, keys.keys)
            return LossPart(loss: loss, grads: head.backward(f, act, gradQ: gq))
        }
        var total = 0.0
        var grads = [Float](repeating: 0, count: head.parameterCount)
        for p in parts {
            total += p.loss
            for j in 0..<grads.count { grads[j] += p.grads[j] }
        }
        return (total, grads)
    }

    /// One training step on a batch. O(cells (C H + H D + J D)) twice (key and query heads).
    public mutating func step(batch: [MaskContrastSample], epoch e: Int, executor: (any ImageExecutor)? = nil) throws -> MaskContrastStepStats {
        if batch.isEmpty { throw ClusteringError("maskcontrast step: the batch is empty") }
        let run = executor ?? LocalExecutor(threads: config.threads)
        for (i, s) in batch.enumerated() where run.holds(i, of: batch.count) {
            guard s.query.cols == query.inputChannels, s.key.cols == query.inputChannels, s.query.rows == s.masks.count, s.key.rows == s.masks.count else {
                throw ClusteringError("image \(i): query [\(s.query.rows), \(s.query.cols)], key [\(s.key.rows), \(s.key.cols)], \(s.masks.count) mask cells for a head over \(query.inputChannels) channels")
            }
        }
        key.momentumUpdate(towards: query, momentum: config.keyMomentum)
        let k = try Self.keys(head: key, batch: batch, queue: queue, executor: run)
        let (loss, g) = try Self.lossAndGradient(head: query, batch: batch, keys: k, temperature: config.temperature,
                                             balance: config.classBalance, executor: run)
        let lr = learningRate(epoch: e)
        epoch = e
        let cells = k.counts.reduce(0, +)
        if k.batchCount > 0 {
            var grads = g
            let wdc = config.weightDecay
            if wdc > 0 { for j in 0..<grads.count { grads[j] += wdc * query.parameters[j] } }
            switch config.optimizer {
            case .sgd:
                // PyTorch SGD: v = mu v + g; p -= lr v (the velocity lives in the state's m).
                let mu = config.sgdMomentum
                optimizer.step += 1
                for j in 0..<grads.count {
                    let v = optimizer.step == 1 ? grads[j] : optimizer.m[j] * mu + grads[j]
                    optimizer.m[j] = v
                    query.parameters[j] -= lr * v
                }
            case .adam:
                Adam.update(params: &query.parameters, grads: grads, state: &optimizer, config: AdamConfig(learningRate: lr))
            }
            queue.enqueue(k.keys.rows(0..<k.batchCount))
        }
        stepCount += 1
        lossHistory.append(loss)
        return MaskContrastStepStats(step: stepCount, loss: loss, prototypes: k.batchCount, cells: cells, learningRate: lr)
    }
}
