import Foundation

func tempPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "unseg-store-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}
