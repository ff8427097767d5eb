import Dispatch
import Foundation
import Synchronization
import UnsegHDF5

/// A clash between command-line paths, or an output that cannot be written, phrased with the
/// options and paths involved (exit 1, like every file error).
public struct OutputPathError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Temporary outputs of this process (files and folders being written), removed when the process
/// is interrupted by SIGINT or SIGTERM, and temporaries of dead processes, removed by the next run
/// on the same output.
///
/// Every output is written as `.NAME.tmp-PID-RANDOM` in the destination's directory and renamed
/// into place when complete.
public enum Temporaries {
    static let active = Mutex<Set<String>>([])
    /// Lock files of `OutputLock`s held by this process (removed on interruption, not counted).
    static let locks = Mutex<Set<String>>([])
    /// Held while an output is being moved into place, so an interruption never falls between
    /// the renames of a folder replacement.
    static let committing = NSLock()

    /// A fresh temporary name for `path` (same directory, so the final rename is atomic).
    public static func name(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    }

    public static func register(_ path: String) { _ = active.withLock { $0.insert(path) } }
    public static func unregister(_ path: String) { _ = active.withLock { $0.remove(path) } }

    /// Removes `.NAME.tmp-PID-*` files and folders next to `path` whose process is gone.
    public static func removeStale(of path: String) {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let prefix = ".\(url.lastPathComponent).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let pid = Int32(rest.split(separator: "-").first ?? "") else { continue }
            if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(atPath: dir + "/" + name)
            }
        }
    }

    /// Removes every registered temporary and lock now (before this process aborts an MPI job).
    public static func removeAll() {
        for p in active.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: p) }
        for p in locks.withLock({ $0 }) { unlink(p) }
    }

    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
    static let signalQueue = DispatchQueue(label: "unseg.signals")

    /// On SIGINT / SIGTERM: remove every registered temporary and exit with 128 + the signal
    /// (130 / 143). Call once, at program start, from the main thread.
    public static func removeOnInterrupt() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            // Its own queue: the global queues may be busy with a parallel batch.
            let src = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            src.setEventHandler {
                committing.lock()   // never between the renames of a commit; not released: we exit
                let paths = active.withLock { $0 }
                for p in paths { try? FileManager.default.removeItem(atPath: p) }
                for p in locks.withLock({ $0 }) { unlink(p) }
                let name = sig == SIGINT ? "interrupted" : "terminated"
                FileHandle.standardError.write("\n\(name): removed \(paths.count) unfinished output\(paths.count == 1 ? "" : "s")\n".data(using: .utf8)!)
                _exit(128 + sig)
            }
            src.resume()
            sources.append(src)
        }
    }
}

/// Creates an HDF5 output under a temporary name (stale temporaries of dead processes removed,
/// registered for removal on interruption).
func atomicHDF5Output(_ path: String) throws -> AtomicHDF5File {
    Temporaries.removeStale(of: path)
    let out = try AtomicHDF5File(path: path)
    Temporaries.register(out.temporaryPath)
    return out
}

/// A folder output (overlays, an export, a report) written under a temporary name and renamed
/// into place by `commit()`. An existing destination is replaced only when it is empty or was
/// written by unseg (it holds the marker file `.unseg-output`); anything else is refused.
public final class AtomicDirectory {
    public static let marker = ".unseg-output"
    public let finalPath: String
    public let temporaryPath: String
    public let option: String
    private var done = false

