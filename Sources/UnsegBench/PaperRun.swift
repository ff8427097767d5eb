import CUnsegKernels
import Foundation
import UnsegCore
import UnsegLinAlg
import UnsegProposals
import UnsegStore

/// `Tools/bench paper-run [--quick] [--dataset=cocostuff27] [--dir=D]`: the paper's run at real
/// size, end to end through the `unseg` binary on all cores, from the store to the test table and
/// the exported pseudo-labels. The synthetic corpus (the dataset's size at DINO ViT-S/8: 40x40x384
/// float16 features, 320x320 images and labels) is made once and cached in `D` (default
/// `.build/paper-run`); each step is timed as a child process (wall time, peak RSS from `wait4`)
/// next to the floors measured in the same run: a plain read of the bytes the step reads, its
/// matrix products at the measured sgemm rate, and the `exp` of every softmax value it needs.
/// Writes `paper-run.json` beside the stores.
struct PaperRunScale {
    let dataset: String
    let train: Int
    let val: Int
    let full: (train: Int, val: Int)
    var recipe: String { "Recipes/\(dataset)-dino_vits8.yaml" }

    static func make(dataset: String, quick: Bool) throws -> PaperRunScale {
        // Cityscapes-27: 2,975 train / 500 val. COCO-Stuff-27: the curated lists, 49,629 train / 2,175 val.
        let sizes: [String: (Int, Int)] = ["cityscapes27": (2975, 500), "cocostuff27": (49629, 2175)]
        guard let s = sizes[dataset] else {
            throw KernelError("paper-run: unknown --dataset=\(dataset); known: \(sizes.keys.sorted().joined(separator: ", "))")
        }
        return PaperRunScale(dataset: dataset, train: quick ? (s.0 + 9) / 10 : s.0, val: quick ? (s.1 + 9) / 10 : s.1, full: s)
    }
}

/// One child process: wall seconds, peak RSS (bytes) and its exit status.
struct ChildRun {
    let seconds: Double
    let peakRSS: Int
    let status: Int32
}

