import Foundation
import Synchronization

/// Result of running the built `unseg` binary.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The `unseg` executable next to the test bundle (same build directory), or $UNSEG_BIN.
func unsegBinary() -> URL {
    if let p = ProcessInfo.processInfo.environment["UNSEG_BIN"] { return URL(fileURLWithPath: p) }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("unseg")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    // Bundle layout: .build/<config>/unsegPackageTests.xctest; the binary is .build/<config>/unseg.
    for b in Bundle.allBundles {
        let c = b.bundleURL.deletingLastPathComponent().appendingPathComponent("unseg")
        if FileManager.default.isExecutableFile(atPath: c.path) { return c }
    }
    return URL(fileURLWithPath: ".build/release/unseg")
}

/// Runs `unseg args...` with a clean environment for progress (stderr is a pipe, so no progress bar).
func runUnseg(_ args: [String], cwd: String? = nil, environment: [String: String]? = nil) throws -> CLIResult {
    try runProcess(unsegBinary().path, args, cwd: cwd, environment: environment)
}

/// Runs `executable args...`, both pipes read concurrently; `environment` replaces the inherited one.
func runProcess(_ executable: String, _ args: [String], cwd: String? = nil, environment: [String: String]? = nil) throws -> CLIResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if let e = environment { p.environment = e }
    if let c = cwd { p.currentDirectoryURL = URL(fileURLWithPath: c) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes concurrently so a chatty child cannot block on a full pipe.
    let errBox = Mutex(Data())
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        let d = err.fileHandleForReading.readDataToEndOfFile()
        errBox.withLock { $0 = d }
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.withLock { $0 }
    p.waitUntilExit()
    return CLIResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errData, as: UTF8.self))
}

func scratchDir(_ name: String) -> String {
    let d = NSTemporaryDirectory() + "unseg-cli-tests-\(getpid())/\(name)"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}
