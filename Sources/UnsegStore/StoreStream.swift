import Foundation
import UnsegLinAlg

/// One image read from a store.
public struct StoreItem: Sendable {
    /// Position in the store.
    public var index: Int
    /// `[h*w, C]` raw features.
    public var features: Matrix
    /// `[H*W*3]` RGB when requested and present.
    public var image: [UInt8]?
    /// `[H*W]` labels (255 = ignore) when requested and present.
    public var labels: [UInt8]?

    public init(index: Int, features: Matrix, image: [UInt8]? = nil, labels: [UInt8]? = nil) {
        self.index = index; self.features = features; self.image = image; self.labels = labels
    }

    /// An image of a batch that another process of an MPI job reads and works on: its index only.
    public static func elsewhere(_ index: Int) -> StoreItem { StoreItem(index: index, features: Matrix(rows: 0, cols: 0)) }
    /// Whether this process holds the image (false for `elsewhere`).
    public var isHere: Bool { features.rows > 0 }
}

/// Which images a stream visits, and in which order.
public enum StreamOrder: Sendable, Equatable {
    case sequential
    /// A seeded permutation (the same for the same seed on every machine).
    case shuffled(seed: UInt64)
}

/// Reads a store one image at a time with bounded memory, in order or in a seeded
/// shuffled order, optionally prefetching on a background thread.
///
/// Memory: at most `prefetch + 1` items are alive inside the stream (plus what the caller keeps);
/// with `decodeThreads > 1`, up to `max(prefetch, 2 decodeThreads)` queued plus a block of
/// `2 decodeThreads` being decoded. The sequence of items is the same with or without prefetching
/// and for any number of decoding threads.
/// Used from one thread (the consumer); only the prefetcher is shared with the reading thread.
public final class StoreStream {
    public let store: FeatureStore
    /// The visiting order (store indices).
    public let indices: [Int]
    public let includeImages: Bool
    public let includeLabels: Bool
    private var position = 0

    /// Read-ahead state shared with the background thread. The thread holds this object and
    /// the store, never the stream, so releasing the stream cancels and ends the thread.
    private final class Prefetcher: Sendable {
        let depth: Int
        let cond = NSCondition()
        // The three below are guarded by `cond` (every access takes it).
        nonisolated(unsafe) var queue: [Result<StoreItem, any Error>] = []
        nonisolated(unsafe) var cancelled = false
        /// The work; dropped when the run ends so that the finished `Thread` object (which
        /// Foundation may keep until process exit) holds no store or HDF5 handle.
        nonisolated(unsafe) var job: (indices: [Int], block: Int, read: @Sendable ([Int]) -> [Result<StoreItem, any Error>])?
        init(depth: Int) { self.depth = depth }

        func runAndRelease() {
            cond.lock()
            let j = job
            cond.unlock()
            if let j { run(j.indices, block: j.block, j.read) }
            cond.lock()
            job = nil
            cond.unlock()
        }

        /// Reads `indices` in blocks of `block` (decoded together, see `readBlock`), keeping at
        /// most `max(depth, block)` items queued; stops after the first failure.
        func run(_ indices: [Int], block: Int, _ read: ([Int]) -> [Result<StoreItem, any Error>]) {
            var start = 0
            while start < indices.count {
                let end = min(indices.count, start + block)
                cond.lock()
                while !cancelled && !queue.isEmpty && queue.count + (end - start) > max(depth, block) { cond.wait() }
                if cancelled { cond.unlock(); return }
                cond.unlock()
                let results = read(Array(indices[start..<end]))
                cond.lock()
                var failed = false
                for r in results {
                    queue.append(r)
                    if case .failure = r { failed = true; break }
                }
                cond.broadcast()
                cond.unlock()
                if failed { return }
                start = end
            }
        }

        func take() -> Result<StoreItem, Error> {
            cond.lock()
            while queue.isEmpty { cond.wait() }
            let r = queue.removeFirst()
            cond.broadcast()
            cond.unlock()
            return r
        }

        func cancel() {
            cond.lock()
            cancelled = true
            cond.broadcast()
            cond.unlock()
        }
    }
    private let prefetcher: Prefetcher?

