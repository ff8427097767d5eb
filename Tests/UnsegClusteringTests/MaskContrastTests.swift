import Foundation
import Testing
import UnsegCore
import UnsegLinAlg
import UnsegTestSupport
@testable import UnsegClustering

/// A small batch: `images` images of `cells` cells of `c` channels, masks 0 (background) to 3.
private func smallBatch(images: Int, cells: Int, c: Int, seed: UInt64) -> [MaskContrastSample] {
    var r = SeededRandom(seed: seed)
    return (0..<images).map { _ in
        let q = Matrix(rows: cells, cols: c, data: (0..<(cells * c)).map { _ in r.gaussian() })
        let k = Matrix(rows: cells, cols: c, data: (0..<(cells * c)).map { _ in r.gaussian() })
        let m = (0..<cells).map { _ in UInt8(r.int(below: 4)) }
        return MaskContrastSample(query: q, key: k, masks: m)
    }
}

@Suite struct MaskContrastTests {
    /// The loss gradient w.r.t. the query head, through the L2 normalisation and the log-softmax
    /// over the batch's prototypes and the queue, against central finite differences of the loss
    /// (computed in Float; steps of 1e-2 keep rounding below 1e-4 of the loss differences).
    @Test("head gradient matches finite differences (linear and MLP heads, with a queue, balanced and not)", arguments: [HeadKind.linear, .mlp])
    func gradientMatchesFiniteDifferences(kind: HeadKind) throws {
        let c = 6, batch = smallBatch(images: 2, cells: 9, c: c, seed: 3)
        let head = ProjectionHead(kind: kind, inputChannels: c, hidden: 5, outputDim: 4, seed: 11)
        var queue = PrototypeQueue(capacity: 3, dim: 4)
        var r = SeededRandom(seed: 5)
        var qrows = Matrix(rows: 3, cols: 4, data: (0..<12).map { _ in r.gaussian() })
        qrows.normalizeRows()
        queue.enqueue(qrows)
        let exec = LocalExecutor(threads: 1)
        let keys = try MaskContrastTrainer.keys(head: head, batch: batch, queue: queue, executor: exec)
        #expect(keys.keys.rows == keys.batchCount + 3)
        for balance in [true, false] {
            let (_, g) = try MaskContrastTrainer.lossAndGradient(head: head, batch: batch, keys: keys, temperature: 0.5, balance: balance, executor: exec)
            var worst = 0.0
            for j in 0..<head.parameterCount {
                var hp = head, hm = head
                let h: Float = 1e-2
                hp.parameters[j] += h
                hm.parameters[j] -= h
                let lp = try MaskContrastTrainer.lossAndGradient(head: hp, batch: batch, keys: keys, temperature: 0.5, balance: balance, executor: exec).loss
                let lm = try MaskContrastTrainer.lossAndGradient(head: hm, batch: batch, keys: keys, temperature: 0.5, balance: balance, executor: exec).loss
                let fd = (lp - lm) / Double(2 * h)
                worst = max(worst, abs(fd - Double(g[j])))
                expectClose(Double(g[j]), fd, abs: 2e-3, rel: 2e-2, "\(kind) balance \(balance): parameter \(j)")
            }
            #expect(worst < 2e-3, "\(kind): worst gap \(worst)")
        }
    }

