import Foundation
import Synchronization

/// An error from a Python cross-check script, with its stderr.
public struct PythonError: Error, CustomStringConvertible {
    public var status: Int32
    public var stderr: String
    public var description: String { "python3 exited with \(status): \(stderr)" }
}

/// Runs `python3 -c script args...` (python3 from PATH; the test command installs h5py, numpy
/// and scipy first, see Tools/test.sh), feeding `stdin` if given. Returns stdout; throws
/// `PythonError` with stderr when the script fails, so a missing tool fails the test loudly.
public func runPython(_ script: String, args: [String] = [], stdin: String? = nil) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    let errBox = Mutex(Data())
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        let d = err.fileHandleForReading.readDataToEndOfFile()
        errBox.withLock { $0 = d }
        group.leave()
    }
    if let s = stdin { input.fileHandleForWriting.write(s.data(using: .utf8)!) }
    try? input.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw PythonError(status: p.terminationStatus, stderr: String(decoding: errBox.withLock { $0 }, as: UTF8.self))
    }
    return String(decoding: o, as: UTF8.self)
}