    /// - option: the command-line option the path came from (for messages), e.g. `--report`.
    public init(path: String, option: String) throws {
        finalPath = path
        self.option = option
        let fm = FileManager.default
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw OutputPathError("\(option) \(path): is a file, not a folder; choose a folder path")
            }
            let entries = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            if !entries.isEmpty && !entries.contains(Self.marker) {
                throw OutputPathError("\(option) \(path): the folder exists and holds files unseg did not write; choose a new folder or empty it")
            }
        }
        do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw OutputPathError("\(option) \(path): cannot create the parent folder \(parent) (\(Self.reason(error))); choose a writable path")
        }
        Temporaries.removeStale(of: path)
        temporaryPath = Temporaries.name(for: path)
        do { try fm.createDirectory(atPath: temporaryPath, withIntermediateDirectories: false) } catch {
            throw OutputPathError("\(option) \(path): cannot write in \(parent) (\(Self.reason(error))); choose a writable path")
        }
        Temporaries.register(temporaryPath)
        _ = fm.createFile(atPath: temporaryPath + "/" + Self.marker, contents: Data("written by unseg; replaced by the next run with the same output\n".utf8))
    }

    /// A path inside the temporary folder for the relative path `name`.
    public func path(_ name: String) -> String { temporaryPath + "/" + name }

    /// Moves the finished folder into place, replacing an earlier unseg output there: the old
    /// folder is renamed away and the new one renamed in back to back (an interruption waits for
    /// both), and only then is the old one deleted.
    public func commit() throws {
        guard !done else { return }
        let fm = FileManager.default
        var old: String?
        Temporaries.committing.lock()
        if fm.fileExists(atPath: finalPath) {
            let o = Temporaries.name(for: finalPath)
            if rename(finalPath, o) != 0 {
                let err = String(cString: strerror(errno))
                Temporaries.committing.unlock()
                throw OutputPathError("\(option) \(finalPath): cannot replace the earlier output (\(err)); remove it and run again")
            }
            Temporaries.register(o)
            old = o
        }
        if rename(temporaryPath, finalPath) != 0 {
            let err = String(cString: strerror(errno))
            if let o = old { _ = rename(o, finalPath); Temporaries.unregister(o) }   // put the earlier output back
            Temporaries.committing.unlock()
            discard()
            throw OutputPathError("\(option) \(finalPath): cannot move the finished folder into place (\(err)); choose a writable path")
        }
        Temporaries.unregister(temporaryPath)
        done = true
        Temporaries.committing.unlock()
        if let o = old {
            try? fm.removeItem(atPath: o)
            Temporaries.unregister(o)
        }
    }

    /// Removes the temporary folder.
    public func discard() {
        guard !done else { return }
        try? FileManager.default.removeItem(atPath: temporaryPath)
        Temporaries.unregister(temporaryPath)
        done = true
    }

    deinit { discard() }

    public static func reason(_ error: Error) -> String {
        let e = error as NSError
        if let u = e.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        if e.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(e.code))) }
        switch e.code {
        case NSFileWriteNoPermissionError: return "permission denied"
        case NSFileWriteFileExistsError: return "a file is in the way"
        case NSFileWriteOutOfSpaceError: return "no space left"
        default: return "it is not a writable folder"
        }
    }
}

/// Writes a small file (JSON, Markdown) atomically; errors name the option and the path.
public func writeOutputFile(_ data: Data, to path: String, option: String) throws {
    Temporaries.removeStale(of: path)
    let tmp = Temporaries.name(for: path)
    Temporaries.register(tmp)
    defer { Temporaries.unregister(tmp) }
    do {
        try data.write(to: URL(fileURLWithPath: tmp))
    } catch {
        try? FileManager.default.removeItem(atPath: tmp)
        throw OutputPathError("\(option) \(path): cannot write the file (\(AtomicDirectory.reason(error))); choose a writable path")
    }
    if rename(tmp, path) != 0 {
        let err = String(cString: strerror(errno))
        try? FileManager.default.removeItem(atPath: tmp)
        throw OutputPathError("\(option) \(path): cannot write the file (\(err)); choose a writable path")
    }
}

/// Checks that no output of a command is one of its inputs: paths are compared after resolving
/// symbolic links, and by device and inode where the file exists; a folder output may not hold
/// an input. Runs before anything is written.
public enum OutputGuard {
    public typealias Named = (option: String, path: String)