    /// The prototypes by hand: identity-like linear head (W = I, b = 0), so a mask's prototype is
    /// the normalised sum of its normalised key cells.
    @Test("mask prototypes are normalize(sum of normalised key embeddings), in image order, then the queue")
    func prototypesByHand() throws {
        let head = try ProjectionHead(kind: .linear, inputChannels: 2, hidden: 0, outputDim: 2, parameters: [1, 0, 0, 1, 0, 0])
        let key = Matrix([[3, 4], [0, 2], [1, 0], [5, 5]])
        let s = MaskContrastSample(query: key, key: key, masks: [2, 2, 0, 1])
        var queue = PrototypeQueue(capacity: 2, dim: 2)
        queue.enqueue(Matrix([[0, -1]]))
        let k = try MaskContrastTrainer.keys(head: head, batch: [s, s], queue: queue, executor: LocalExecutor(threads: 2))
        // Mask 1: cell (5,5) -> (0.7071, 0.7071). Mask 2: (0.6, 0.8) + (0, 1) = (0.6, 1.8) -> normalised.
        let n2 = (0.36 + 3.24 as Float).squareRoot()
        let expected: [Float] = [0.70710677, 0.70710677, 0.6 / n2, 1.8 / n2, 0.70710677, 0.70710677, 0.6 / n2, 1.8 / n2, 0, -1]
        expectAllClose(k.keys.data, expected, abs: 1e-6)
        #expect(k.batchCount == 4 && k.counts == [1, 2, 1, 2])
        #expect(k.rowOfMask[1][1] == 2 && k.rowOfMask[1][2] == 3 && k.rowOfMask[0][0] == -1)
    }

    @Test("class weights: w = 1 / log(1.02 + share), normalised by the sum over cells (hand-computed)")
    func classWeightsByHand() {
        let w = MaskContrastTrainer.targetWeights(counts: [3, 1], balance: true)
        let w0 = 1 / log(1.77), w1 = 1 / log(1.27), z = 3 * w0 + w1
        expectClose(w[0], w0 / z, rel: 1e-12)
        expectClose(w[1], w1 / z, rel: 1e-12)
        // 1/log(1.77) = 1.75138..., 1/log(1.27) = 4.18380...: the rare target weighs 2.389x more per cell.
        expectClose(w[1] / w[0], 2.38887, abs: 1e-4)
        #expect(MaskContrastTrainer.targetWeights(counts: [3, 1], balance: false) == [0.25, 0.25])
    }

    @Test("queue: FIFO ring, the oldest overwritten first; key head: m key + (1 - m) query (hand-computed)")
    func queueAndKeyUpdate() throws {
        var q = PrototypeQueue(capacity: 3, dim: 1)
        q.enqueue(Matrix([[1], [2]]))
        #expect(q.entries.data == [1, 2, 0] && q.pointer == 2 && q.filled == 2 && q.current.data == [1, 2])
        q.enqueue(Matrix([[3], [4]]))
        #expect(q.entries.data == [4, 2, 3] && q.pointer == 1 && q.filled == 3)
        q.enqueue(Matrix([[5], [6], [7], [8]]))
        #expect(q.entries.data == [7, 8, 6] && q.pointer == 2, "more rows than capacity: the last three remain")

        var key = try ProjectionHead(kind: .linear, inputChannels: 1, hidden: 0, outputDim: 1, parameters: [2, -1])
        let query = try ProjectionHead(kind: .linear, inputChannels: 1, hidden: 0, outputDim: 1, parameters: [4, 3])
        key.momentumUpdate(towards: query, momentum: 0.75)
        #expect(key.parameters == [2.5, 0])   // 0.75*2 + 0.25*4, 0.75*(-1) + 0.25*3
    }

    @Test("a step: key head updated first, the batch's prototypes enqueued, same bits on 1 and 2 threads, resumable from its state")
    func stepDeterminismAndResume() throws {
        var config = MaskContrastConfig()
        config.head = .mlp; config.hidden = 8; config.dim = 4; config.queueSize = 5; config.epochs = 3
        let batches = (0..<4).map { smallBatch(images: 3, cells: 12, c: 6, seed: UInt64(20 + $0)) }
        func run(threads: Int, stopAt: Int? = nil, from: MaskContrastTrainerState? = nil) throws -> MaskContrastTrainer {
            var c = config
            c.threads = threads
            var t = try from.map { try MaskContrastTrainer(state: $0, config: c) } ?? MaskContrastTrainer(inputChannels: 6, config: c)
            for (i, b) in batches.enumerated() where i >= t.stepCount {
                if let s = stopAt, i == s { break }
                _ = try t.step(batch: b, epoch: i / 2)
            }
            return t
        }
        let one = try run(threads: 1), two = try run(threads: 2)
        #expect(one.state == two.state)
        let half = try run(threads: 1, stopAt: 2)
        let state = try MaskContrastTrainerState(record: half.state.record)
        #expect(state == half.state, "the record round-trips")
        #expect(try run(threads: 2, from: state).state == one.state, "resumed from step 2")
        #expect(one.queue.filled == 5 && one.stepCount == 4)
        // The first step's key head equals the initial head (key = query at the start, m applied to equal heads).
        var fresh = try MaskContrastTrainer(inputChannels: 6, config: config)
        let initial = fresh.query
        _ = try fresh.step(batch: batches[0], epoch: 0)
        #expect(fresh.key == initial && fresh.query != initial)
        // The learning rate follows the poly schedule per epoch.
        expectClose(Double(fresh.learningRate(epoch: 1)), 0.1 * pow(2.0 / 3.0, 0.9), rel: 1e-6)
    }

