import CHDF5
import Foundation

/// Something attributes hang on: a file's root group, a group or a dataset.
public protocol HDF5Object: AnyObject {
    var handle: HDF5Handle { get }
    /// Path of the file on disk, for messages.
    var filePath: String { get }
    /// Path of the object inside the file ("/" for the root).
    var objectPath: String { get }
}

/// A group-like location: the file's root group or a group in it.
///
/// `@unchecked Sendable`: owns a C handle; every HDF5 call on it runs under the global HDF5 lock
/// (non-final, so the compiler cannot check the conformance itself; all stored properties are `let`).
public class HDF5Location: HDF5Object, @unchecked Sendable {
    public let handle: HDF5Handle
    public let filePath: String
    public let objectPath: String

    init(handle: HDF5Handle, filePath: String, objectPath: String) {
        self.handle = handle
        self.filePath = filePath
        self.objectPath = objectPath
    }

    func childPath(_ name: String) -> String {
        if name.hasPrefix("/") { return name }
        return objectPath == "/" ? "/" + name : objectPath + "/" + name
    }

    /// Whether a link `name` (a relative path, intermediate groups included) exists here.
    public func contains(_ name: String) -> Bool {
        HDF5.locked {
            var prefix = ""
            for part in name.split(separator: "/") {
                prefix += (prefix.isEmpty ? "" : "/") + part
                if H5Lexists(handle.id, prefix, unseg_H5P_DEFAULT()) <= 0 {
                    _ = HDF5.takeErrorStack()
                    return false
                }
            }
            return true
        }
    }

