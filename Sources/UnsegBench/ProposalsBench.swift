import Foundation
import UnsegLinAlg
import UnsegProposals
import UnsegFixtures
import UnsegCore
import UnsegStore

/// CPU time of the calling thread, seconds (`CLOCK_THREAD_CPUTIME_ID`).
func threadCPUTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU time of the whole process (all threads), seconds (`CLOCK_PROCESS_CPUTIME_ID`).
func processCPUTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Median wall and process-CPU times of `repeats` runs of `body` (seconds). On a shared machine
/// the CPU time is what the work cost; wall time includes waiting for other people's jobs.
func medianWallAndCPU(_ repeats: Int, _ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
    var w: [Double] = [], c: [Double] = []
    for _ in 0..<repeats {
        let s = DispatchTime.now().uptimeNanoseconds
        let c0 = processCPUTime()
        try body()
        c.append(processCPUTime() - c0)
        w.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
    }
    w.sort(); c.sort()
    return (w[w.count / 2], c[c.count / 2])
}

/// PriMaPs on 40x40x384 float32 planted feature maps, 1 and 2 threads, no refinement:
/// images/s (wall) and CPU ms per image, achieved GFLOP/s (`stats.estimatedFlops`) next to
/// the sgemm rate measured in the same run.
func primapsBench(quick: Bool) throws {
    let count = quick ? 32 : 128
    let peak = sgemmPeak(quick: quick, verbose: true)
    let maps = (0..<count).map {
        PlantedFeatures.make(height: 40, width: 40, channels: 384, regions: 9, seed: 500 + UInt64($0)).features
    }
    _ = try PriMaPs.proposeBatch(Array(maps.prefix(4)), height: 40, width: 40, threads: 1)
    let repeats = quick ? 3 : 5
    print("  \(count) planted maps of 40x40x384 float32 (9 regions), lanczos solver, medians of \(repeats); CPU = process CPU time")
    for threads in [1, 2] {
        var out: [MaskProposals] = []
        let (wall, cpu) = try medianWallAndCPU(repeats) {
            out = try PriMaPs.proposeBatch(maps, height: 40, width: 40, threads: threads)
        }
        let flops = out.reduce(0) { $0 + $1.stats.estimatedFlops }
        let masks = Double(out.reduce(0) { $0 + $1.maskCount }) / Double(count)
        let ref = threads == 1 ? peak.one : peak.all
        print(String(format: "  primaps %d thread%@: %.0f images/s wall, %.2f ms CPU/image (%.0f images/s per busy core), %.1f GFLOP/s achieved vs sgemm %.1f (%.0f%%), %.1f masks/image",
                     threads, threads == 1 ? "" : "s", Double(count) / wall, cpu * 1000 / Double(count), Double(count) / cpu,
                     flops / wall / 1e9, ref, 100 * flops / wall / 1e9 / ref, masks))
    }
}

/// Dense CRF (10 iterations) and guided filter per 320x320 image with 5, 10 and 27 labels;
/// wall and thread-CPU time, lattice construction separated from inference.
func refineBench(quick: Bool) throws {
    let repeats = quick ? 3 : 5
    print("  320x320 synthetic images (Voronoi regions, noisy soft maps), 1 thread, medians of \(repeats); CPU = process CPU time (the work is single-threaded)")
    for labels in [5, 10, 27] {
        let c = RefinementBenchCase(side: 320, labels: labels, seed: 7)
        _ = try c.runCRF(iterations: 1)
        var sink = 0
        let crf = try medianWallAndCPU(repeats) { sink &+= try c.runCRF(iterations: 10) }
        let build = try medianWallAndCPU(repeats) { sink &+= try c.runCRF(iterations: 0) }
        let guided = try medianWallAndCPU(repeats) { sink &+= try c.runGuided() }
        print(String(format: "  %2d labels: dense CRF %.3f s wall / %.3f s CPU (of which lattices + setup %.3f / %.3f), guided filter %.3f s wall / %.3f s CPU",
                     labels, crf.wall, crf.cpu, build.wall, build.cpu, guided.wall, guided.cpu))
        if sink == 42 { print("") }
    }
    let c = RefinementBenchCase(side: 320, labels: 10, seed: 7)
    // Throughput as `unseg propose --refine crf` runs it: one image per core.
    let images = quick ? 4 : 8
    let par = medianWallAndCPU(quick ? 1 : 3) {
        Parallel.forEach(images, threads: 2) { _ in _ = try? c.runCRF(iterations: 10) }
    }
    print(String(format: "  10 labels, %d images on 2 threads (one per core): %.3f s wall per image, %.3f s CPU per image",
                 images, par.wall / Double(images), par.cpu / Double(images)))
    let v = try DenseCRF(image: c.image, height: 320, width: 320).latticeVertexCounts
    print("  lattice vertices for 102,400 pixels: gaussian \(v.gaussian), bilateral \(v.bilateral)")
}

