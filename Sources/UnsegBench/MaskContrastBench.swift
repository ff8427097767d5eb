import Foundation
import UnsegClustering
import UnsegCore
import UnsegLinAlg

/// MaskContrast-style head training: steps/s and images/s at 40x40x384, batch 32, MLP head
/// (hidden 256, dim 64), queue 256, 8 masks per image, on 1 and 2 threads, next to the sgemm
/// floor for the step's multiply-adds; then the mask clustering of 10,000 masks.
func maskContrastBench(quick: Bool) throws {
    let batch = 32, h = 40, w = 40, c = 384, hidden = 256, dim = 64
    var rng = SeededRandom(seed: 9)
    let samples: [MaskContrastSample] = (0..<batch).map { _ in
        let f = Matrix(rows: h * w, cols: c, data: (0..<(h * w * c)).map { _ in rng.gaussian() })
        // 8 masks: a 4x2 grid of blocks, the last row of cells background.
        let masks = (0..<(h * w)).map { i -> UInt8 in
            let y = i / w, x = i % w
            return y == h - 1 ? 0 : UInt8(1 + (y / 10) * 2 + x / 20)
        }
        return MaskContrastSample(query: f, key: f, masks: masks)
    }
    let cells = samples.reduce(0) { $0 + $1.masks.filter { $0 != 0 }.count }
    var config = MaskContrastConfig()
    config.hidden = hidden; config.dim = dim; config.queueSize = 256; config.epochs = 10
    // Multiply-adds of a step: key head forward, query head forward and backward (3x the
    // forward's first layer: forward, weight gradient; the input gradient is not needed), and the
    // logits and their gradient against J = batch prototypes + queue.
    let j = Double(batch * 8 + 256)
    let n = Double(cells)
    let flops = 2 * n * (Double(c * hidden + hidden * dim) * 2 + Double(c * hidden + 2 * hidden * dim) + 2 * j * Double(dim))
    let peak = sgemmPeak(quick: true, verbose: false).one
    let repeats = quick ? 3 : 5
    print(String(format: "  batch %d of %dx%dx%d features, %d cells in masks, MLP %d -> %d -> %d, queue 256; %.1f GFLOP per step; medians of %d steps",
                 batch, h, w, c, cells, c, hidden, dim, flops / 1e9, repeats))
    for threads in [1, 2] {
        config.threads = threads
        var t = try MaskContrastTrainer(inputChannels: c, config: config)
        for _ in 0..<2 { _ = try t.step(batch: samples, epoch: 0) }   // warm caches, fill part of the queue
        let wall = try medianTime(repeats) { _ = try t.step(batch: samples, epoch: 0) }
        let floor = flops / (peak * 1e9 * Double(threads))
        print(String(format: "  %d thread%@: %.3f s/step (%.2f steps/s, %.0f images/s); %.1f GFLOP/s = %.2f of the sgemm floor (%.3f s/step at %.1f GFLOP/s per thread)",
                     threads, threads == 1 ? " " : "s", wall, 1 / wall, Double(batch) / wall, flops / wall / 1e9, floor / wall, floor, peak))
    }
    // Mask clustering: 10,000 masks through a 64-dim head and through the identity (384 dims).
    for d in [dim, c] {
        let m = 10_000
        var v = Matrix(rows: m, cols: d, data: (0..<(m * d)).map { _ in rng.gaussian() })
        v.normalizeRows()
        let head = d == c ? ProjectionHead(kind: .identity, inputChannels: c, hidden: 0, outputDim: c, seed: 0)
            : ProjectionHead(kind: .mlp, inputChannels: c, hidden: hidden, outputDim: d, seed: 0)
        var mc = MaskClusterConfig(classes: 27)
        mc.threads = 2
        let sec = try medianTime(quick ? 1 : 3) { _ = try MaskClusterModel.fit(vectors: v, head: head, config: mc) }
        print(String(format: "  mask clustering: %d masks of %d dims, PCA whitening to 32, k-means K 27 x %d restarts, 2 threads: %.2f s",
                     m, d, mc.restarts, sec))
    }
}
