import CHDF5
import Foundation

/// An open dataset: shape, element type, storage layout, hyperslab reads and writes.
public final class HDF5Dataset: HDF5Object, Sendable {
    public let handle: HDF5Handle
    public let filePath: String
    public let objectPath: String
    /// Dimensions, slowest first.
    public let shape: [Int]
    /// Element type as stored in the file.
    public let elementType: HDF5ElementType
    /// Chunk shape when the layout is chunked, else nil.
    public let chunkShape: [Int]?
    /// Filter names in pipeline order ("shuffle", "deflate(4)", ...).
    public let filters: [String]
    /// The pipeline as HDF5 filter ids, in order (1 = deflate, 2 = shuffle, 3 = fletcher32, ...).
    public let filterIDs: [Int32]
    /// Bytes per stored element.
    public let storedElementSize: Int
    /// Whether the stored type is a little-endian IEEE float (binary32, or binary16 with the IEEE
    /// half layout): the only layouts whose raw bytes unseg decodes itself.
    public let isLittleEndianIEEEFloat: Bool

    init(handle: HDF5Handle, filePath: String, objectPath: String) throws {
        self.handle = handle
        self.filePath = filePath
        self.objectPath = objectPath
        let id = handle.id
        let space = try HDF5.check(H5Dget_space(id), file: filePath, object: objectPath, "cannot read the dataspace")
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        if rank > 0 { H5Sget_simple_extent_dims(space, &dims, nil) }
        shape = rank > 0 ? dims.map { Int($0) } : []
        let ftype = try HDF5.check(H5Dget_type(id), file: filePath, object: objectPath, "cannot read the datatype")
        defer { H5Tclose(ftype) }
        elementType = HDF5ElementType.from(typeID: ftype)
        storedElementSize = Int(H5Tget_size(ftype))
        var ieee = false
        if H5Tget_class(ftype) == H5T_FLOAT && H5Tget_order(ftype) == H5T_ORDER_LE {
            if storedElementSize == 4 {
                ieee = H5Tequal(ftype, unseg_H5T_IEEE_F32LE()) > 0
            } else if storedElementSize == 2 {
                var spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0
                ieee = H5Tget_fields(ftype, &spos, &epos, &esize, &mpos, &msize) >= 0
                    && (spos, epos, esize, mpos, msize) == (15, 10, 5, 0, 10) && H5Tget_ebias(ftype) == 15
            }
        }
        isLittleEndianIEEEFloat = ieee
        let dcpl = H5Dget_create_plist(id)
        defer { if dcpl >= 0 { H5Pclose(dcpl) } }
        if dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED {
            var c = [hsize_t](repeating: 0, count: max(rank, 1))
            H5Pget_chunk(dcpl, Int32(rank), &c)
            chunkShape = Array(c.prefix(rank)).map { Int($0) }
        } else {
            chunkShape = nil
        }
        var names: [String] = []
        var ids: [Int32] = []
        if dcpl >= 0 {
            let n = H5Pget_nfilters(dcpl)
            for i in 0..<max(n, 0) {
                var flags: UInt32 = 0
                var nelmts = 8
                var values = [UInt32](repeating: 0, count: 8)
                var name = [CChar](repeating: 0, count: 64)
                var config: UInt32 = 0
                let f = H5Pget_filter2(dcpl, UInt32(i), &flags, &nelmts, &values, 64, &name, &config)
                ids.append(Int32(f))
                switch f {
                case H5Z_FILTER_DEFLATE: names.append("deflate(\(nelmts > 0 ? values[0] : 0))")
                case H5Z_FILTER_SHUFFLE: names.append("shuffle")
                case H5Z_FILTER_FLETCHER32: names.append("fletcher32")
                case H5Z_FILTER_SZIP: names.append("szip")
                default: names.append(cString(name).isEmpty ? "filter \(f)" : cString(name))
                }
            }
        }
        filters = names
        filterIDs = ids
    }

    /// Reads the stored (still filtered) bytes of the chunk at `offset` (its first element's
    /// coordinates) and the mask of filters that were skipped for it. One call under the HDF5
    /// lock: decoding the bytes (inflate, unshuffle) can then run on any thread.
    public func readRawChunk(offset: [Int]) throws -> (filterMask: UInt32, bytes: [UInt8]) {
        guard chunkShape != nil, offset.count == shape.count else {
            throw HDF5Error(file: filePath, object: objectPath, message: "raw chunk read: the dataset is not chunked or the offset \(offset) has the wrong rank")
        }
        return try HDF5.locked {
            let off = offset.map { hsize_t($0) }
            var size: hsize_t = 0
            try HDF5.check(H5Dget_chunk_storage_size(handle.id, off, &size), file: filePath, object: objectPath,
                           "cannot find the chunk at \(offset)")
            var bytes = [UInt8](repeating: 0, count: Int(size))
            var mask: UInt32 = 0
            try bytes.withUnsafeMutableBytes { b in
                try HDF5.check(H5Dread_chunk(handle.id, unseg_H5P_DEFAULT(), off, &mask, b.baseAddress), file: filePath,
                               object: objectPath, "cannot read the raw chunk at \(offset)")
            }
            return (mask, bytes)
        }
    }

