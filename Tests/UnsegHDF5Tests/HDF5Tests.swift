import Foundation
import Synchronization
import Testing
@testable import UnsegHDF5

func tempPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "unseg-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}

/// A tiny deterministic generator so this test target needs no other module.
struct LCG {
    var s: UInt64
    mutating func next() -> UInt64 { s = s &* 6364136223846793005 &+ 1442695040888963407; return s >> 33 }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

@Suite struct HDF5Tests {
    /// No object carries a timestamp (datasets are created without; groups, explicit or created on
    /// the way to a nested dataset, have none in HDF5's default format): the same content written
    /// a second apart has the same bytes.
    @Test func sameContentSameBytesASecondApart() throws {
        func fill(_ path: String) throws {
            let f = try HDF5File.create(path)   // closed when the last handle goes, at return
            try f.createDataset("history/loss", type: .float64, shape: [3]).write([1.0, 2.0, 3.0])
            try f.createGroup("a/b")
            try f.createDataset("a/b/c/x", type: .float32, shape: [2]).write([Float(1), 2])
            try f.setAttribute("name", "t")
        }
        func write(_ path: String) throws -> Data {
            try fill(path)
            return try Data(contentsOf: URL(fileURLWithPath: path))
        }
        let first = try write(tempPath("stamp-1.h5"))
        Thread.sleep(forTimeInterval: 1.1)
        let second = try write(tempPath("stamp-2.h5"))
        #expect(first == second)
    }

    /// HDF5 keeps its error-printing setting per thread: a worker thread must not print
    /// HDF5-DIAG stacks on stderr when a file fails to open (errors are read from the stack).
    @Test func errorPrintingIsOffOnEveryThread() throws {
        #expect(HDF5.automaticErrorPrintingIsOff())
        let done = DispatchSemaphore(value: 0)
        struct Seen { var off = false; var message = "" }
        let box = Mutex(Seen())
        // The HDF5 signature followed by garbage: H5Fopen fails inside HDF5 (and would print).
        let bad = tempPath("signature-only.h5")
        var bytes: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        bytes += [UInt8](repeating: 7, count: 504)
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        let t = Thread {
            let off = HDF5.automaticErrorPrintingIsOff()
            var message = ""
            do { _ = try HDF5File.open(bad) } catch { message = "\(error)" }
            box.withLock { $0 = Seen(off: off, message: message) }
            done.signal()
        }
        t.start()
        done.wait()
        let seen = box.withLock { $0 }
        #expect(seen.off, "automatic error printing is on in a new thread")
        #expect(seen.message.contains("signature-only.h5"), "\(seen.message)")
    }

    /// Random shapes (rank 1-4) and random hyperslabs: what is written is read back exactly.
    @Test(arguments: [UInt64(1), 2, 3])
    func hyperslabRoundTripsAreExact(seed: UInt64) throws {
        var r = LCG(s: seed)
        let path = tempPath("slabs-\(seed).h5")
        defer { unlink(path) }
        let f = try HDF5File.create(path)
        for trial in 0..<12 {
            let rank = 1 + r.int(4)
            let shape = (0..<rank).map { _ in 1 + r.int(9) }
            let n = shape.reduce(1, *)
            let chunked = r.int(2) == 0
            let ds = try f.createDataset("d\(trial)", type: .float32, shape: shape,
                                         chunk: chunked ? shape.map { max(1, $0 / 2) } : nil,
                                         deflate: chunked ? 4 : nil, shuffle: chunked)
            let all = (0..<n).map { Float($0) * 0.5 - 3 }
            try ds.write(all)
            #expect(try ds.read(Float.self) == all, "seed \(seed) trial \(trial) shape \(shape)")
            let start = shape.map { r.int($0) }
            let count = zip(shape, start).map { 1 + r.int($0 - $1) }
            let slab: [Float] = try ds.read(start: start, count: count)
            // Reference: index the full array.
            var expected: [Float] = []
            func walk(_ d: Int, _ offset: Int) {
                if d == rank { expected.append(all[offset]); return }
                let stride = shape[(d + 1)...].reduce(1, *)
                for i in start[d]..<(start[d] + count[d]) { walk(d + 1, offset + i * stride) }
            }
            walk(0, 0)
            #expect(slab == expected, "seed \(seed) trial \(trial) shape \(shape) start \(start) count \(count)")
            // Write a hyperslab and read the whole back.
            let patch = (0..<count.reduce(1, *)).map { Float(-$0 - 1) }
            try ds.write(patch, start: start, count: count)
            let back: [Float] = try ds.read(start: start, count: count)
            #expect(back == patch)
        }
    }

