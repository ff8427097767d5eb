import Foundation
import Testing
import UnsegTestSupport
import UnsegHDF5
import UnsegLinAlg
@testable import UnsegStore

/// Writes a small store with known contents: features[i][cell][c] = i + cell/1000 + c/1e6-ish (float16-exact values).
func writeKnownStore(_ path: String, n: Int = 5, h: Int = 4, w: Int = 3, c: Int = 8, patch: Int = 2,
                     type: FeatureType = .float16, deflate: Int? = nil) throws {
    let meta = StoreMetadata(backbone: "test", patchSize: patch, dataset: "unit", split: "train",
                             labelProtocol: "potsdam3", classNames: ["a", "b", "c"])
    let wr = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: h, gridWidth: w, channels: c,
                                    options: StoreWriteOptions(featureType: type, deflate: deflate))
    for i in 0..<n {
        let f = Matrix(rows: h * w, cols: c, data: (0..<(h * w * c)).map { Float(i) + Float($0 % 64) / 64 })
        let img = (0..<(h * patch * w * patch * 3)).map { UInt8(($0 + i) % 256) }
        let lab = (0..<(h * patch * w * patch)).map { UInt8($0 % 4 == 3 ? 255 : $0 % 3) }
        try wr.write(i, features: f, image: img, labels: lab, name: "img_\(i)")
    }
    try wr.commit()
}

