import UnsegLinAlg

/// Bytes a value becomes to travel between processes (MPI) and back, bit-exactly.
public protocol WireCodable {
    func encode(into w: inout WireWriter)
    init(wire r: inout WireReader) throws
}

/// Appends values as bytes: scalars little-endian, arrays in the machine's byte order (the
/// processes of one job run on machines of one architecture; Open MPI's byte transport does not
/// convert).
public struct WireWriter {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func put(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { bytes += $0 } }
    public mutating func put(_ v: Double) { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
    public mutating func put(_ v: [Float]) { put(v.count); v.withUnsafeBytes { bytes += $0 } }
    public mutating func put(_ v: [Double]) { put(v.count); v.withUnsafeBytes { bytes += $0 } }
    public mutating func put(_ v: [Int]) { put(v.count); v.withUnsafeBytes { bytes += $0 } }
    public mutating func put(_ v: [UInt8]) { put(v.count); bytes += v }
    public mutating func put(_ v: String) { put(Array(v.utf8)) }
    public mutating func put(_ m: Matrix) { put(m.rows); put(m.cols); put(m.data) }
}

/// Reads what `WireWriter` wrote, in the same order; a short or malformed message is an error.
public struct WireReader {
    let data: [UInt8]
    var at = 0
    public init(_ bytes: [UInt8]) { data = bytes }
    public var isAtEnd: Bool { at == data.count }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, at + n <= data.count else { throw KernelError("a message between processes is truncated (needs \(n) bytes at \(at) of \(data.count))") }
        defer { at += n }
        return data[at..<(at + n)]
    }
    public mutating func int() throws -> Int {
        let s = try take(8)
        return Int(Int64(littleEndian: s.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
    }
    public mutating func double() throws -> Double {
        let s = try take(8)
        return Double(bitPattern: UInt64(littleEndian: s.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
    }
    mutating func array<T>(_: T.Type) throws -> [T] {
        let n = try int()
        guard n >= 0, n <= (data.count - at) / max(MemoryLayout<T>.stride, 1) else { throw KernelError("a message between processes has a bad length \(n)") }
        let s = try take(n * MemoryLayout<T>.stride)
        return [T](unsafeUninitializedCapacity: n) { buf, count in
            s.withUnsafeBytes { src in UnsafeMutableRawBufferPointer(buf).copyMemory(from: src) }
            count = n
        }
    }
    public mutating func floats() throws -> [Float] { try array(Float.self) }
    public mutating func doubles() throws -> [Double] { try array(Double.self) }
    public mutating func ints() throws -> [Int] { try array(Int.self) }
    public mutating func bytes() throws -> [UInt8] { try array(UInt8.self) }
    public mutating func string() throws -> String { String(decoding: try bytes(), as: UTF8.self) }
    public mutating func matrix() throws -> Matrix {
        let r = try int(), c = try int(), d = try floats()
        let (rc, overflow) = r.multipliedReportingOverflow(by: c)
        guard r >= 0, c >= 0, !overflow, rc == d.count else { throw KernelError("a message between processes has a [\(r), \(c)] matrix of \(d.count) values") }
        return Matrix(rows: r, cols: c, data: d)
    }
}

extension Matrix: WireCodable {
    public func encode(into w: inout WireWriter) { w.put(self) }
    public init(wire r: inout WireReader) throws { self = try r.matrix() }
}

extension Array: WireCodable where Element == Float {
    public func encode(into w: inout WireWriter) { w.put(self) }
    public init(wire r: inout WireReader) throws { self = try r.floats() }
}