/// Runs `path args` with stdout to `log` (stderr stays on the terminal: the child's progress and
/// errors), waits with `wait4` for its resource usage.
func runChild(_ path: String, _ args: [String], log: String) throws -> ChildRun {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let t0 = DispatchTime.now().uptimeNanoseconds
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw KernelError("paper-run: cannot start \(path): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        if errno != EINTR { throw KernelError("paper-run: wait4 failed: \(String(cString: strerror(errno)))") }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    let exited = (status & 0x7f) == 0
    return ChildRun(seconds: seconds, peakRSS: Int(usage.ru_maxrss) * 1024, status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
}

/// What a step must do at least, given the floors measured in this run.
struct StepFloor {
    var readBytes: Double = 0     // bytes of the stores it reads (each pass counted)
    var flops: Double = 0         // matrix-product flops (gemm-shaped work)
    var exps: Double = 0          // softmax values it must exponentiate
}

struct PaperRunStep {
    let name: String
    let args: [String]
    let images: Int        // images (or image-passes, for fit) the step processes
    let unit: String
    var floor: StepFloor
    var run: ChildRun? = nil
}

func paperRunBench(quick: Bool, options: [String: String]) throws {
    let scale = try PaperRunScale.make(dataset: options["dataset"] ?? "cityscapes27", quick: quick)
    let unseg = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("unseg").path
    guard FileManager.default.isExecutableFile(atPath: unseg) else {
        throw KernelError("paper-run: \(unseg) is not built; run `swift build -c release` (Tools/bench paper-run builds it)")
    }
    guard FileManager.default.fileExists(atPath: scale.recipe) else {
        throw KernelError("paper-run: \(scale.recipe) not found; run from the repository root (Tools/bench does)")
    }
    let threads = Parallel.coreCount
    let root = (options["dir"] ?? ".build/paper-run") + "/\(scale.dataset)-\(scale.train)"
    let work = root + "/run"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    let train = root + "/train.h5", val = root + "/val.h5"
    print("  \(scale.dataset) at DINO ViT-S/8 size\(quick ? " (--quick: a tenth)" : ""): \(scale.train) train + \(scale.val) val images, 40x40x384 float16, 320x320; \(threads) threads; recipe \(scale.recipe)")
    if scale.dataset == "cocostuff27" {
        print("  (the synthetic street corpus at COCO-Stuff-27's size: \(scale.full.train) train / \(scale.full.val) val curated images in full)")
    }

    // 1. The corpus, once: regenerated when the generator's sources or the command change.
    let synthArgs = { (out: String, n: Int, split: String) in
        ["synth", "--out", out, "--images", "\(n)", "--split", split, "--seed", "0", "--threads", "\(threads)"]
    }
    let stamp = "synth \(scale.train) train / \(scale.val) val, seed 0, generator \(generatorFingerprint())"
    let stampPath = root + "/corpus.stamp"
    let cached = (try? String(contentsOfFile: stampPath, encoding: .utf8)) == stamp
        && FileManager.default.fileExists(atPath: train) && FileManager.default.fileExists(atPath: val)
    if cached {
        print("  corpus: cached in \(root) (delete it to regenerate)")
    } else {
        unlink(stampPath); unlink(train); unlink(val)
        var t = 0.0
        for (path, n, split) in [(train, scale.train, "train"), (val, scale.val, "val")] {
            let r = try runChild(unseg, synthArgs(path, n, split), log: work + "/synth-\(split).log")
            guard r.status == 0 else { throw KernelError("paper-run: unseg synth failed (exit \(r.status)); see \(work)/synth-\(split).log") }
            t += r.seconds
        }
        try stamp.write(toFile: stampPath, atomically: true, encoding: .utf8)
        print(String(format: "  corpus: made in %.1f s, cached in %@ (not part of the timings)", t, root))
    }
    let trainStore = try FeatureStore(path: train)
    let fileSize = { (p: String) in Double((try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0) }
    let trainBytes = fileSize(train), valBytes = fileSize(val)
    let featureBytes = Double(40 * 40 * 384 * 2)

    // 2. The floors, measured now on this machine.
    _ = plainRead(train)
    let readSeconds = medianTime(quick ? 3 : 2) { _ = plainRead(train) }
    let readRate = trainBytes / readSeconds
    let peak = sgemmPeak(quick: quick, verbose: false)
    let gemmRate = peak.one * 1e9 * Double(threads)   // the steps run one image per core, one BLAS thread each
    let expRate = Double(threads) * expFloorRate()
    print(String(format: "  floors: plain read of the train store %.2f GB/s (page cache, %.1f GB); sgemm %.0f GFLOP/s per core x %d cores; exp %.2f G values/s per core x %d",
                 readRate / 1e9, trainBytes / 1e9, peak.one, threads, expRate / 1e9 / Double(threads), threads))

    // 3. The steps.
    let (N, V) = (Double(scale.train), Double(scale.val))
    let hw = 1600.0, C = 384.0, K = 27.0, HW = 320.0 * 320.0
    let logits = 2 * hw * C * K                        // one [hw, C] x [C, K] product
    let recipe = try String(contentsOfFile: scale.recipe, encoding: .utf8)
    let emEpochs = Double(yamlInt(recipe, section: "primaps-em", key: "epochs") ?? 50)
    let kmEpochs = Double(yamlInt(recipe, section: "cosine-kmeans", key: "epochs") ?? 2)
    let pcaImages = min(N, Double(yamlInt(recipe, section: "pca-init", key: "sample_images") ?? 2976))
    let props = work + "/train-proposals.h5", ck = work + "/checkpoint.h5", testJSON = work + "/test.json"
    let pred = work + "/train-predictions.h5", export = work + "/pseudo-labels"
    let primaps = try primapsWork(trainStore)   // the CRF's labels: the masks and the background
    var steps = [
        PaperRunStep(name: "propose", args: ["propose", "--store", train, "--out", props, "--refine", "crf", "--threads", "\(threads)"],
                     images: scale.train, unit: "images",
                     floor: StepFloor(readBytes: trainBytes, flops: N * primaps.flops, exps: N * 10 * HW * primaps.labels)),
        PaperRunStep(name: "fit", args: ["fit", "--recipe", scale.recipe, "--store", train, "--proposals", props, "--checkpoint", ck,
                                         "--threads", "\(threads)"],
                     images: Int(pcaImages + (kmEpochs + emEpochs) * N), unit: "image-passes",
                     // PCA moments (hw C^2 per image); k-means: one product per pass; EM: the momentum
                     // copy's logits, the running copy's logits and the gradient product.
                     floor: StepFloor(readBytes: (kmEpochs + emEpochs) * N * (featureBytes + HW) + pcaImages * featureBytes,
                                      flops: pcaImages * 2 * hw * C * C + kmEpochs * N * logits + emEpochs * N * 3 * logits,
                                      exps: emEpochs * N * HW * K)),
        PaperRunStep(name: "test", args: ["test", "--checkpoint", ck, "--store", val, "--json", testJSON, "--threads", "\(threads)"],
                     images: scale.val * 4, unit: "image-rows",
                     floor: StepFloor(readBytes: 4 * valBytes, flops: 4 * V * logits, exps: 2 * V * (HW * K + 10 * HW * K))),
        PaperRunStep(name: "predict", args: ["predict", "--checkpoint", ck, "--store", train, "--out", pred, "--threads", "\(threads)"],
                     images: scale.train, unit: "images",
                     floor: StepFloor(readBytes: N * featureBytes, flops: N * logits, exps: 0)),
        PaperRunStep(name: "export", args: ["export", "--predictions", pred, "--store", train, "--out", export, "--threads", "\(threads)"],
                     images: scale.train, unit: "images",
                     floor: StepFloor(readBytes: N * 2 * HW, flops: 0, exps: 0)),
    ]
    for p in [props, ck, testJSON, pred] { unlink(p) }
    try? FileManager.default.removeItem(atPath: export)
    for i in steps.indices {
        print("  \(steps[i].name) ... (stdout in \(work)/\(steps[i].name).log)")
        let r = try runChild(unseg, steps[i].args, log: work + "/\(steps[i].name).log")
        guard r.status == 0 else {
            throw KernelError("paper-run: `unseg \(steps[i].args.joined(separator: " "))` failed (exit \(r.status)); see \(work)/\(steps[i].name).log")
        }
        steps[i].run = r
    }

    // 4. The table.
    let total = steps.reduce(0) { $0 + $1.run!.seconds }
    // Columns padded in Swift: Foundation's `%-8@` ignores the width on Linux.
    let pad = { (t: String, n: Int) in t.count >= n ? t : t + String(repeating: " ", count: n - t.count) }
    let lpad = { (t: String, n: Int) in t.count >= n ? t : String(repeating: " ", count: n - t.count) + t }
    let seconds = { (x: Double) in x < 10 ? String(format: "%.2f s", x) : String(format: "%.1f s", x) }
    print("\n  " + pad("step", 8) + lpad("wall s", 8) + lpad("share", 8) + "   " + pad("rate", 22) + lpad("peak RSS", 9)
          + lpad("read floor", 12) + lpad("sgemm floor", 13) + lpad("exp floor", 11) + "   bound by (wall / floor)")
    var rows: [[String: Any]] = []
    for s in steps {
        let r = s.run!
        let floors = [("read", s.floor.readBytes / readRate), ("sgemm", s.floor.flops / gemmRate), ("exp", s.floor.exps / expRate)]
        let top = floors.max { $0.1 < $1.1 }!
        print("  " + pad(s.name, 8) + lpad(String(format: "%.1f", r.seconds), 8) + lpad(String(format: "%.1f%%", 100 * r.seconds / total), 8)
              + "   " + pad(String(format: "%.1f ", Double(s.images) / r.seconds) + s.unit + "/s", 22)
              + lpad(String(format: "%.0f MB", Double(r.peakRSS) / 1e6), 9) + lpad(seconds(floors[0].1), 12)
              + lpad(seconds(floors[1].1), 13) + lpad(seconds(floors[2].1), 11)
              + "   " + top.0 + String(format: " (%.1fx)", r.seconds / max(top.1, 1e-9)))
        rows.append(["step": s.name, "command": (["unseg"] + s.args).joined(separator: " "), "wall_seconds": r.seconds,
                     "share": r.seconds / total, "items": s.images, "unit": s.unit, "items_per_second": Double(s.images) / r.seconds,
                     "peak_rss_bytes": r.peakRSS, "read_floor_seconds": floors[0].1, "sgemm_floor_seconds": floors[1].1,
                     "exp_floor_seconds": floors[2].1])
    }
    let peakAll = steps.map { $0.run!.peakRSS }.max()!
    print(String(format: "  total    %7.1f s (%.1f min) from the store to the test table and the pseudo-labels; peak RSS of any step %.0f MB",
                 total, total / 60, Double(peakAll) / 1e6))
    if scale.dataset == "cityscapes27" && !quick {
        let target = 15.0 * 60
        print(total <= target ? String(format: "  target (15 min on 2 cores): met, %.1f min", total / 60)
              : String(format: "  target (15 min on 2 cores): not met, %.1f min over; each step's bound is in the last column", (total - target) / 60))
    }
    if let t = try? String(contentsOfFile: testJSON, encoding: .utf8), let d = t.data(using: .utf8),
       let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any], let rowsJ = j["rows"] as? [[String: Any]] {
        for row in rowsJ {
            if let name = row["name"] as? String, let acc = row["accuracy"] as? Double, let miou = row["miou"] as? Double {
                print("  test: " + pad(name, 28) + String(format: " Acc %.2f  mIoU %.2f", acc, miou))
            }
        }
    }
    let json: [String: Any] = [
        "dataset": scale.dataset, "quick": quick, "train_images": scale.train, "val_images": scale.val, "threads": threads,
        "recipe": scale.recipe, "commit": gitCommit(), "cpu": cpuModel(),
        "floors": ["plain_read_bytes_per_second": readRate, "sgemm_gflops_per_core": peak.one, "exp_values_per_second": expRate],
        "steps": rows, "total_seconds": total, "peak_rss_bytes": peakAll,
    ]
    let out = root + "/paper-run.json"
    try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: out))
    print("  wrote \(out)")
}