    /// Names of the direct members (groups, datasets), in HDF5's name order.
    public func memberNames() throws -> [String] {
        try HDF5.locked {
            var info = H5G_info_t()
            try HDF5.check(H5Gget_info(handle.id, &info), file: filePath, object: objectPath, "cannot list the group")
            var names: [String] = []
            for i in 0..<info.nlinks {
                let n = H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, unseg_H5P_DEFAULT())
                if n < 0 { throw HDF5Error(file: filePath, object: objectPath, message: "cannot read member names", stack: HDF5.takeErrorStack()) }
                var buf = [CChar](repeating: 0, count: Int(n) + 1)
                H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, unseg_H5P_DEFAULT())
                names.append(cString(buf))
            }
            return names
        }
    }

    /// Whether member `name` is a dataset (false for groups and missing names).
    public func isDataset(_ name: String) -> Bool {
        guard contains(name) else { return false }
        return HDF5.locked {
            var info = H5O_info_t()
            let r = H5Oget_info_by_name2(handle.id, name, &info, UInt32(H5O_INFO_BASIC), unseg_H5P_DEFAULT())
            if r < 0 { _ = HDF5.takeErrorStack(); return false }
            return info.type == H5O_TYPE_DATASET
        }
    }

    /// Opens the existing group `name`.
    public func group(_ name: String) throws -> HDF5Group {
        try HDF5.locked {
            guard contains(name) else {
                throw HDF5Error(file: filePath, object: childPath(name), message: "no such group")
            }
            let id = try HDF5.check(H5Gopen2(handle.id, name, unseg_H5P_DEFAULT()),
                                    file: filePath, object: childPath(name), "cannot open the group")
            return HDF5Group(handle: HDF5Handle(id, close: H5Gclose), filePath: filePath, objectPath: childPath(name))
        }
    }

    /// Creates group `name` (intermediate groups too).
    @discardableResult
    public func createGroup(_ name: String) throws -> HDF5Group {
        try HDF5.locked {
            let lcpl = H5Pcreate(unseg_H5P_LINK_CREATE())
            defer { H5Pclose(lcpl) }
            H5Pset_create_intermediate_group(lcpl, 1)
            let id = try HDF5.check(H5Gcreate2(handle.id, name, lcpl, unseg_H5P_DEFAULT(), unseg_H5P_DEFAULT()),
                                    file: filePath, object: childPath(name), "cannot create the group")
            return HDF5Group(handle: HDF5Handle(id, close: H5Gclose), filePath: filePath, objectPath: childPath(name))
        }
    }

    /// Opens the existing dataset `name`.
    public func dataset(_ name: String) throws -> HDF5Dataset {
        try HDF5.locked {
            guard contains(name) else {
                throw HDF5Error(file: filePath, object: childPath(name), message: "no such dataset")
            }
            let id = try HDF5.check(H5Dopen2(handle.id, name, unseg_H5P_DEFAULT()),
                                    file: filePath, object: childPath(name), "cannot open the dataset (is it a group?)")
            return try HDF5Dataset(handle: HDF5Handle(id, close: H5Dclose), filePath: filePath, objectPath: childPath(name))
        }
    }

    /// Creates a dataset of `type` and `shape`.
    ///
    /// - chunk: chunk shape (same rank as `shape`, each entry in `1...shape[i]`); required for compression.
    /// - deflate: gzip level 1...9 (implies chunking); `shuffle` adds the byte-shuffle filter before it.
    public func createDataset(_ name: String, type: HDF5ElementType, shape: [Int], chunk: [Int]? = nil,
                              deflate: Int? = nil, shuffle: Bool = false) throws -> HDF5Dataset {
        let where_ = childPath(name)
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw HDF5Error(file: filePath, object: where_, message: "negative dimension in shape \(shape)")
        }
        if let c = chunk {
            guard c.count == shape.count, zip(c, shape).allSatisfy({ $0.0 >= 1 && $0.0 <= max($0.1, 1) }) else {
                throw HDF5Error(file: filePath, object: where_,
                                message: "chunk shape \(c) does not fit dataset shape \(shape)")
            }
        }
        if deflate != nil && chunk == nil {
            throw HDF5Error(file: filePath, object: where_, message: "compression needs a chunk shape")
        }
        if let level = deflate, !(0...9).contains(level) {
            throw HDF5Error(file: filePath, object: where_, message: "deflate level \(level) is not in 0...9")
        }
        if case .other(let s) = type {
            throw HDF5Error(file: filePath, object: where_, message: "cannot create datasets of type \(s)")
        }
        return try HDF5.locked {
            let dims = shape.map { hsize_t($0) }
            let space = try HDF5.check(H5Screate_simple(Int32(dims.count), dims, nil), file: filePath, object: where_, "cannot create the dataspace")
            defer { H5Sclose(space) }
            let dtype = type.makeType()
            defer { H5Tclose(dtype) }
            let dcpl = H5Pcreate(unseg_H5P_DATASET_CREATE())
            defer { H5Pclose(dcpl) }
            H5Pset_obj_track_times(dcpl, false)  // no timestamps: the same content gives the same bytes (groups, in
                                                 // HDF5's default file format, carry none; a test checks both)
            if let c = chunk {
                let cd = c.map { hsize_t($0) }
                try HDF5.check(H5Pset_chunk(dcpl, Int32(cd.count), cd), file: filePath, object: where_, "cannot set chunking \(c)")
                if shuffle { H5Pset_shuffle(dcpl) }
                if let level = deflate { H5Pset_deflate(dcpl, UInt32(level)) }
            }
            let lcpl = H5Pcreate(unseg_H5P_LINK_CREATE())
            defer { H5Pclose(lcpl) }
            H5Pset_create_intermediate_group(lcpl, 1)
            // No chunk cache for the writer: every chunk is allocated when it is written, so the file
            // layout follows the write order alone (with a cache, chunks are allocated when the
            // caches are flushed at close, in an order HDF5 does not fix: the same content could
            // give different bytes from one run to the next). Writers write whole chunks.
            let dapl = H5Pcreate(unseg_H5P_DATASET_ACCESS())
            defer { H5Pclose(dapl) }
            if chunk != nil { H5Pset_chunk_cache(dapl, 0, 0, 1.0) }
            let id = try HDF5.check(H5Dcreate2(handle.id, name, dtype, space, lcpl, dcpl, dapl),
                                    file: filePath, object: where_, "cannot create the dataset")
            return try HDF5Dataset(handle: HDF5Handle(id, close: H5Dclose), filePath: filePath, objectPath: where_)
        }
    }

    /// Creates a 1-D variable-length string dataset holding `values`.
    @discardableResult
    public func createStringDataset(_ name: String, values: [String]) throws -> HDF5Dataset {
        let ds = try createDataset(name, type: .variableString, shape: [values.count])
        try ds.writeStrings(values)
        return ds
    }
}