    /// Total number of elements.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Bytes used on disk (after compression).
    public var storageSize: Int { HDF5.locked { Int(H5Dget_storage_size(handle.id)) } }

    private func checkSelection(_ start: [Int], _ count: [Int], _ op: String) throws {
        guard start.count == shape.count, count.count == shape.count else {
            throw HDF5Error(file: filePath, object: objectPath,
                            message: "\(op): selection rank \(start.count) does not match dataset rank \(shape.count) (shape \(shape))")
        }
        for d in 0..<shape.count where start[d] < 0 || count[d] < 0 || start[d] + count[d] > shape[d] {
            throw HDF5Error(file: filePath, object: objectPath,
                            message: "\(op): selection start \(start) count \(count) is outside the dataset shape \(shape)")
        }
    }

    /// Reads the hyperslab `start`/`count` (whole dataset when nil) into `buffer`,
    /// converting to `memoryType` (HDF5 converts between numeric types; reading a
    /// float16 dataset as `.float16` copies the raw half bits with no conversion).
    /// `buffer` must hold `count.product * memoryType.byteSize` bytes.
    public func read(into buffer: UnsafeMutableRawPointer, memoryType: HDF5ElementType,
                     start: [Int]? = nil, count: [Int]? = nil) throws {
        let s = start ?? [Int](repeating: 0, count: shape.count)
        let c = count ?? shape
        try checkSelection(s, c, "read")
        try HDF5.locked {
            let mtype = memoryType.makeType()
            guard mtype >= 0 else {
                throw HDF5Error(file: filePath, object: objectPath, message: "cannot read into memory type \(memoryType)")
            }
            defer { H5Tclose(mtype) }
            let (fspace, mspace) = try selection(s, c)
            defer { H5Sclose(fspace); H5Sclose(mspace) }
            try HDF5.check(H5Dread(handle.id, mtype, mspace, fspace, unseg_H5P_DEFAULT(), buffer),
                           file: filePath, object: objectPath,
                           "cannot read \(c) at \(s) as \(memoryType) (stored as \(elementType))")
        }
    }

    /// Writes `buffer` (of `memoryType`) to the hyperslab `start`/`count` (whole dataset when nil).
    public func write(from buffer: UnsafeRawPointer, memoryType: HDF5ElementType,
                      start: [Int]? = nil, count: [Int]? = nil) throws {
        let s = start ?? [Int](repeating: 0, count: shape.count)
        let c = count ?? shape
        try checkSelection(s, c, "write")
        try HDF5.locked {
            let mtype = memoryType.makeType()
            guard mtype >= 0 else {
                throw HDF5Error(file: filePath, object: objectPath, message: "cannot write from memory type \(memoryType)")
            }
            defer { H5Tclose(mtype) }
            let (fspace, mspace) = try selection(s, c)
            defer { H5Sclose(fspace); H5Sclose(mspace) }
            try HDF5.check(H5Dwrite(handle.id, mtype, mspace, fspace, unseg_H5P_DEFAULT(), buffer),
                           file: filePath, object: objectPath, "cannot write \(c) at \(s)")
        }
    }