    /// The situation of the depth drift of the synthetic corpus: each object's cells vary along a
    /// nuisance direction shared by every class (strength 3 along it, against class centres 1.4
    /// apart), and each object has its own offset along it. Pixel k-means on the raw features
    /// splits along the nuisance; the trained head learns to ignore it (cells of one mask must
    /// agree with their prototype), and its mask clustering recovers the classes.
    ///
    /// Margin: measured cell purity (majority class per cluster, K = 4 clusters for 4 classes):
    /// pixel k-means 0.50 (the better of euclidean and cosine), the identity head's mask clustering
    /// 0.60, the trained linear head's mask clustering 1.00 (10 epochs of 6 batches). The test asks
    /// the head to beat pixel k-means by 0.3 (the gap is 0.5; a purity of 0.8 would still be a
    /// clear win over 0.5) and the identity head at all; the problem is fully seeded, so the margin
    /// is for platform differences in floating point, not for chance.
    @Test("planted nuisance: the trained head's mask clustering beats pixel k-means on raw features")
    func headRemovesSharedNuisance() throws {
        let c = 16, classes = 4, images = 48, side = 8
        var r = SeededRandom(seed: 42)
        var centres = Matrix(rows: classes, cols: c, data: (0..<(classes * c)).map { _ in r.gaussian() })
        centres.normalizeRows()
        var nuisance = (0..<c).map { _ in r.gaussian() }
        let nn = nuisance.reduce(0) { $0 + $1 * $1 }.squareRoot()
        nuisance = nuisance.map { $0 / nn }
        var samples: [MaskContrastSample] = []
        var truth: [[Int]] = []
        for _ in 0..<images {
            // Four vertical stripes of random widths, each one object of a random class.
            var bounds = [0, 2 + r.int(below: 2), 4 + r.int(below: 1), 6 + r.int(below: 2), side].sorted()
            bounds = Array(Set(bounds)).sorted()
            var f = [Float](repeating: 0, count: side * side * c)
            var masks = [UInt8](repeating: 0, count: side * side)
            var cls = [Int](repeating: 0, count: side * side)
            for o in 0..<(bounds.count - 1) {
                let k = r.int(below: classes)
                let offset = r.float(in: -2..<2)
                for y in 0..<side {
                    for x in bounds[o]..<bounds[o + 1] {
                        let cell = y * side + x
                        let t = offset + 3 * (Float(y) / Float(side - 1) - 0.5)   // drift along the object, like depth
                        for j in 0..<c { f[cell * c + j] = centres.data[k * c + j] + t * nuisance[j] + 0.1 * r.gaussian() }
                        masks[cell] = UInt8(o + 1)
                        cls[cell] = k
                    }
                }
            }
            let m = Matrix(rows: side * side, cols: c, data: f)
            samples.append(MaskContrastSample(query: m, key: m, masks: masks))
            truth.append(cls)
        }
        let allTruth = truth.flatMap { $0 }
        func purity(_ labels: [Int]) -> Double {
            var table = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
            for (l, t) in zip(labels, allTruth) { table[l][t] += 1 }
            return Double(table.reduce(0) { $0 + ($1.max() ?? 0) }) / Double(allTruth.count)
        }
        let allCells = Matrix(rows: allTruth.count, cols: c, data: samples.flatMap { $0.query.data })
        var pixel = 0.0
        for metric in [KMeansMetric.euclidean, .cosine] {
            let km = try KMeans.fit(allCells, config: KMeansConfig(clusters: classes, restarts: 4, metric: metric, seed: 1))
            pixel = max(pixel, purity(km.labels.map(Int.init)))
        }

        var config = MaskContrastConfig()
        config.head = .linear; config.dim = 8; config.queueSize = 16; config.learningRate = 1.0; config.epochs = 10
        var t = try MaskContrastTrainer(inputChannels: c, config: config)
        for e in 0..<config.epochs {
            for b in 0..<(images / 8) { _ = try t.step(batch: Array(samples[(b * 8)..<(b * 8 + 8)]), epoch: e) }
        }
        func maskClusterPurity(_ head: ProjectionHead) throws -> Double {
            var vectors: [Float] = []
            var rows = 0
            for s in samples {
                let v = MaskClusterModel.maskVectors(head: head, features: s.query, masks: s.masks).vectors
                vectors += v.data
                rows += v.rows
            }
            var mc = MaskClusterConfig(classes: classes)
            mc.pcaDims = 0; mc.seed = 3
            let (model, _) = try MaskClusterModel.fit(vectors: Matrix(rows: rows, cols: head.outputDim, data: vectors), head: head, config: mc)
            // Every cell classified on its own (as `unseg predict` without --proposals).
            let labels = samples.flatMap { s in model.prototypes.lowResolutionLogits(features: model.embedCells(s.query)).rowArgmax() }
            return purity(labels)
        }
        let trained = try maskClusterPurity(t.query)
        let identity = try maskClusterPurity(ProjectionHead(kind: .identity, inputChannels: c, hidden: 0, outputDim: c, seed: 0))
        #expect(trained > pixel + 0.3, "purity: trained head \(trained), identity head \(identity), pixel k-means \(pixel)")
        #expect(trained > identity, "purity: trained head \(trained), identity head \(identity)")
    }
}