/// PriMaPs' matrix work per image and its masks per image (background included), measured on the
/// store's first images with PriMaPs' own count of the flops it did (`stats.estimatedFlops`).
func primapsWork(_ store: FeatureStore, sample: Int = 8) throws -> (flops: Double, labels: Double) {
    let stream = try StoreStream(store: store, subset: Array(0..<min(sample, store.count)))
    let maps = try stream.nextBatch(sample).map(\.features)
    let out = try PriMaPs.proposeBatch(maps, height: store.layout.gridHeight, width: store.layout.gridWidth, threads: Parallel.coreCount)
    let n = Double(max(out.count, 1))
    return (out.reduce(0) { $0 + $1.stats.estimatedFlops } / n, Double(out.reduce(0) { $0 + $1.maskCount }) / n + 1)
}

/// `exp` values per second on one core: the hardware floor of any softmax (the AVX2 kernel's exp).
/// The fastest of 15 runs over an L2-resident buffer after a warm-up: a floor is the best the
/// machine does (a median moved by 40 % between runs while the clock settled).
func expFloorRate() -> Double {
    let n = 1 << 16
    var buf = [Float](repeating: 0, count: n)
    for i in 0..<n { buf[i] = -Float(i % 97) * 0.25 }
    var sink: Float = 0
    let t = buf.withUnsafeBufferPointer { b in
        for _ in 0..<200 { sink += unseg_exp_sum(b.baseAddress!, n) }
        var best = Double.infinity
        for _ in 0..<15 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<16 { sink += unseg_exp_sum(b.baseAddress!, n) }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / 16)
        }
        return best
    }
    if sink == -1 { print("") }
    return Double(n) / t
}

/// An integer `key: value` inside `section:` of a small recipe YAML (the bench needs only a few).
func yamlInt(_ text: String, section: String, key: String) -> Int? {
    var inSection = false
    for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if !line.hasPrefix(" ") && !line.isEmpty { inSection = line.trimmingCharacters(in: .whitespaces) == "\(section):" ; continue }
        if inSection {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == key { return Int(parts[1]) }
        }
    }
    return nil
}

/// A fingerprint of the synthetic generator's sources, so a cached corpus is remade when they change.
func generatorFingerprint() -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    let dir = "Sources/UnsegSynthetic"
    let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    for f in files {
        guard let d = FileManager.default.contents(atPath: dir + "/" + f) else { continue }
        for b in d { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    }
    return String(h, radix: 16)
}

func gitCommit() -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    p.arguments = ["rev-parse", "--short", "HEAD"]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return "unknown" }
    let d = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return p.terminationStatus == 0 ? String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
}

func cpuModel() -> String {
    guard let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
    for line in s.split(separator: "\n") where line.hasPrefix("model name") {
        return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }
    return "unknown"
}