/// Spectral eigenpairs (k = 15, i.e. 16 pairs) at 40x40 cells, C = 384, one thread: the dense LAPACK
/// solve against block Krylov, ms/image (median), the ratio, and the agreement of the two
/// (largest eigenvalue gap, smallest |cos| of matching eigenvectors; v_0 included).
func spectralBench(quick: Bool) throws {
    let peak = sgemmPeak(quick: quick, verbose: true)
    let saved = BLAS.threads
    BLAS.threads = 1
    defer { BLAS.threads = saved }
    let repeats = quick ? 3 : 7
    var rng = SeededRandom(seed: 11)
    var cases: [(String, Matrix)] = [
        ("planted (9 regions)", PlantedFeatures.make(height: 40, width: 40, channels: 384, regions: 9, seed: 501).features),
        ("planted (4 regions)", PlantedFeatures.make(height: 40, width: 40, channels: 384, regions: 4, seed: 502).features),
        ("gaussian noise", Matrix(rows: 1600, cols: 384, data: (0..<(1600 * 384)).map { _ in rng.gaussian() })),
    ]
    // Real features: the VOC photo's 40x40x432 hypercolumn (Tests/Fixtures, see ../shared/fixtures/README.md).
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/voc-effnet.h5").path
    if FileManager.default.fileExists(atPath: fixture) {
        cases.append(("real (VOC, C = 432)", try FeatureStore(path: fixture).features(0)))
    }
    print("  40x40 cells, C = 384, k = 15 (16 eigenpairs), 1 BLAS thread, medians of \(repeats); sgemm 1 thread \(String(format: "%.1f", peak.one)) GFLOP/s")
    for (name, f) in cases {
        var dense: SpectralEigenpairs? = nil, krylov: SpectralEigenpairs? = nil
        let td = try medianTime(repeats) { dense = try Spectral.eigenpairs(features: f, count: 15, solver: .dense) }
        let tk = try medianTime(repeats) { krylov = try Spectral.eigenpairs(features: f, count: 15, solver: .krylov) }
        guard let d = dense, let k = krylov else { print("  \(name): affinity all <= 0"); continue }
        var dl: Float = 0, minCos: Float = 1
        for e in 0..<16 {
            dl = max(dl, abs(d.values[e] - k.values[e]))
            let a = d.vectors.row(e), b = k.vectors.row(e)
            minCos = min(minCos, abs(Reduce.dot(a, b)) / (Reduce.dot(a, a) * Reduce.dot(b, b)).squareRoot())
        }
        print(String(format: "  %-20@ dense %6.1f ms/image, krylov %6.1f ms/image (%@%d matvecs), %.1fx; max |dlambda| %.1e, min |cos| %.7f",
                     name as NSString, td * 1000, tk * 1000, k.fellBack ? "FELL BACK, " : "", k.matvecs, td / tk, Double(dl), Double(minCos)))
    }
    // both sides of the automatic switch (Spectral.usesKrylov)
    for (side, k) in [(24, 7), (32, 15), (24, 15)] {
        let f = PlantedFeatures.make(height: side, width: side, channels: 384, regions: 9, seed: 503).features
        let td = try medianTime(repeats) { _ = try Spectral.eigenpairs(features: f, count: k, solver: .dense) }
        let tk = try medianTime(repeats) { _ = try Spectral.eigenpairs(features: f, count: k, solver: .krylov) }
        print(String(format: "  switch check %dx%d, k = %2d: dense %6.1f ms, krylov %6.1f ms (%.1fx); automatic picks %@",
                     side, side, k, td * 1000, tk * 1000, td / tk,
                     Spectral.usesKrylov(cells: side * side, count: k) ? "krylov" : "dense"))
    }
}

/// Fiedler foreground maps (issue: "the benchmark reports foreground maps per second").
func foregroundBench(quick: Bool) throws {
    let n = quick ? 16 : 48
    let feats = (0..<n).map { PlantedFeatures.make(height: 40, width: 40, channels: 384, regions: 3, seed: 900 + UInt64($0)).features }
    let c = RefinementBenchCase(side: 320, labels: 2, seed: 5)
    print("  \(n) planted maps of 40x40x384 (3 regions), soft map upsampled to 320x320; medians of 3")
    for threads in [1, 2] {
        let t = try medianTime(3) {
            _ = try Parallel.tryMap(n, threads: threads) { i -> [Float] in
                let f = try Spectral.fiedler(features: feats[i], height: 40, width: 40)
                return BilinearResampler(sourceHeight: 40, sourceWidth: 40, targetHeight: 320, targetWidth: 320)
                    .upsample(Matrix(rows: 1600, cols: 1, data: f.mask.map(Float.init))).data
            }
        }
        let g = try medianTime(3) {
            _ = try Parallel.tryMap(n, threads: threads) { _ -> [Float] in
                let gf = try GuidedFilter(image: c.image, height: 320, width: 320)
                return gf.apply([Float](repeating: 0.5, count: 320 * 320))
            }
        }
        print(String(format: "  %d thread%@: Fiedler maps %.0f maps/s; + guided filter (320x320) %.0f maps/s", threads, threads == 1 ? "" : "s",
                     Double(n) / t, Double(n) / (t + g)))
    }
}
