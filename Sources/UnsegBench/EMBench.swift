import UnsegFixtures
import Foundation
import UnsegClustering
import UnsegLinAlg
import UnsegCore

/// CPU seconds of this thread and of the whole process (the machine is shared, so wall time
/// alone can mislead).
func cpuTimes() -> (thread: Double, process: Double) {
    var t = timespec(), p = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p)
    return (Double(t.tv_sec) + Double(t.tv_nsec) / 1e9, Double(p.tv_sec) + Double(p.tv_nsec) / 1e9)
}

/// PriMaPs-EM step throughput: 40x40x384 features, batch 32, 27 classes, 320x320 labels,
/// on 1 and 2 threads (issue 5 target: >= 150 images/s on 2 cores). Wall time (median) and
/// CPU time (thread / process) per step.
func emBench(quick: Bool) throws {
    let batch = 32, k = 27, c = 384
    let samples = EMFixtures.syntheticBatch(count: batch, h: 40, w: 40, H: 320, W: 320, channels: c, masks: 8, seed: 1)
    var rng = SeededRandom(seed: 2)
    let initial = PrototypeModel(directions: Matrix(rows: k, cols: c, data: (0..<(k * c)).map { _ in rng.gaussian() }))
    let repeats = quick ? 3 : 7
    print("  batch \(batch) of 40x40x\(c) features -> 320x320 labels, K = \(k); medians of \(repeats) steps")
    for threads in [1, 2] {
        var trainer = try EMTrainer(initial: initial, config: EMConfig(batchSize: batch, threads: threads, seed: 3))
        _ = try trainer.step(batch: samples)   // warm caches
        var cpuT: [Double] = [], cpuP: [Double] = []
        let wall = try medianTime(repeats) {
            let a = cpuTimes()
            _ = try trainer.step(batch: samples)
            let b = cpuTimes()
            cpuT.append(b.thread - a.thread); cpuP.append(b.process - a.process)
        }
        cpuT.sort(); cpuP.sort()
        print(String(format: "  %d thread%@: %.3f s/step wall (%.2f steps/s, %.0f images/s); CPU %.3f s/step calling thread, %.3f s/step process (%.0f images per CPU-second)",
                     threads, threads == 1 ? " " : "s", wall, 1 / wall, Double(batch) / wall,
                     cpuT[cpuT.count / 2], cpuP[cpuP.count / 2], Double(batch) / cpuP[cpuP.count / 2]))
    }
    // The multi-scale consistency (primaps-em.consistency_weight): one half-side crop per image.
    // Its floor: three [1600 x 384] x [384 x 27]-sized products per image (teacher and student
    // logits, the gradient) at this run's one-thread sgemm rate.
    var crops = samples
    for i in 0..<crops.count {
        let other = EMFixtures.syntheticBatch(count: 1, h: 40, w: 40, H: 320, W: 320, channels: c, masks: 8, seed: 100 + UInt64(i))[0]
        let x0 = Float(8 * (i % 20)), y0 = Float(8 * ((i * 7) % 20))
        crops[i].crop = EMCrop(features: other.features, box: CropBox(x0: x0, y0: y0, x1: x0 + 160, y1: y0 + 160))
    }
    let one = sgemmPeak(quick: true, verbose: false).one
    let floor = Double(batch) * 3 * 2 * 1600 * Double(c * k) / (one * 1e9)
    for threads in [1, 2] {
        var config = EMConfig(batchSize: batch, threads: threads, seed: 3)
        var plain = try EMTrainer(initial: initial, config: config)
        config.consistencyWeight = 1
        var trainer = try EMTrainer(initial: initial, config: config)
        _ = try trainer.step(batch: crops); _ = try plain.step(batch: samples)
        let without = try medianTime(repeats) { _ = try plain.step(batch: samples) }
        let with = try medianTime(repeats) { _ = try trainer.step(batch: crops) }
        print(String(format: "  %d thread%@ with the multi-scale consistency: %.3f s/step wall (%.0f images/s), +%.3f s over %.3f without; the term's sgemm floor %.3f s/step on %d thread%@",
                     threads, threads == 1 ? " " : "s", with, Double(batch) / with, with - without, without, floor / Double(threads),
                     threads, threads == 1 ? "" : "s"))
    }
}
