import Foundation

/// Runs a Python script with `python3` (found on PATH) and returns stdout; throws with stderr on failure.
/// The test suite's command installs h5py/numpy/scipy first (Tools/test.sh).
func runPython(_ script: String, args: [String] = []) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw NSError(domain: "python", code: Int(p.terminationStatus),
                      userInfo: [NSLocalizedDescriptionKey: String(decoding: e, as: UTF8.self)])
    }
    return String(decoding: o, as: UTF8.self)
}

func tempPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "unseg-store-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}