@Suite struct FeatureStoreTests {
    @Test(arguments: [(FeatureType.float16, Int?.none), (.float16, 4), (.float32, nil), (.float32, 6)])
    func writeThenReadRoundTrips(type: FeatureType, deflate: Int?) throws {
        let path = tempPath("rt-\(type)-\(deflate ?? 0).h5")
        try writeKnownStore(path, type: type, deflate: deflate)
        let s = try FeatureStore(path: path)
        #expect(s.layout == StoreLayout(imageCount: 5, gridHeight: 4, gridWidth: 3, channels: 8, featureType: type,
                                        imageHeight: 8, imageWidth: 6, hasImages: true, hasLabels: true, hasNames: true))
        #expect(s.metadata.labelProtocol == "potsdam3" && s.metadata.classNames == ["a", "b", "c"] && s.declaresFormat)
        for i in 0..<5 {
            let f = try s.features(i)
            #expect(f.data == (0..<96).map { Float(i) + Float($0 % 64) / 64 }, "image \(i)")
            #expect(try s.labels(i).count == 48)
            #expect(try s.image(i)[0] == UInt8(i))
        }
        #expect(try s.names() == (0..<5).map { "img_\($0)" })
    }

    @Test func streamYieldsTheSameItemsWithAndWithoutPrefetch() throws {
        let path = tempPath("stream.h5")
        try writeKnownStore(path, n: 9)
        let s = try FeatureStore(path: path)
        func indices(_ order: StreamOrder, prefetch: Int) throws -> [Int] {
            let st = try StoreStream(store: s, order: order, includeImages: true, includeLabels: true, prefetch: prefetch)
            var out: [Int] = []
            while let item = try st.next() {
                #expect(item.features.data[0] == Float(item.index), "features belong to their index")
                #expect(item.labels != nil && item.image != nil)
                out.append(item.index)
            }
            return out
        }
        #expect(try indices(.sequential, prefetch: 0) == Array(0..<9))
        #expect(try indices(.sequential, prefetch: 3) == Array(0..<9))
        let a = try indices(.shuffled(seed: 5), prefetch: 0)
        #expect(a.sorted() == Array(0..<9) && a != Array(0..<9))
        #expect(try indices(.shuffled(seed: 5), prefetch: 2) == a, "seeded order, independent of prefetching")
        #expect(try indices(.shuffled(seed: 6), prefetch: 0) != a)
        let st = try StoreStream(store: s, subset: [7, 2], prefetch: 1)
        #expect(try st.nextBatch(5).map(\.index) == [7, 2])
        #expect(try st.nextBatch(5).isEmpty)
        // Abandoning a prefetching stream midway releases it (the reader thread does not keep it alive).
        weak var abandoned: StoreStream?
        for _ in 0..<5 {
            let x = try StoreStream(store: s, prefetch: 2)
            _ = try x.next()
            abandoned = x
        }
        #expect(abandoned == nil, "an abandoned stream is deinitialised")
    }

    // MARK: bad input: every case gives a message naming the file, the dataset and what to do.

    func expectStoreError(_ path: String, contains needles: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try FeatureStore(path: path)
            Issue.record("opening \(path) should fail", sourceLocation: sourceLocation)
        } catch let e as StoreError {
            let msg = e.description
            #expect(msg.contains(path), "message names the file: \(msg)", sourceLocation: sourceLocation)
            for n in needles { #expect(msg.contains(n), "'\(n)' in: \(msg)", sourceLocation: sourceLocation) }
        } catch {
            Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
        }
    }

    func makeFile(_ name: String, _ build: (HDF5File) throws -> Void) throws -> String {
        let path = tempPath(name)
        let f = try HDF5File.create(path)
        try build(f)
        try f.flush()
        return path
    }

    @Test func badStoresAreRefusedWithClearMessages() throws {
        expectStoreError(tempPath("does-not-exist.h5"), contains: ["no such file"])
        let text = tempPath("text.h5")
        try "hello".write(toFile: text, atomically: true, encoding: .utf8)
        expectStoreError(text, contains: ["not an HDF5 file"])

        let full = tempPath("full.h5")
        try writeKnownStore(full, n: 20, h: 8, w: 8, c: 64, type: .float32)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: full))
        let cut = tempPath("truncated.h5")
        try bytes.prefix(bytes.count / 3).write(to: URL(fileURLWithPath: cut))
        expectStoreError(cut, contains: ["truncated"])

        expectStoreError(try makeFile("nofeat.h5") { f in try f.setAttribute("patch_size", 8) },
                         contains: ["/features", "missing"])
        expectStoreError(try makeFile("rank.h5") { f in
            try f.setAttribute("patch_size", 8)
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4])
        }, contains: ["/features", "rank 3", "[N, h, w, C]"])
        expectStoreError(try makeFile("dtype.h5") { f in
            try f.setAttribute("patch_size", 8)
            _ = try f.createDataset("features", type: .int32, shape: [2, 4, 4, 3])
        }, contains: ["/features", "int32", "float16 or float32"])
        expectStoreError(try makeFile("version.h5") { f in
            try f.setAttribute("version", 7)
            try f.setAttribute("patch_size", 8)
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
        }, contains: ["version 7", "not supported"])
        expectStoreError(try makeFile("format.h5") { f in
            try f.setAttribute("format", "something.else")
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
        }, contains: ["something.else", "not a feature store"])
        expectStoreError(try makeFile("nopatch.h5") { f in
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
        }, contains: ["patch_size"])
        expectStoreError(try makeFile("labelcount.h5") { f in
            try f.setAttribute("patch_size", 8)
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
            _ = try f.createDataset("labels", type: .uint8, shape: [3, 32, 32])
        }, contains: ["/labels", "3 label maps", "2 images"])
        expectStoreError(try makeFile("labelrank.h5") { f in
            try f.setAttribute("patch_size", 8)
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
            _ = try f.createDataset("labels", type: .uint8, shape: [2, 32])
        }, contains: ["/labels", "[N, H, W]"])
        expectStoreError(try makeFile("patch.h5") { f in
            try f.setAttribute("patch_size", 14)
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
            _ = try f.createDataset("labels", type: .uint8, shape: [2, 32, 32])
        }, contains: ["patch_size 14", "32x32"])
        expectStoreError(try makeFile("images.h5") { f in
            try f.setAttribute("patch_size", 8)
            _ = try f.createDataset("features", type: .float32, shape: [2, 4, 4, 3])
            _ = try f.createDataset("images", type: .uint8, shape: [2, 32, 32])
        }, contains: ["/images", "[N, H, W, 3]"])

        // A minimal user-written store (no format/version, only /features and patch_size) is accepted.
        let minimal = try makeFile("minimal.h5") { f in
            try f.setAttribute("patch_size", 8)
            try f.createDataset("features", type: .float32, shape: [1, 2, 2, 3]).write([Float](repeating: 1, count: 12))
        }
        let s = try FeatureStore(path: minimal)
        #expect(!s.declaresFormat && s.metadata.backbone == "unknown" && s.layout.imageHeight == 16)
        #expect(try s.names() == ["000000"])
        let noLabels = #expect(throws: StoreError.self) { _ = try s.labels(0) }
        #expect(noLabels?.description.contains("/labels") == true)
        let range = #expect(throws: StoreError.self) { _ = try s.features(3) }
        #expect(range?.description.contains("out of range") == true)
    }

    @Test func failedWriteLeavesNoFile() throws {
        let path = tempPath("half.h5")
        unlink(path)
        let meta = StoreMetadata(backbone: "t", patchSize: 2, dataset: "d", split: "s")
        let w = try FeatureStoreWriter(path: path, metadata: meta, count: 2, gridHeight: 2, gridWidth: 2, channels: 3)
        let e = #expect(throws: StoreError.self) {
            try w.write(0, features: Matrix(rows: 3, cols: 3), image: nil, labels: nil, name: nil)
        }
        #expect(e?.description.contains("shape mismatch when writing") == true)
        w.discard()
        #expect(!FileManager.default.fileExists(atPath: path))
        let dir = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        #expect(!dir.contains { $0.hasPrefix(".half.h5.tmp") }, "temporary file removed")
    }

    // MARK: h5py interop, both directions.

    @Test func h5pyReadsWhatWeWrite() throws {
        let path = tempPath("for-h5py.h5")
        try writeKnownStore(path, n: 3, type: .float16, deflate: 4)
        let out = try runPython("""
        import sys, h5py, numpy as np
        f = h5py.File(sys.argv[1], 'r')
        a = f.attrs
        assert a['format'] == 'unseg.feature-store', a['format']
        assert int(a['version']) == 1 and int(a['patch_size']) == 2
        assert a['backbone'] == 'test' and a['dataset'] == 'unit' and a['split'] == 'train' and a['protocol'] == 'potsdam3'
        assert list(a['class_names']) == ['a', 'b', 'c'], a['class_names']
        x = f['features']
        assert x.dtype == np.float16 and x.shape == (3, 4, 3, 8) and x.chunks == (1, 4, 3, 8) and x.compression == 'gzip', (x.dtype, x.shape, x.chunks)
        assert f['images'].shape == (3, 8, 6, 3) and f['images'].dtype == np.uint8
        assert f['labels'].shape == (3, 8, 6) and f['labels'].dtype == np.uint8
        names = [n.decode() if isinstance(n, bytes) else n for n in f['names'][:]]
        assert names == ['img_0', 'img_1', 'img_2'], names
        expected = np.array([2 + (k % 64) / 64 for k in range(96)], dtype=np.float32).reshape(4, 3, 8)
        assert np.array_equal(x[2].astype(np.float32), expected)
        print('ok')
        """, args: [path])
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
    }

    @Test func weReadWhatH5pyWrites() throws {
        let path = tempPath("from-h5py.h5")
        _ = try runPython("""
        import sys, h5py, numpy as np
        rng = np.random.default_rng(0)
        with h5py.File(sys.argv[1], 'w') as f:
            f.attrs['format'] = 'unseg.feature-store'
            f.attrs['version'] = 1
            f.attrs['patch_size'] = 8
            f.attrs['backbone'] = 'dino_vits8'
            f.attrs['class_names'] = ['road', 'sky']
            x = (np.arange(3 * 5 * 6 * 16) % 97 / 8 - 6).astype(np.float16).reshape(3, 5, 6, 16)
            f.create_dataset('features', data=x, chunks=(1, 5, 6, 16), compression='gzip', compression_opts=4, shuffle=True)
            f.create_dataset('labels', data=(np.arange(3 * 40 * 48) % 3).astype(np.uint8).reshape(3, 40, 48), chunks=(1, 40, 48), compression='gzip')
            f.create_dataset('names', data=['a.png', 'bé.png', 'c.png'], dtype=h5py.string_dtype())
        """, args: [path])
        let s = try FeatureStore(path: path)
        #expect(s.layout.featureType == .float16 && s.layout.gridHeight == 5 && s.layout.gridWidth == 6 && s.layout.channels == 16)
        #expect(s.metadata.backbone == "dino_vits8" && s.metadata.classNames == ["road", "sky"])
        #expect(try s.names() == ["a.png", "bé.png", "c.png"])
        let f1 = try s.features(1)
        var expected: [Float] = []
        for k in 0..<(5 * 6 * 16) {
            let v: Float = Float((480 + k) % 97) / 8 - 6
            expected.append(Float(Float16(v)))
        }
        #expect(f1.data == expected)
        #expect(try s.labels(2).prefix(4) == [0, 1, 2, 0])
    }
}
