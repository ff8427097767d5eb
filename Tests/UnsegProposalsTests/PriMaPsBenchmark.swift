import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegProposals

/// Throughput measurement, not a test: runs only with UNSEG_PRIMAPS_BENCH=1 and prints numbers
/// (`UNSEG_PRIMAPS_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter PriMaPsBenchmark`).
@Suite struct PriMaPsBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["UNSEG_PRIMAPS_BENCH"] != nil))
    func throughput() throws {
        let count = Int(ProcessInfo.processInfo.environment["UNSEG_PRIMAPS_IMAGES"] ?? "") ?? 64
        let maps = (0..<count).map {
            PlantedFeatures.make(height: 40, width: 40, channels: 384, regions: 9, seed: 500 + UInt64($0)).features
        }
        // sgemm peak, one thread: [1600, 384] x [384, 384]
        let saved = BLAS.threads
        BLAS.threads = 1
        let a = gaussianMatrix(rows: 1600, cols: 384, seed: 1), b = gaussianMatrix(rows: 384, cols: 384, seed: 2)
        var c = Matrix(rows: 1600, cols: 384)
        BLAS.gemm(a, b, into: &c)
        let t0 = Date()
        for _ in 0..<20 { BLAS.gemm(a, b, into: &c) }
        let peak = 20 * 2 * 1600.0 * 384 * 384 / Date().timeIntervalSince(t0) / 1e9
        BLAS.threads = saved
        print("sgemm 1600x384x384, 1 thread: \(String(format: "%.1f", peak)) GFLOP/s (\(BLAS.coreName))")
        let only = ProcessInfo.processInfo.environment["UNSEG_PRIMAPS_SOLVER"]
        for solver in PrincipalSolver.allCases where only == nil || only == solver.rawValue {
            let cfg = PriMaPsConfig(solver: solver)
            _ = try PriMaPs.proposeBatch(Array(maps.prefix(4)), height: 40, width: 40, config: cfg, threads: 1)
            for threads in [1, 2] {
                let t = Date()
                let cpu0 = clock()
                let out = try PriMaPs.proposeBatch(maps, height: 40, width: 40, config: cfg, threads: threads)
                let dt = Date().timeIntervalSince(t)
                let cpu = Double(clock() - cpu0) / Double(CLOCKS_PER_SEC)
                let flops = out.reduce(0) { $0 + $1.stats.estimatedFlops }
                let masks = out.reduce(0) { $0 + $1.maskCount }
                let mv = out.reduce(0) { $0 + $1.stats.matvecs }
                let fb = out.reduce(0) { $0 + $1.stats.lapackFallbacks }
                print(String(format: "%@ threads=%d: %.1f images/s, CPU %.2f ms/image (-> %.0f images/s/core idle), %.2f ms/image/thread, %.1f GFLOP/s, masks/image %.1f, matvecs/mask %.1f, fallbacks %d",
                             solver.rawValue, threads, Double(count) / dt, cpu * 1000 / Double(count), Double(count) / cpu, dt * 1000 * Double(threads) / Double(count),
                             flops / dt / 1e9, Double(masks) / Double(count), Double(mv) / Double(max(masks, 1)), fb))
            }
        }
    }
}
