import CUnsegKernels
import Foundation
import UnsegStore
import UnsegLinAlg
import UnsegPipeline
import UnsegCore
import UnsegStore

/// unseg-bench: throughput of the toolkit's hot paths next to the machine's physical
/// floors measured in the same run (BLAS sgemm peak, plain sequential file reads).
/// Prints medians over repeats. Run with `Tools/bench [section ...] [--quick]`.
@main
struct Bench {
    static func main() throws {
        BLAS.restartWithBetterKernelsIfNeeded()   // as the unseg command does
        unseg_line_buffer_stdout()
        MemoryTuning.keepLargeBuffersInHeap()   // as the unseg command does
        // Every section parallelises over images (one BLAS thread each) unless it says otherwise.
        BLASPolicy.imagesInParallel.apply()
        var args = Array(CommandLine.arguments.dropFirst())
        if args.first == "peers-run", args.count == 2 {   // the unseg side of Tools/bench peers
            try peersRun(args[1])
            return
        }
        let quick = args.contains("--quick")
        // --key=value options of the sections that take them (paper-run: --dataset=, --dir=).
        var options: [String: String] = [:]
        for a in args where a.hasPrefix("--") && a.contains("=") {
            let kv = a.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            options[String(kv[0])] = String(kv[1])
        }
        // A misspelt flag or option is refused, not dropped (--help once started the full run).
        let knownFlags: Set<String> = ["--quick", "--help", "-h"], knownOptions: Set<String> = ["dataset", "dir"]
        if let bad = args.first(where: { $0.hasPrefix("-") && !($0.hasPrefix("--") && $0.contains("=")) && !knownFlags.contains($0) })
            ?? options.keys.sorted().first(where: { !knownOptions.contains($0) }).map({ "--\($0)=" }) {
            FileHandle.standardError.write("unseg-bench: unknown option '\(bad)'; known: --quick, --dataset=NAME, --dir=DIR (paper-run), --help\n".data(using: .utf8)!)
            exit(1)
        }
        let wantsHelp = args.contains { ["help", "-h", "--help"].contains($0) }
        args.removeAll { $0.hasPrefix("-") }
        BenchSections.options = options
        let all = BenchSections.all
        if wantsHelp {
            print("usage: unseg-bench [\(all.map(\.name).joined(separator: "|"))]... [--quick] [--dataset=NAME] [--dir=DIR]")
            for s in all { print("  \(s.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(s.summary)\(s.optIn ? " (only when named)" : "")") }
            return
        }
        let chosen = args.isEmpty ? all.filter { !$0.optIn } : all.filter { args.contains($0.name) }
        if let unknown = args.first(where: { a in !all.contains { $0.name == a } }) {
            FileHandle.standardError.write("unseg-bench: unknown section '\(unknown)'; known: \(all.map(\.name).joined(separator: ", "))\n".data(using: .utf8)!)
            exit(1)
        }
        print("unseg-bench: \(Parallel.coreCount) cores, OpenBLAS \(BLAS.coreName) kernels\(BLAS.replacedCoreName.map { " (chosen by unseg: OpenBLAS took this CPU for a \($0))" } ?? ""), \(BLAS.threads) BLAS threads, HDF5 \(hdf5LibraryVersion)\(quick ? ", quick mode" : "")")
        for s in chosen {
            print("\n== \(s.name): \(s.summary)")
            do {
                try s.run(quick)
            } catch {
                // A clear message and a non-zero exit, not a trap at the top level.
                FileHandle.standardError.write("unseg-bench: \(s.name): \(error)\n".data(using: .utf8)!)
                exit(1)
            }
        }
    }
}

struct BenchSection {
    let name: String
    let summary: String
    let run: (Bool) throws -> Void
    /// Runs only when named (long: not part of `Tools/bench` with no sections).
    var optIn = false
}

