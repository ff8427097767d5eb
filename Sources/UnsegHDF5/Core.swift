import CHDF5
import Foundation

/// An error from the HDF5 library or from checks made before calling it.
///
/// `file` and `object` name where it happened; `message` says what failed and,
/// where known, what to do; `stack` is HDF5's own error stack (most general
/// first), read instead of letting HDF5 print it.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    public var file: String?
    public var object: String?
    public var message: String
    public var stack: [String]

    public init(file: String? = nil, object: String? = nil, message: String, stack: [String] = []) {
        self.file = file
        self.object = object
        self.message = message
        self.stack = stack
    }

    public var description: String {
        var place = file ?? ""
        if let o = object { place += (place.isEmpty ? "" : ":") + o }
        var s = place.isEmpty ? message : "\(place): \(message)"
        if let detail = stack.last, !stack.isEmpty {
            s += " (HDF5: \(detail))"
        }
        return s
    }
}

/// Serialises every call into the HDF5 C library (the Debian build is not
/// thread-safe) and turns its error stack into `HDF5Error`s.
public enum HDF5 {
    /// One lock for all HDF5 calls. Recursive: wrappers may call wrappers.
    static let lock: NSRecursiveLock = {
        let l = NSRecursiveLock()
        l.name = "unseg.hdf5"
        return l
    }()

    private static let initialized: Bool = {
        _ = H5open()
        return true
    }()

    /// Runs `body` holding the HDF5 lock, after making sure the library is
    /// initialised and its automatic error printing is off.
    @inline(__always)
    public static func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        _ = initialized
        unseg_h5_silence()  // per thread in a thread-safe HDF5
        return try body()
    }

    /// Whether HDF5's automatic error printing is off on the calling thread (after `locked`).
    static func automaticErrorPrintingIsOff() -> Bool {
        locked {
            var fn: H5E_auto2_t? = nil
            var data: UnsafeMutableRawPointer? = nil
            _ = H5Eget_auto2(unseg_H5E_DEFAULT(), &fn, &data)
            return fn == nil
        }
    }

    /// HDF5's current error stack as lines ("H5Fopen: unable to open file"), then clears it.
    static func takeErrorStack() -> [String] {
        final class Box { var lines: [String] = [] }
        let box = Box()
        let unmanaged = Unmanaged.passRetained(box)
        defer { unmanaged.release() }
        _ = H5Ewalk2(unseg_H5E_DEFAULT(), H5E_WALK_DOWNWARD, { _, err, client in
            guard let err, let client else { return 0 }
            let box = Unmanaged<Box>.fromOpaque(client).takeUnretainedValue()
            let fn = err.pointee.func_name.map { String(cString: $0) } ?? "?"
            let desc = err.pointee.desc.map { String(cString: $0) } ?? ""
            box.lines.append("\(fn): \(desc)")
            return 0
        }, unmanaged.toOpaque())
        H5Eclear2(unseg_H5E_DEFAULT())
        return box.lines
    }

    /// Checks an `hid_t` result (negative means failure).
    @discardableResult
    static func check(_ id: hid_t, file: String?, object: String?, _ what: @autoclosure () -> String) throws -> hid_t {
        if id < 0 { throw HDF5Error(file: file, object: object, message: what(), stack: takeErrorStack()) }
        return id
    }

    /// Checks an `herr_t` result (negative means failure).
    static func check(_ status: herr_t, file: String?, object: String?, _ what: @autoclosure () -> String) throws {
        if status < 0 { throw HDF5Error(file: file, object: object, message: what(), stack: takeErrorStack()) }
    }

    /// The linked library's version, e.g. "1.10.8".
    public static var libraryVersion: String {
        locked {
            var maj: UInt32 = 0, min: UInt32 = 0, rel: UInt32 = 0
            H5get_libversion(&maj, &min, &rel)
            return "\(maj).\(min).\(rel)"
        }
    }

    /// Whether `path` is an HDF5 file (false for other files; throws when it cannot be read).
    public static func isHDF5(_ path: String) throws -> Bool {
        try locked {
            let r = H5Fis_hdf5(path)
            if r < 0 {
                _ = takeErrorStack()
                throw HDF5Error(file: path, message: "cannot read the file to check whether it is HDF5")
            }
            return r > 0
        }
    }
}

/// Owns one HDF5 identifier and closes it exactly once, under the lock.
public final class HDF5Handle: @unchecked Sendable {
    public let id: hid_t
    private let close: (hid_t) -> herr_t

    init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.close = close
    }

    deinit {
        // After HDF5's own atexit teardown every id is already closed: closing again would print.
        HDF5.locked { if H5Iis_valid(id) > 0 { _ = close(id) } }
    }
}

/// The text of a NUL-terminated C buffer (up to the first NUL), as UTF-8 (invalid bytes replaced).
func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
