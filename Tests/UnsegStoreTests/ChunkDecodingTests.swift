import Foundation
import Testing
import UnsegLinAlg
import UnsegTestSupport
@testable import UnsegStore

/// Compressed stores decoded by unseg (raw chunk under the HDF5 lock, inflate / unshuffle / widen
/// on any thread) give exactly what the HDF5 library gives, and streams give the same items for
/// any number of decoding threads.
@Suite struct ChunkDecodingTests {
    func write(_ name: String, type: FeatureType, deflate: Int?) throws -> String {
        let path = tempPath(name)
        try writeKnownStore(path, type: type, deflate: deflate)
        return path
    }

    @Test(arguments: [FeatureType.float16, .float32])
    func shuffleDeflateIsDecodedByUnsegBitIdentically(type: FeatureType) throws {
        let path = try write("cd-\(type).h5", type: type, deflate: 4)
        let s = try FeatureStore(path: path)
        #expect(s.chunkDecoding == .shuffleDeflate)
        for i in 0..<s.count {
            let e = try #require(try s.encodedFeatures(i))
            #expect(try s.decode(e) == s.libraryFeatures(i), "\(type) image \(i)")
            #expect(try s.features(i) == s.libraryFeatures(i))
        }
        let plain = try FeatureStore(path: try write("cd-plain-\(type).h5", type: type, deflate: nil))
        #expect(plain.chunkDecoding == .library)
        let none = try plain.encodedFeatures(0)
        #expect(none == nil)
    }

    @Test func otherPipelinesAndDamagedChunks() throws {
        let dir = NSTemporaryDirectory() + "unseg-chunk-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = try runPython("""
        import h5py, sys, numpy as np
        d = sys.argv[1]
        x = (np.random.default_rng(1).normal(size=(3, 4, 5, 8))).astype(np.float32)
        for name, kw in [('deflate', dict(compression='gzip', compression_opts=6)),
                         ('fletcher', dict(compression='gzip', shuffle=True, fletcher32=True))]:
            with h5py.File(f'{d}/{name}.h5', 'w') as f:
                f.attrs['patch_size'] = 4
                f.create_dataset('features', data=x, chunks=(1, 4, 5, 8), **kw)
        """, args: [dir])
        _ = try runPython("""
        import h5py, sys, numpy as np
        d = sys.argv[1]
        x = (np.random.default_rng(1).normal(size=(3, 4, 5, 8))).astype(np.float32)
        for name, dt, kw in [('be32', '>f4', dict(compression='gzip')), ('be16', '>f2', dict(compression='gzip', shuffle=True))]:
            with h5py.File(f'{d}/{name}.h5', 'w') as f:
                f.attrs['patch_size'] = 4
                f.create_dataset('features', data=x.astype(dt), chunks=(1, 4, 5, 8), **kw)
        with h5py.File(f'{d}/hole.h5', 'w') as f:      # image 2 never written: the fill value (0)
            f.attrs['patch_size'] = 4
            ds = f.create_dataset('features', shape=(3, 4, 5, 8), dtype='<f4', chunks=(1, 4, 5, 8), compression='gzip')
            ds[0] = x[0]; ds[1] = x[1]
        """, args: [dir])
        for name in ["be32", "be16"] {
            let be = try FeatureStore(path: dir + "/\(name).h5")
            #expect(be.chunkDecoding == .library, "\(name): big-endian data is left to the library")
            let le = try FeatureStore(path: dir + "/deflate.h5")
            for i in 0..<3 {
                let a = try be.features(i), b = try le.features(i)
                expectAllClose(a.data, b.data, abs: name == "be16" ? 2e-3 : 0, "\(name) image \(i)")
            }
        }
        let hole = try FeatureStore(path: dir + "/hole.h5")
        #expect(try hole.features(2).data.allSatisfy { $0 == 0 }, "an unwritten chunk reads as the fill value")
        let deflate = try FeatureStore(path: dir + "/deflate.h5")
        #expect(deflate.chunkDecoding == .deflate)
        for i in 0..<3 { #expect(try deflate.features(i) == deflate.libraryFeatures(i)) }
        let fletcher = try FeatureStore(path: dir + "/fletcher.h5")
        #expect(fletcher.chunkDecoding == .library, "fletcher32 is left to the library")
        #expect(try fletcher.features(1) == deflate.features(1))
        // A damaged chunk is an error naming the image, not garbage.
        let e = try #require(try deflate.encodedFeatures(2))
        let broken = EncodedFeatures(index: 2, bytes: Array(e.bytes.prefix(e.bytes.count / 2)))
        #expect(throws: StoreError.self) { _ = try deflate.decode(broken) }
    }

    @Test func streamsAreTheSameForAnyDecodingThreadCount() throws {
        let path = try write("cd-stream.h5", type: .float16, deflate: 4)
        let s = try FeatureStore(path: path)
        func items(_ threads: Int, prefetch: Int) throws -> [StoreItem] {
            let st = try StoreStream(store: s, order: .shuffled(seed: 3), includeImages: true, includeLabels: true,
                                     prefetch: prefetch, decodeThreads: threads)
            return try st.nextBatch(100)
        }
        let a = try items(1, prefetch: 0), b = try items(2, prefetch: 3), c = try items(3, prefetch: 8)
        #expect(a.count == s.count && a.map(\.index) == b.map(\.index) && a.map(\.index) == c.map(\.index))
        for (x, y) in zip(a, b) { #expect(x.features == y.features && x.image == y.image && x.labels == y.labels) }
        for (x, y) in zip(a, c) { #expect(x.features == y.features) }
    }
}