    @Test func everyElementTypeRoundTrips() throws {
        let path = tempPath("types.h5")
        defer { unlink(path) }
        let f = try HDF5File.create(path)
        try f.createDataset("u8", type: .uint8, shape: [3]).write([UInt8](arrayLiteral: 0, 128, 255))
        try f.createDataset("i32", type: .int32, shape: [2]).write([Int32](arrayLiteral: -7, .max))
        try f.createDataset("i64", type: .int64, shape: [2]).write([Int64](arrayLiteral: .min, 5))
        try f.createDataset("f64", type: .float64, shape: [2]).write([Double](arrayLiteral: .pi, -1e300))
        // float16 on disk: write raw half bits, read back both raw and converted by HDF5 to Float.
        let halves: [Float16] = [1, -2.5, 65504, 0.000061035156]
        let h16 = try f.createDataset("f16", type: .float16, shape: [4])
        try halves.withUnsafeBytes { try h16.write(from: $0.baseAddress!, memoryType: .float16) }
        try f.createStringDataset("names", values: ["a", "ünïcode", ""])
        let g = try HDF5File.open(path)
        #expect(try g.dataset("u8").read(UInt8.self) == [0, 128, 255])
        #expect(try g.dataset("i32").read(Int32.self) == [-7, .max])
        #expect(try g.dataset("i64").read(Int64.self) == [.min, 5])
        #expect(try g.dataset("f64").read(Double.self) == [.pi, -1e300])
        let h = try g.dataset("f16")
        #expect(h.elementType == .float16)
        #expect(try h.read(Float.self) == halves.map(Float.init), "HDF5's own half -> float conversion")
        var raw = [Float16](repeating: 0, count: 4)
        try raw.withUnsafeMutableBytes { try h.read(into: $0.baseAddress!, memoryType: .float16) }
        #expect(raw == halves)
        #expect(try g.dataset("names").readStrings() == ["a", "ünïcode", ""])
        #expect(try g.memberNames().sorted() == ["f16", "f64", "i32", "i64", "names", "u8"])
    }

    @Test func attributesRoundTrip() throws {
        let path = tempPath("attrs.h5")
        defer { unlink(path) }
        let f = try HDF5File.create(path)
        try f.setAttribute("s", "hello")
        try f.setAttribute("i", 42)
        try f.setAttribute("d", 0.25)
        try f.setAttribute("names", ["road", "sky"])
        try f.setAttribute("ints", .ints([1, 2, 3]))
        try f.setAttribute("doubles", .doubles([0.5, 1.5]))
        try f.setAttribute("i", 43)   // replace
        let ds = try f.createDataset("g/x", type: .uint8, shape: [1])
        try ds.setAttribute("method", "primaps")
        let g = try HDF5File.open(path)
        #expect(try g.stringAttribute("s") == "hello")
        #expect(try g.intAttribute("i") == 43)
        #expect(try g.doubleAttribute("d") == 0.25)
        #expect(try g.stringArrayAttribute("names") == ["road", "sky"])
        #expect(try g.intArrayAttribute("ints") == [1, 2, 3])
        #expect(try g.doubleArrayAttribute("doubles") == [0.5, 1.5])
        #expect(try g.attributeNames().sorted() == ["d", "doubles", "i", "ints", "names", "s"])
        #expect(try g.group("g").dataset("x").stringAttribute("method") == "primaps")
        #expect(g.contains("g/x") && !g.contains("g/y") && !g.contains("nope/x"))
        let e = #expect(throws: HDF5Error.self) { try g.intAttribute("s") }
        #expect(e?.description.contains("should be an integer") == true)
        let m = #expect(throws: HDF5Error.self) { try g.stringAttribute("missing") }
        #expect(m?.description.contains("missing attribute 'missing'") == true)
    }