    public static func check(outputs: [Named], inputs: [Named], folders: [Named] = []) throws {
        func canonical(_ p: String) -> String {
            let url = URL(fileURLWithPath: p)
            if FileManager.default.fileExists(atPath: p) { return url.resolvingSymlinksInPath().standardizedFileURL.path }
            let parent = url.deletingLastPathComponent().resolvingSymlinksInPath().standardizedFileURL
            return parent.appendingPathComponent(url.lastPathComponent).path
        }
        func identity(_ p: String) -> (UInt64, UInt64)? {
            var st = stat()
            guard stat(p, &st) == 0 else { return nil }
            return (UInt64(st.st_dev), UInt64(st.st_ino))
        }
        let allOutputs = outputs + folders
        for o in allOutputs {
            for i in inputs {
                let same = canonical(o.path) == canonical(i.path)
                    || (identity(o.path) != nil && identity(o.path)! == identity(i.path) ?? (0, 0))
                if same {
                    throw OutputPathError("\(o.option) \(o.path) is the same file as \(i.option) \(i.path); an output never replaces an input: choose another \(o.option)")
                }
            }
        }
        for (a, oa) in allOutputs.enumerated() {
            for ob in allOutputs.dropFirst(a + 1) where canonical(oa.path) == canonical(ob.path) {
                throw OutputPathError("\(oa.option) and \(ob.option) are the same path \(oa.path); give each output its own path")
            }
        }
        for f in folders {
            let dir = canonical(f.path) + "/"
            for i in inputs where canonical(i.path).hasPrefix(dir) {
                throw OutputPathError("\(f.option) \(f.path) holds the input \(i.option) \(i.path), and a folder output replaces its folder; choose another \(f.option)")
            }
        }
        let fm = FileManager.default
        for o in outputs + folders {
            let parent = URL(fileURLWithPath: o.path).deletingLastPathComponent().path
            var isDir: ObjCBool = false
            let isFolderOutput = folders.contains { $0.path == o.path && $0.option == o.option }
            if fm.fileExists(atPath: o.path, isDirectory: &isDir), isDir.boolValue != isFolderOutput {
                throw OutputPathError("\(o.option) \(o.path): is \(isDir.boolValue ? "a folder" : "a file"); \(o.option) needs \(isFolderOutput ? "a folder" : "a file") path: choose another")
            }
            if !isFolderOutput {
                if !fm.fileExists(atPath: parent, isDirectory: &isDir) {
                    throw OutputPathError("\(o.option) \(o.path): the folder \(parent) does not exist; create it or choose another path")
                }
                if !isDir.boolValue {
                    throw OutputPathError("\(o.option) \(o.path): \(parent) is a file, not a folder; choose another path")
                }
                if access(parent, W_OK) != 0 {
                    throw OutputPathError("\(o.option) \(o.path): the folder \(parent) is not writable (\(String(cString: strerror(errno)))); choose another path")
                }
            } else {
                // A folder output's parent is created if missing, so it only must not be blocked by a file.
                var p = URL(fileURLWithPath: o.path).deletingLastPathComponent()
                while p.path != "/" && !fm.fileExists(atPath: p.path) { p = p.deletingLastPathComponent() }
                if fm.fileExists(atPath: p.path, isDirectory: &isDir), !isDir.boolValue {
                    throw OutputPathError("\(o.option) \(o.path): \(p.path) is a file, not a folder; choose another path")
                }
            }
        }
    }
}

/// An advisory lock on an output that one process rewrites for a long time (a checkpoint): a
/// second process on the same output stops with a clear error. The lock is `flock` on a hidden
/// file `.NAME.lock` beside the output; the kernel releases it when the process dies, so a lock
/// left by a killed process does not block, and the next run reuses the file.
public final class OutputLock {
    public let path: String
    let lockPath: String
    private var fd: Int32

    public init(path: String, option: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        lockPath = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).lock").path
        fd = -1
        // The holder unlinks the file when it is done: a lock won on a file that is no longer the
        // one at `lockPath` (another process released it in between) is retried on the new file.
        for _ in 0..<100 {
            let f = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard f >= 0 else {
                throw OutputPathError("\(option) \(path): cannot create the lock file \(lockPath) (\(String(cString: strerror(errno)))); choose a writable path")
            }
            if flock(f, LOCK_EX | LOCK_NB) != 0 {
                var buf = [UInt8](repeating: 0, count: 32)
                let n = pread(f, &buf, 31, 0)
                let holder = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
                close(f)
                throw StoreError(file: path, "another unseg process (pid \(holder)) is writing this checkpoint; wait for it to finish, or pass another \(option)")
            }
            var a = stat(), b = stat()
            if fstat(f, &a) == 0 && stat(lockPath, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev {
                fd = f
                break
            }
            close(f)
        }
        guard fd >= 0 else {
            throw StoreError(file: path, "cannot take the lock \(lockPath): it keeps being replaced; is another unseg process starting on this checkpoint?")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        _ = Temporaries.locks.withLock { $0.insert(lockPath) }
    }

    /// Releases the lock and removes the lock file.
    public func release() {
        guard fd >= 0 else { return }
        unlink(lockPath)
        _ = Temporaries.locks.withLock { $0.remove(lockPath) }
        close(fd)
        fd = -1
    }

    deinit { release() }
}
