import CUnsegMPI
import Foundation

/// The processes of one job started by `mpirun` (Open MPI), or this process alone.
///
/// A plain `unseg` run never loads MPI: `Distributed.start()` initialises it only when the
/// environment says mpirun started the process. Jobs ask `rank`, `size` and `shard(_:)`, exchange
/// bytes with `allgather`, sum integers exactly with `allreduceSum`, and wrap work that can fail
/// on some ranks only in `agree`, so every rank stops with the same error instead of waiting for
/// a peer that is gone.
public enum Distributed {
    nonisolated(unsafe) private static var started = false
    nonisolated(unsafe) private static var rankValue = 0
    nonisolated(unsafe) private static var sizeValue = 1
    /// Bytes this rank contributed to exchanges, and the exchanges (for `UNSEG_MPI_STATS=1`).
    nonisolated(unsafe) public private(set) static var bytesSent = 0
    nonisolated(unsafe) public private(set) static var exchanges = 0

    /// This process's rank (0 without MPI).
    public static var rank: Int { rankValue }
    /// Processes of the job (1 without MPI).
    public static var size: Int { sizeValue }
    /// Several processes share the work.
    public static var isActive: Bool { sizeValue > 1 }
    /// The rank that writes outputs and prints.
    public static var isLead: Bool { rankValue == 0 }

    /// Initialises MPI if mpirun started this process (call once, first thing in `main`).
    public static func start() throws {
        guard !started else { return }
        started = true
        guard unseg_mpi_launched() != 0 else { return }
        var err = [CChar](repeating: 0, count: 512)
        if unseg_mpi_start(&err, err.count) != 0 {
            throw KernelError(String(cString: err))
        }
        rankValue = Int(unseg_mpi_rank())
        sizeValue = Int(unseg_mpi_size())
    }

    /// Ends MPI (no-op without it). With `UNSEG_MPI_STATS=1` each rank first prints what it sent.
    public static func finish() {
        guard started && unseg_mpi_launched() != 0 else { return }
        if ProcessInfo.processInfo.environment["UNSEG_MPI_STATS"] == "1" {
            FileHandle.standardError.write("mpi-stats rank \(rank) of \(size): sent \(bytesSent) bytes in \(exchanges) exchanges\n".data(using: .utf8)!)
        }
        _ = unseg_mpi_finalize()
    }

    /// The host this rank runs on.
    public static var host: String {
        var b = [CChar](repeating: 0, count: 256)
        if unseg_mpi_launched() != 0, started { _ = unseg_mpi_host(&b, b.count) } else { gethostname(&b, b.count) }
        return String(cString: b)
    }

    /// Whether this process works on item `i` of a batch of `count` (always, without MPI): the
    /// items of other ranks are placeholders here, not to be checked or read.
    public static func holds(_ i: Int, of count: Int) -> Bool { !isActive || shard(count).contains(i) }

    /// The contiguous share of `0..<count` of `rank`: `[count r / P, count (r+1) / P)`.
    public static func shard(_ count: Int, rank r: Int = Distributed.rank, size p: Int = Distributed.size) -> Range<Int> {
        (count * r / p)..<(count * (r + 1) / p)
    }

    static func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw KernelError("MPI \(what) failed (code \(rc)) on rank \(rank)") }
    }

    /// Every rank's bytes, in rank order.
    public static func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        guard isActive else { return [bytes] }
        bytesSent += bytes.count
        exchanges += 1
        var sizes = [Int64](repeating: 0, count: size)
        try check(unseg_mpi_allgather_i64(Int64(bytes.count), &sizes), "allgather")
        let total = sizes.reduce(0, +)
        guard total < Int64(Int32.max) else { throw KernelError("one exchange of \(total) bytes exceeds MPI's 2 GiB message limit; use smaller batches") }
        let counts = sizes.map { Int32($0) }
        var displs = [Int32](repeating: 0, count: size)
        for r in 1..<size { displs[r] = displs[r - 1] + counts[r - 1] }
        var out = [UInt8](repeating: 0, count: Int(total))
        try bytes.withUnsafeBytes { s in
            try out.withUnsafeMutableBytes { o in
                try check(unseg_mpi_allgatherv(s.baseAddress, Int32(bytes.count), o.baseAddress, counts, displs), "allgatherv")
            }
        }
        return (0..<size).map { r in Array(out[Int(displs[r])..<Int(displs[r] + counts[r])]) }
    }

    /// The element-wise sum over ranks (integers: exact, so any order gives the same bits).
    public static func allreduceSum(_ v: [Int64]) throws -> [Int64] {
        guard isActive, !v.isEmpty else { return v }
        var out = [Int64](repeating: 0, count: v.count)
        try check(unseg_mpi_allreduce_sum_i64(v, &out, Int32(v.count)), "allreduce")
        return out
    }

    public static func send(_ bytes: [UInt8], to dest: Int, tag: Int = 1) throws {
        bytesSent += bytes.count
        exchanges += 1
        try bytes.withUnsafeBytes { b in try check(unseg_mpi_send(b.baseAddress, Int32(bytes.count), Int32(dest), Int32(tag)), "send") }
    }
    public static func receive(_ count: Int, from source: Int, tag: Int = 1) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { b in try check(unseg_mpi_recv(b.baseAddress, Int32(count), Int32(source), Int32(tag)), "recv") }
        return out
    }

    /// Runs `body` on every rank and agrees on the outcome: if it failed on any rank, every rank
    /// throws the first failing rank's error (`DistributedError`, naming the rank and its host).
    public static func agree<T>(_ body: () throws -> T) throws -> T {
        guard isActive else { return try body() }
        var result: T?
        var message = ""
        do { result = try body() } catch { message = "\(error)" }
        var w = WireWriter()
        w.put(message)
        w.put(host)
        let all = try allgather(w.bytes)
        for (r, b) in all.enumerated() {
            var rd = WireReader(b)
            let m = try rd.string(), h = try rd.string()
            if !m.isEmpty { throw DistributedError(rank: r, size: size, host: h, message: m) }
        }
        return result!
    }

    /// For an error that escaped the agreed steps: true when every rank reaches this point within
    /// `seconds` (they all failed the same way: exit quietly with it), false when some rank is
    /// elsewhere (then the caller aborts the job).
    public static func allFailedWithin(seconds: Double) -> Bool {
        guard isActive else { return true }
        return unseg_mpi_barrier_within(seconds) == 1
    }

    /// Stops every process of the job with `code` (mpirun exits with it).
    public static func abort(_ code: Int32) -> Never {
        unseg_mpi_abort(code)
        exit(code)
    }
}

/// An error of one rank, which every rank of the job stops with.
public struct DistributedError: Error, CustomStringConvertible, Sendable {
    public var rank: Int
    public var size: Int
    public var host: String
    public var message: String
    public var description: String { "rank \(rank) of \(size) (\(host)): \(message)" }
}