    @Test func chunkingAndCompressionAreReported() throws {
        let path = tempPath("chunks.h5")
        defer { unlink(path) }
        let f = try HDF5File.create(path)
        let ds = try f.createDataset("x", type: .float32, shape: [4, 8, 8, 16], chunk: [1, 8, 8, 16], deflate: 4, shuffle: true)
        try ds.write([Float](repeating: 1, count: 4 * 8 * 8 * 16))
        let g = try HDF5File.open(path).dataset("x")
        #expect(g.chunkShape == [1, 8, 8, 16])
        #expect(g.filters == ["shuffle", "deflate(4)"])
        #expect(g.storageSize < 4 * 8 * 8 * 16 * 4 / 10, "constant data compresses")
    }

    @Test func badInputGivesClearErrors() throws {
        let missing = #expect(throws: HDF5Error.self) { try HDF5File.open("/nonexistent/dir/x.h5") }
        #expect(missing?.description.contains("no such file") == true)
        let text = tempPath("not.h5")
        try "just text\n".write(toFile: text, atomically: true, encoding: .utf8)
        defer { unlink(text) }
        let notH5 = #expect(throws: HDF5Error.self) { try HDF5File.open(text) }
        #expect(notH5?.description.contains("not an HDF5 file") == true)
        // A real file cut in half.
        let full = tempPath("full.h5"), cut = tempPath("cut.h5")
        defer { unlink(full); unlink(cut) }
        do {
            let f = try HDF5File.create(full)
            try f.createDataset("x", type: .float32, shape: [64, 64]).write([Float](repeating: 2, count: 4096))
        }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: full))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: cut))
        let trunc = #expect(throws: HDF5Error.self) { try HDF5File.open(cut) }
        #expect(trunc?.description.contains("truncated") == true, "\(String(describing: trunc))")
        let f = try HDF5File.create(tempPath("sel.h5"))
        let ds = try f.createDataset("x", type: .float32, shape: [2, 3])
        let sel = #expect(throws: HDF5Error.self) { let _: [Float] = try ds.read(start: [1, 0], count: [2, 3]) }
        #expect(sel?.description.contains("outside the dataset shape [2, 3]") == true)
        let mis = #expect(throws: HDF5Error.self) { try ds.write([Float](repeating: 0, count: 5)) }
        #expect(mis?.description.contains("shape mismatch when writing") == true)
        let nodir = #expect(throws: HDF5Error.self) { try HDF5File.create("/nonexistent/dir/y.h5") }
        #expect(nodir?.description.contains("does not") == true || nodir?.description.contains("cannot create") == true)
    }

    @Test func atomicFileAppearsOnlyOnCommit() throws {
        let path = tempPath("atomic.h5")
        unlink(path)
        do {
            let out = try AtomicHDF5File(path: path)
            try out.file!.createDataset("x", type: .uint8, shape: [1]).write([UInt8(7)])
            #expect(!FileManager.default.fileExists(atPath: path))
            out.discard()
            #expect(!FileManager.default.fileExists(atPath: out.temporaryPath))
        }
        #expect(!FileManager.default.fileExists(atPath: path))
        let out = try AtomicHDF5File(path: path)
        try out.file!.createDataset("x", type: .uint8, shape: [1]).write([UInt8(7)])
        try out.commit()
        #expect(try HDF5File.open(path).dataset("x").read(UInt8.self) == [7])
        #expect(!FileManager.default.fileExists(atPath: out.temporaryPath))
        let bad = #expect(throws: HDF5Error.self) { _ = try AtomicHDF5File(path: "/nonexistent/out.h5") }
        #expect(bad?.description.contains("does not exist") == true)
    }

    @Test func concurrentReadsAreSerialisedSafely() throws {
        let path = tempPath("conc.h5")
        defer { unlink(path) }
        do {
            let f = try HDF5File.create(path)
            try f.createDataset("x", type: .float32, shape: [16, 256], chunk: [1, 256], deflate: 1, shuffle: true)
                .write((0..<4096).map { Float($0) })
        }
        let ds = try HDF5File.open(path).dataset("x")
        var sums = [Float](repeating: 0, count: 16)
        sums.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: 16) { i in
                let row: [Float] = (try? ds.read(start: [i, 0], count: [1, 256])) ?? []
                (base + i).pointee = row.reduce(0, +)
            }
        }
        for i in 0..<16 { #expect(sums[i] == Float((0..<256).map { Double(i * 256 + $0) }.reduce(0, +))) }
    }
}