/// `segment-kmeans.vectors: cells`: the cells sampled per mask.
@Suite struct CellSampleTests {
    @Test func upToPerMaskCellsOfEveryMaskSeededByImage() throws {
        let n = 36, c = 6
        var rng = SeededRandom(seed: 1)
        let f = Matrix(rows: n, cols: c, data: (0..<(n * c)).map { _ in rng.gaussian() })
        // mask 1: 20 cells, mask 3: 4 cells, background: the rest.
        let masks = (0..<n).map { i -> UInt8 in i < 20 ? 1 : (i < 24 ? 3 : 0) }
        let head = ProjectionHead(kind: .mlp, inputChannels: c, hidden: 5, outputDim: 4, seed: 2)
        let e = head.embed(f)
        let a = MaskClusterModel.cellSamples(head: head, features: f, masks: masks, perMask: 8, seed: 9, image: 3)
        #expect(a.rows == 8 + 4 && a.cols == 4)
        let rowsOfE = (0..<n).map { e.row($0) }
        let picked = (0..<a.rows).map { r in rowsOfE.firstIndex(of: a.row(r))! }
        #expect(picked.prefix(8).allSatisfy { $0 < 20 } && Set(picked.prefix(8)).count == 8, "8 distinct cells of mask 1: \(picked)")
        #expect(Array(picked.suffix(4)) == [20, 21, 22, 23], "all of the small mask, in grid order")
        #expect(MaskClusterModel.cellSamples(head: head, features: f, masks: masks, perMask: 8, seed: 9, image: 3) == a, "deterministic")
        let other = MaskClusterModel.cellSamples(head: head, features: f, masks: masks, perMask: 8, seed: 9, image: 4)
        #expect(other != a, "another image draws other cells")
    }
}