    private func selection(_ s: [Int], _ c: [Int]) throws -> (hid_t, hid_t) {
        let fspace = try HDF5.check(H5Dget_space(handle.id), file: filePath, object: objectPath, "cannot read the dataspace")
        if !shape.isEmpty {
            let hs = s.map { hsize_t($0) }, hc = c.map { hsize_t($0) }
            if H5Sselect_hyperslab(fspace, H5S_SELECT_SET, hs, nil, hc, nil) < 0 {
                H5Sclose(fspace)
                throw HDF5Error(file: filePath, object: objectPath, message: "cannot select \(c) at \(s)", stack: HDF5.takeErrorStack())
            }
        }
        let mspace = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(c.count), c.map { hsize_t($0) }, nil)
        return (fspace, mspace)
    }

    /// Reads a hyperslab as an array of `T` (HDF5 converts numeric types).
    public func read<T: HDF5Scalar>(_: T.Type = T.self, start: [Int]? = nil, count: [Int]? = nil) throws -> [T] {
        let n = (count ?? shape).reduce(1, *)
        var out = [T](repeating: T(), count: n)
        try out.withUnsafeMutableBytes { try read(into: $0.baseAddress!, memoryType: T.hdf5Type, start: start, count: count) }
        return out
    }

    /// Writes an array of `T` to a hyperslab; the element count must match the selection.
    public func write<T: HDF5Scalar>(_ values: [T], start: [Int]? = nil, count: [Int]? = nil) throws {
        let n = (count ?? shape).reduce(1, *)
        guard values.count == n else {
            throw HDF5Error(file: filePath, object: objectPath,
                            message: "shape mismatch when writing: memory = [\(values.count)] elements, destination = \(count ?? shape)")
        }
        try values.withUnsafeBytes { try write(from: $0.baseAddress!, memoryType: T.hdf5Type, start: start, count: count) }
    }

    /// Reads a 1-D string dataset (variable or fixed length).
    public func readStrings() throws -> [String] {
        try HDF5.locked {
            let ftype = H5Dget_type(handle.id)
            defer { H5Tclose(ftype) }
            let space = H5Dget_space(handle.id)
            defer { H5Sclose(space) }
            return try readStringData(typeID: ftype, spaceID: space, count: elementCount, file: filePath, object: objectPath) { mtype, buf in
                H5Dread(handle.id, mtype, unseg_H5S_ALL(), unseg_H5S_ALL(), unseg_H5P_DEFAULT(), buf)
            }
        }
    }

    /// Writes strings to a variable-length string dataset of matching size.
    public func writeStrings(_ values: [String]) throws {
        guard elementType == .variableString else {
            throw HDF5Error(file: filePath, object: objectPath, message: "writeStrings needs a variable-length string dataset, found \(elementType)")
        }
        guard values.count == elementCount else {
            throw HDF5Error(file: filePath, object: objectPath, message: "shape mismatch when writing: memory = [\(values.count)], destination = \(shape)")
        }
        try HDF5.locked {
            try withCStringArray(values) { ptrs in
                let mtype = HDF5ElementType.variableString.makeType()
                defer { H5Tclose(mtype) }
                try HDF5.check(H5Dwrite(handle.id, mtype, unseg_H5S_ALL(), unseg_H5S_ALL(), unseg_H5P_DEFAULT(), ptrs),
                               file: filePath, object: objectPath, "cannot write strings")
            }
        }
    }
}

/// Calls `body` with a C array of NUL-terminated UTF-8 copies of `values`.
func withCStringArray<R>(_ values: [String], _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = values.map { strdup($0) }
    defer { ptrs.forEach { free($0) } }
    if ptrs.isEmpty { ptrs.append(nil) }
    return try ptrs.withUnsafeBytes { try body($0.baseAddress!) }
}

/// Reads `count` strings of file type `typeID` with `reader(memType, buffer)` (dataset or attribute).
func readStringData(typeID: hid_t, spaceID: hid_t, count: Int, file: String, object: String,
                    reader: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> [String] {
    guard H5Tget_class(typeID) == H5T_STRING else {
        throw HDF5Error(file: file, object: object, message: "expected strings, found \(HDF5ElementType.from(typeID: typeID))")
    }
    if count == 0 { return [] }
    if H5Tis_variable_str(typeID) > 0 {
        let mtype = HDF5ElementType.variableString.makeType()
        defer { H5Tclose(mtype) }
        var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
        try ptrs.withUnsafeMutableBytes { buf in
            try HDF5.check(reader(mtype, buf.baseAddress!), file: file, object: object, "cannot read strings")
        }
        let out = ptrs.map { $0.map { String(cString: $0) } ?? "" }
        ptrs.withUnsafeMutableBytes { buf in _ = H5Dvlen_reclaim(mtype, spaceID, unseg_H5P_DEFAULT(), buf.baseAddress!) }
        return out
    } else {
        let size = H5Tget_size(typeID)
        let mtype = HDF5ElementType.fixedString(size).makeType()
        defer { H5Tclose(mtype) }
        H5Tset_strpad(mtype, H5T_STR_NULLPAD)
        var bytes = [UInt8](repeating: 0, count: size * count + 1)
        try bytes.withUnsafeMutableBytes { buf in
            try HDF5.check(reader(mtype, buf.baseAddress!), file: file, object: object, "cannot read strings")
        }
        return (0..<count).map { i in
            let slice = bytes[(i * size)..<((i + 1) * size)]
            let trimmed = slice.prefix { $0 != 0 }
            return String(decoding: trimmed, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
    }
}