enum BenchSections {
    nonisolated(unsafe) static var options: [String: String] = [:]
    static var all: [BenchSection] {
        [
            BenchSection(name: "sgemm", summary: "BLAS sgemm rate (the compute floor other sections compare with)", run: { q in _ = sgemmPeak(quick: q, verbose: true) }),
            BenchSection(name: "store", summary: "feature-store streaming read throughput vs a plain sequential read; peak memory", run: { try storeBench(quick: $0) }),
            BenchSection(name: "em", summary: "PriMaPs-EM steps/s and images/s (40x40x384, batch 32, K 27, 320x320) on 1 and 2 threads", run: { try emBench(quick: $0) }),
            BenchSection(name: "maskcontrast", summary: "MaskContrast-style head training steps/s and images/s (40x40x384, batch 32, dim 64, queue 256) on 1 and 2 threads; mask clustering of 10,000 masks", run: { try maskContrastBench(quick: $0) }),
            BenchSection(name: "mpi", summary: "mpirun on this machine: EM and propose images/s on 1 and 2 ranks (ratio), bytes each rank sends per EM step", run: { try mpiBench(quick: $0) }),
            BenchSection(name: "evaluate", summary: "confusion matrix + Hungarian matching, pixels/s vs a plain pass over the same bytes", run: { try evaluateBench(quick: $0) }),
            BenchSection(name: "primaps", summary: "PriMaPs on 40x40x384 float32, images/s on 1 and 2 threads, GFLOP/s vs sgemm", run: { try primapsBench(quick: $0) }),
            BenchSection(name: "foreground", summary: "Fiedler foreground maps of 40x40x384 features, with the guided filter at 320x320, maps/s on 1 and 2 threads", run: { try foregroundBench(quick: $0) }),
            BenchSection(name: "spectral", summary: "spectral eigenpairs at 40x40x384, dense LAPACK vs block Krylov, 1 thread, ms/image", run: { try spectralBench(quick: $0) }),
            BenchSection(name: "refine", summary: "dense CRF (10 iterations) and guided filter per 320x320 image, 5/10/27 labels", run: { try refineBench(quick: $0) }),
            BenchSection(name: "paper-run", summary: "the paper run at real size through the binary: propose --refine crf, fit, test, predict, export of a Cityscapes-27-size corpus (--quick a tenth; --dataset=cocostuff27; --dir=D for the cached corpus, default .build/paper-run), next to the floors",
                         run: { try paperRunBench(quick: $0, options: options) }, optIn: true),
        ]
    }
}

/// Median of timings of `repeats` runs of `body` (seconds).
func medianTime(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    var t: [Double] = []
    for _ in 0..<repeats {
        let s = DispatchTime.now().uptimeNanoseconds
        try body()
        t.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
    }
    t.sort()
    return t[t.count / 2]
}

/// Measured sgemm GFLOP/s on square matrices with the current BLAS thread count, and single-threaded.
@discardableResult
func sgemmPeak(quick: Bool, verbose: Bool) -> (all: Double, one: Double) {
    let n = quick ? 512 : 1024
    var rng = SeededRandom(seed: 1)
    let a = Matrix(rows: n, cols: n, data: (0..<(n * n)).map { _ in rng.gaussian() })
    var c = Matrix(rows: n, cols: n)
    BLASPolicy.oneProblem.apply()
    let saved = BLAS.threads
    BLAS.gemm(a, a, into: &c)
    let flops = 2.0 * Double(n * n * n)
    let tAll = medianTime(quick ? 3 : 7) { BLAS.gemm(a, a, into: &c) }
    BLASPolicy.imagesInParallel.apply()   // what every per-image section below runs with
    let tOne = medianTime(quick ? 3 : 5) { BLAS.gemm(a, a, into: &c) }
    let r = (flops / tAll / 1e9, flops / tOne / 1e9)
    if verbose {
        print(String(format: "  sgemm %dx%dx%d: %.1f GFLOP/s on %d BLAS threads, %.1f GFLOP/s on 1 thread", n, n, n, r.0, saved, r.1))
    }
    return r
}

/// Peak resident memory (VmHWM) of this process in bytes; `resetPeakMemory()` restarts it.
func peakMemory() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        return kb * 1024
    }
    return 0
}

func currentMemory() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
    return 0
}

/// Resets the kernel's peak-RSS mark (Linux >= 4.0: writing 5 to clear_refs). Returns false when not allowed.
@discardableResult
func resetPeakMemory() -> Bool {
    guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
    h.write("5".data(using: .utf8)!)
    try? h.close()
    return true
}

/// Plain sequential read of a whole file in 4 MiB blocks (the memory-bandwidth / page-cache floor).
func plainRead(_ path: String) -> Int {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    let size = 4 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    defer { buf.deallocate() }
    var total = 0
    while true {
        let n = read(fd, buf, size)
        if n <= 0 { break }
        total += n
    }
    return total
}

