import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegClustering

/// Throughput report (no assertion on time): run with `UNSEG_PERF=1 swift test -c release ...`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["UNSEG_PERF"] != nil))
struct PerfReport {
    @Test func emStepThroughput() throws {
        let batch = PriMaPsEM.syntheticBatch(count: 32, seed: 1)
        let init0 = PrototypeModel(directions: Matrix(rows: 27, cols: 384, data: (0..<(27 * 384)).map { Float(($0 * 7919) % 13) - 6 }))
        for threads in [1, 2] {
            var t = try EMTrainer(initial: init0, config: EMConfig(threads: threads, seed: 1))
            _ = try t.step(batch: batch)   // warm-up
            let steps = 3
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<steps { _ = try t.step(batch: batch) }
            let sec = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            print("EM step, 32 images 40x40x384 -> 320x320, K=27, threads \(threads): \(Double(steps * 32) / sec) images/s")
        }
        let m = init0
        let start = DispatchTime.now().uptimeNanoseconds
        for s in batch { _ = m.predict(features: s.features, h: 40, w: 40, H: 320, W: 320) }
        let sec = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print("predict, 1 thread: \(32 / sec) images/s")
    }
}

