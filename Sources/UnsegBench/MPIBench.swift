import Foundation
import UnsegCore
import UnsegLinAlg
import UnsegPipeline
import UnsegStore
import UnsegSynthetic

/// Processes under mpirun on this machine: PriMaPs-EM and propose images/s on 1 and 2 ranks (one
/// thread each, so the ratio is the processes', not the threads'), through the binary as a user
/// runs it; and the bytes each rank sends per EM step (measured by `UNSEG_MPI_STATS=1`).
func mpiBench(quick: Bool) throws {
    let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let mpirun else {
        print("  skipped: mpirun not found (bash Tools/install-deps.sh --mpi)")
        return
    }
    let unseg = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("unseg").path
    guard FileManager.default.isExecutableFile(atPath: unseg) else { print("  skipped: \(unseg) not built"); return }
    let dir = NSTemporaryDirectory() + "unseg-bench-mpi-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let n = quick ? 64 : 128, epochs = quick ? 2 : 3, batch = 32
    let store = dir + "/train.h5"
    try Synthesize.writeStore(config: SyntheticConfig(imageCount: n, imageSize: 320, patchSize: 8, channels: 384, classes: 27, seed: 1, split: "train"),
                              path: store, threads: 2)
    func run(_ np: Int, _ args: [String], stats: Bool = false) throws -> (seconds: Double, stderr: String) {
        let p = Process()
        if np == 1 {
            p.executableURL = URL(fileURLWithPath: unseg)
            p.arguments = args
        } else {
            p.executableURL = URL(fileURLWithPath: mpirun)
            p.arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "\(np)", unseg] + args
        }
        var env = ProcessInfo.processInfo.environment
        if stats { env["UNSEG_MPI_STATS"] = "1" }
        p.environment = env
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        let t0 = Date()
        try p.run()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let s = Date().timeIntervalSince(t0)
        guard p.terminationStatus == 0 else { throw KernelError("\(args.first ?? "") on \(np) ranks failed: \(String(decoding: e, as: UTF8.self).prefix(400))") }
        return (s, String(decoding: e, as: UTF8.self))
    }
    // Proposals (PriMaPs, unrefined) and a Baseline to start EM from, once.
    let props = dir + "/props.h5", base = dir + "/base.h5"
    _ = try run(1, ["propose", "--store", store, "--out", props, "--threads", "2"])
    let baseRecipe = dir + "/base.yaml", emRecipe = dir + "/em.yaml"
    try "name: b\nclasses: 27\nbatch_size: \(batch)\nstages: [pca-init, cosine-kmeans]\npca-init:\n  sample_images: 16\ncosine-kmeans:\n  epochs: 1\n"
        .write(toFile: baseRecipe, atomically: true, encoding: .utf8)
    try "name: em\nclasses: 27\nbatch_size: \(batch)\ncheckpoint_every: 1000\nstages: [pca-init, cosine-kmeans, primaps-em]\npca-init:\n  sample_images: 16\ncosine-kmeans:\n  epochs: 1\nprimaps-em:\n  epochs: \(epochs)\n  proposals: file\n"
        .write(toFile: emRecipe, atomically: true, encoding: .utf8)
    _ = try run(1, ["fit", "--recipe", baseRecipe, "--store", store, "--checkpoint", base, "--threads", "2"])
    let steps = epochs * (n / batch)
    // Start-up: the same kind of command on a 2-image store (MPI_Init, opening files), 1 and 2 ranks.
    let tiny = dir + "/tiny.h5"
    try Synthesize.writeStore(config: SyntheticConfig(imageCount: 2, imageSize: 64, patchSize: 8, channels: 384, classes: 27, seed: 1, split: "train"),
                              path: tiny, threads: 1)
    let startup1 = try run(1, ["propose", "--store", tiny, "--out", dir + "/tiny-p1.h5", "--threads", "1"]).seconds
    let startup2 = try run(2, ["propose", "--store", tiny, "--out", dir + "/tiny-p2.h5", "--threads", "1"]).seconds
    print("  \(n) synthetic images 40x40x384 -> 320x320, batch \(batch), \(steps) EM steps; one thread per rank; wall time of the whole command (start-up included)")
    var emRate: [Double] = [], propRate: [Double] = []
    for np in [1, 2] {
        let ck = dir + "/em\(np).h5", out = dir + "/p\(np).h5"
        let em = try run(np, ["fit", "--recipe", emRecipe, "--store", store, "--proposals", props, "--init-from", base,
                              "--checkpoint", ck, "--threads", "1"], stats: np > 1)
        let pr = try run(np, ["propose", "--store", store, "--out", out, "--threads", "1"])
        let up = np == 1 ? startup1 : startup2
        emRate.append(Double(steps * batch) / max(em.seconds - up, 1e-3))
        propRate.append(Double(n) / max(pr.seconds - up, 1e-3))
        print(String(format: "  %d rank%@: EM %.1f images/s (%.2f s), propose %.1f images/s (%.2f s); without the start-up (%.2f s): EM %.1f, propose %.1f images/s",
                     np, np == 1 ? " " : "s", Double(steps * batch) / em.seconds, em.seconds, Double(n) / pr.seconds, pr.seconds,
                     up, emRate.last!, propRate.last!))
        if np > 1 {
            for line in em.stderr.split(separator: "\n") where line.hasPrefix("mpi-stats") {
                let words = line.split(separator: " ")
                if let i = words.firstIndex(of: "sent"), let b = Double(words[i + 1]) {
                    print(String(format: "    %@ %.2f MB sent per EM step (%.0f KB per image of the batch)", String(words[1 ... 4].joined(separator: " ")),
                                 b / Double(steps) / 1e6, b / Double(steps * batch) / 1e3))
                }
            }
        }
        try? FileManager.default.removeItem(atPath: ck)
        try? FileManager.default.removeItem(atPath: out)
    }
    print(String(format: "  2 ranks / 1 rank, start-up excluded: EM %.2fx, propose %.2fx (2 cores, one thread per rank: the ceiling is 2x)",
                 emRate[1] / emRate[0], propRate[1] / propRate[0]))
}