func benchDir() -> String {
    let d = NSTemporaryDirectory() + "unseg-bench-\(getpid())"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Writes a store of `n` images of 40x40x384 random features (no images/labels).
func writeRandomStore(path: String, n: Int, type: FeatureType, deflate: Int?) throws {
    let meta = StoreMetadata(backbone: "bench", patchSize: 8, dataset: "bench", split: "bench")
    let w = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: 40, gridWidth: 40, channels: 384,
                                   options: StoreWriteOptions(featureType: type, deflate: deflate, writeImages: false, writeLabels: false))
    var rng = SeededRandom(seed: 3)
    // Smooth-ish values (a few distinct rows) so deflate sees data like real features, not pure noise.
    let basis = (0..<16).map { _ in (0..<384).map { _ in rng.gaussian() } }
    for i in 0..<n {
        var m = Matrix(rows: 1600, cols: 384)
        for r in 0..<1600 {
            let b = basis[(r / 100 + i) % 16]
            let s = 1 + 0.1 * rng.gaussian()
            for c in 0..<384 { m.data[r * 384 + c] = b[c] * s }
        }
        try w.write(i, features: m, image: nil, labels: nil, name: nil)
    }
    try w.commit()
}

func storeBench(quick: Bool) throws {
    let dir = benchDir()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let n = quick ? 200 : 500
    let memN = quick ? 200 : 2000
    let featureBytes = { (t: FeatureType) in 1600 * 384 * (t == .float16 ? 2 : 4) }
    print("  \(n) images of 40x40x384; warm page cache for both reads; medians of \(quick ? 3 : 5) passes")
    print("  variant              store MB/s   img/s   plain read MB/s   ratio   file MiB")
    for (type, deflate) in [(FeatureType.float16, Int?.none), (.float16, 4), (.float32, nil), (.float32, 4)] {
        let path = dir + "/s-\(type)-\(deflate ?? 0).h5"
        try writeRandomStore(path: path, n: n, type: type, deflate: deflate)
        let fileBytes = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let store = try FeatureStore(path: path)
        _ = plainRead(path)
        let tStore = try medianTime(quick ? 3 : 5) {
            let s = try StoreStream(store: store, prefetch: 2)
            while let item = try s.next() { _ = item.features.data[0] }
        }
        let tPlain = medianTime(quick ? 3 : 5) { _ = plainRead(path) }
        let decoded = Double(n * featureBytes(type))
        let mbStore = decoded / tStore / 1e6
        let mbPlain = Double(fileBytes) / tPlain / 1e6
        let name = "\(type)\(deflate.map { " deflate \($0)" } ?? "")"
        print(String(format: "  %-20@ %10.0f %7.0f %17.0f %7.2f %10.1f", name as NSString, mbStore, Double(n) / tStore,
                     mbPlain, (decoded / tStore) / (Double(fileBytes) / tPlain), Double(fileBytes) / 1048576))
        if deflate != nil {
            // Compressed chunks decoded by unseg on 1 and 2 threads (raw reads under the HDF5 lock).
            var rates: [Double] = []
            for threads in [1, 2] {
                let t = try medianTime(quick ? 3 : 5) {
                    let s = try StoreStream(store: store, prefetch: 8, decodeThreads: threads)
                    while let item = try s.next() { _ = item.features.data[0] }
                }
                rates.append(Double(n) / t)
            }
            print(String(format: "    decoded by unseg (%@): %.0f img/s on 1 thread, %.0f img/s on 2 threads (%.2fx)",
                         "\(store.chunkDecoding)" as NSString, rates[0], rates[1], rates[1] / rates[0]))
        }
        unlink(path)
    }
    // Peak memory while streaming 2,000 images of 40x40x384 float16 (issue target: < 300 MB).
    let path = dir + "/mem.h5"
    try writeRandomStore(path: path, n: memN, type: .float16, deflate: nil)
    let before = currentMemory()
    let canReset = resetPeakMemory()
    let store = try FeatureStore(path: path)
    let s = try StoreStream(store: store, order: .shuffled(seed: 1), prefetch: 2)
    var seen = 0
    while let item = try s.next() { seen += 1; _ = item.features.data[1] }
    let peak = peakMemory()
    print(String(format: "  streaming %d float16 images (%.0f MiB of features): peak RSS %.1f MB (%@), RSS before %.1f MB",
                 seen, Double(memN * featureBytes(.float16)) / 1048576, Double(peak) / 1e6,
                 canReset ? "peak mark reset before streaming" : "process-lifetime peak", Double(before) / 1e6))
}