    /// - Parameters:
    ///   - subset: store indices to visit (default all), before ordering.
    ///   - prefetch: items read ahead on a background thread (0 = read on demand).
    ///   - decodeThreads: threads that decode compressed `/features` chunks on the prefetch thread's
    ///     behalf (raw chunks are read under the HDF5 lock, inflated in parallel outside it); the
    ///     items are the same for any value.
    public init(store: FeatureStore, order: StreamOrder = .sequential, subset: [Int]? = nil,
                includeImages: Bool = false, includeLabels: Bool = false, prefetch: Int = 2,
                decodeThreads: Int = 1) throws {
        self.store = store
        var idx = subset ?? Array(0..<store.count)
        if let bad = idx.first(where: { $0 < 0 || $0 >= store.count }) {
            throw StoreError(file: store.path, dataset: "/features", "image index \(bad) is out of range 0..<\(store.count)")
        }
        if case .shuffled(let seed) = order {
            var rng = SeededRandom(seed: seed)
            rng.shuffle(&idx)
        }
        indices = idx
        if includeImages && !store.layout.hasImages {
            throw StoreError(file: store.path, dataset: "/images", "missing; this step needs the RGB images in the store")
        }
        if includeLabels && !store.layout.hasLabels {
            throw StoreError(file: store.path, dataset: "/labels", "missing; this step needs ground-truth labels in the store")
        }
        self.includeImages = includeImages
        self.includeLabels = includeLabels
        if prefetch > 0 && !idx.isEmpty {
            let p = Prefetcher(depth: prefetch)
            prefetcher = p
            let (images, labels, order) = (includeImages, includeLabels, idx)
            let threads = store.chunkDecoding == .library ? 1 : max(1, decodeThreads)
            p.cond.lock()
            p.job = (order, threads > 1 ? 2 * threads : 1,
                     { StoreStream.readBlock(store, $0, images: images, labels: labels, threads: threads) })
            p.cond.unlock()
            let t = Thread { p.runAndRelease() }
            t.name = "unseg.prefetch"
            t.start()
        } else {
            prefetcher = nil
        }
    }

    deinit { prefetcher?.cancel() }

    /// Number of items the stream yields in all.
    public var count: Int { indices.count }
    /// Items not yet yielded.
    public var remaining: Int { indices.count - position }

    /// Items for `indices`, in order. With `threads > 1` (a store whose chunks unseg decodes): the
    /// raw chunks are read one after the other under the HDF5 lock, then decoded in parallel.
    static func readBlock(_ store: FeatureStore, _ indices: [Int], images: Bool, labels: Bool,
                          threads: Int) -> [Result<StoreItem, any Error>] {
        guard threads > 1, indices.count > 1 else {
            return indices.map { i in Result { try read(store, i, images: images, labels: labels) } }
        }
        let encoded: [Result<EncodedFeatures?, any Error>] = indices.map { i in Result { try store.encodedFeatures(i) } }
        let decoded: [Result<Matrix, any Error>] = Parallel.map(indices.count, threads: threads) { j in
            Result {
                switch encoded[j] {
                case .success(let e?): return try store.decode(e)
                case .success(nil): return try store.features(indices[j])
                case .failure(let err): throw err
                }
            }
        }
        return indices.indices.map { j in
            Result {
                StoreItem(index: indices[j], features: try decoded[j].get(),
                          image: images ? try store.image(indices[j]) : nil,
                          labels: labels ? try store.labels(indices[j]) : nil)
            }
        }
    }

    private static func read(_ store: FeatureStore, _ index: Int, images: Bool, labels: Bool) throws -> StoreItem {
        let f = try store.features(index)
        return StoreItem(index: index, features: f,
                         image: images ? try store.image(index) : nil,
                         labels: labels ? try store.labels(index) : nil)
    }

    /// The next item, or nil at the end. Errors name the file, dataset and image.
    public func next() throws -> StoreItem? {
        guard position < indices.count else { return nil }
        defer { position += 1 }
        guard let p = prefetcher else {
            return try StoreStream.read(store, indices[position], images: includeImages, labels: includeLabels)
        }
        return try p.take().get()
    }

    /// Up to `size` next items (empty at the end).
    public func nextBatch(_ size: Int) throws -> [StoreItem] {
        var out: [StoreItem] = []
        out.reserveCapacity(size)
        while out.count < size, let item = try next() { out.append(item) }
        return out
    }
}
