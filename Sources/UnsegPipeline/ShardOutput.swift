import Foundation
import UnsegCore
import UnsegStore

/// The per-image outputs of an MPI job, written by rank 0 alone, in image order.
///
/// Rank r computes the images of `Distributed.shard(N)` (contiguous, so rank order is image
/// order). Rank 0 writes its own images as it computes them; the other ranks spool theirs,
/// fixed-size records, to a temporary file (memory stays bounded whatever the shard). When every
/// rank has finished (`finish` agrees on success first: if any rank failed, every rank throws
/// that rank's error and rank 0 discards its output), rank 0 receives the other ranks' records in
/// rank order, chunk by chunk, and writes them: the same writes in the same order as one process,
/// so the same bytes.
final class ShardOutput {
    let recordSize: Int
    let count: Int
    /// This rank's images.
    let range: Range<Int>
    private var spool: FileHandle?
    private var spoolPath: String?
    private var spooled = 0

    /// `count` images, records of `recordSize` bytes.
    init(count: Int, recordSize: Int) throws {
        self.recordSize = recordSize
        self.count = count
        range = Distributed.shard(count)
        if Distributed.isActive && !Distributed.isLead {
            let path = NSTemporaryDirectory() + "unseg-rank\(Distributed.rank)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).spool"
            guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forUpdatingAtPath: path) else {
                throw StoreError(file: path, "cannot create the temporary file for rank \(Distributed.rank)'s results; check that \(NSTemporaryDirectory()) is writable (TMPDIR)")
            }
            Temporaries.register(path)
            spool = h
            spoolPath = path
        }
    }

    deinit { cleanup() }

    private func cleanup() {
        try? spool?.close()
        spool = nil
        if let p = spoolPath { try? FileManager.default.removeItem(atPath: p); Temporaries.unregister(p) }
        spoolPath = nil
    }

    /// Rank 0 calls `write` for its own images; the other ranks spool `record` (built only there).
    func put(_ makeRecord: @autoclosure () -> [UInt8], write: () throws -> Void) throws {
        if let h = spool {
            let record = makeRecord()
            precondition(record.count == recordSize, "shard record of \(record.count) bytes, expected \(recordSize)")
            try h.write(contentsOf: record)
            spooled += 1
        } else {
            try write()
        }
    }

    /// After this rank's share (`body` threw or not): agree, then move the records to rank 0,
    /// which hands each to `write(index, record)` in image order.
    func finish(_ share: () throws -> Void, write: (Int, [UInt8]) throws -> Void) throws {
        defer { cleanup() }
        try Distributed.agree(share)
        guard Distributed.isActive else { return }
        let chunk = max(1, min(256, (64 << 20) / max(recordSize, 1)))
        if Distributed.isLead {
            for r in 1..<Distributed.size {
                let theirs = Distributed.shard(count, rank: r)
                var i = theirs.lowerBound
                while i < theirs.upperBound {
                    let n = min(chunk, theirs.upperBound - i)
                    let bytes = try Distributed.receive(n * recordSize, from: r)
                    for j in 0..<n { try write(i + j, Array(bytes[(j * recordSize)..<((j + 1) * recordSize)])) }
                    i += n
                }
            }
        } else if let h = spool {
            guard spooled == range.count else {
                throw StoreError(file: spoolPath ?? "?", "rank \(Distributed.rank) holds \(spooled) results for its \(range.count) images; stopping")
            }
            try h.seek(toOffset: 0)
            var left = spooled
            while left > 0 {
                let n = min(chunk, left)
                let data = try h.read(upToCount: n * recordSize) ?? Data()
                guard data.count == n * recordSize else {
                    throw StoreError(file: spoolPath ?? "?", "rank \(Distributed.rank)'s temporary results are short (\(data.count) of \(n * recordSize) bytes)")
                }
                try Distributed.send([UInt8](data), to: 0)
                left -= n
            }
        }
    }
}