/// A group inside a file.
public final class HDF5Group: HDF5Location, @unchecked Sendable {}   // as HDF5Location

/// An open HDF5 file; also its root group.
public final class HDF5File: HDF5Location, @unchecked Sendable {   // as HDF5Location
    public enum Mode: Sendable { case readOnly, readWrite }

    /// Opens an existing file. Errors say whether it does not exist, is not HDF5, or is damaged.
    public static func open(_ path: String, mode: Mode = .readOnly) throws -> HDF5File {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw HDF5Error(file: path, message: "no such file; check the path")
        }
        if isDir.boolValue {
            throw HDF5Error(file: path, message: "is a directory, not an HDF5 file")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw HDF5Error(file: path, message: "the file is not readable (permissions)")
        }
        return try HDF5.locked {
            let sig = H5Fis_hdf5(path)
            if sig <= 0 {
                _ = HDF5.takeErrorStack()
                throw HDF5Error(file: path, message: "is not an HDF5 file (no HDF5 signature); expected a feature store or an output written by unseg or h5py")
            }
            let flags = mode == .readOnly ? unseg_H5F_ACC_RDONLY() : unseg_H5F_ACC_RDWR()
            let id = H5Fopen(path, flags, unseg_H5P_DEFAULT())
            if id < 0 {
                let stack = HDF5.takeErrorStack()
                let truncated = stack.contains { $0.contains("truncated") || $0.contains("eof") }
                throw HDF5Error(file: path,
                                message: truncated
                                    ? "the HDF5 file is truncated (an interrupted copy or write?); write or copy it again"
                                    : "cannot open the HDF5 file; it may be damaged or still open for writing elsewhere",
                                stack: stack)
            }
            return HDF5File(handle: HDF5Handle(id, close: H5Fclose), filePath: path, objectPath: "/")
        }
    }

    /// Creates (or truncates) a file at `path`.
    public static func create(_ path: String) throws -> HDF5File {
        try HDF5.locked {
            let id = H5Fcreate(path, unseg_H5F_ACC_TRUNC(), unseg_H5P_DEFAULT(), unseg_H5P_DEFAULT())
            if id < 0 {
                let dir = (path as NSString).deletingLastPathComponent
                throw HDF5Error(file: path,
                                message: "cannot create the file; check that the directory '\(dir.isEmpty ? "." : dir)' exists and is writable",
                                stack: HDF5.takeErrorStack())
            }
            return HDF5File(handle: HDF5Handle(id, close: H5Fclose), filePath: path, objectPath: "/")
        }
    }

    /// Writes everything buffered to disk.
    public func flush() throws {
        try HDF5.locked {
            try HDF5.check(H5Fflush(handle.id, H5F_SCOPE_GLOBAL), file: filePath, object: nil, "cannot flush the file")
        }
    }
}

/// An output file written under a temporary name in the destination's directory
/// and renamed into place by `commit()`, so an interrupted run leaves either the
/// old file or the new one, never half of one. Without `commit()` the temporary
/// file is removed when this object goes away.
public final class AtomicHDF5File {
    public let finalPath: String
    public let temporaryPath: String
    public private(set) var file: HDF5File?
    private var committed = false

    public init(path: String) throws {
        finalPath = path
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw HDF5Error(file: path, message: "the output directory '\(dir)' does not exist; create it first")
        }
        temporaryPath = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        file = try HDF5File.create(temporaryPath)
    }

    /// Flushes, closes and renames the temporary file to `finalPath`.
    /// All datasets and groups opened from `file` must have been released first.
    public func commit() throws {
        guard file != nil else { return }
        try file!.flush()
        file = nil   // closes the file before the rename (weak close: once the last object is released)
        if rename(temporaryPath, finalPath) != 0 {
            let err = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporaryPath)
            throw HDF5Error(file: finalPath, message: "cannot move the finished output into place: \(err)")
        }
        committed = true
    }

    /// Removes the temporary file without touching `finalPath`.
    public func discard() {
        file = nil
        if !committed { try? FileManager.default.removeItem(atPath: temporaryPath) }
    }

    deinit { if !committed { discard() } }
}
