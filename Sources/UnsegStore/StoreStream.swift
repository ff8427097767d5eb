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
/// Memory: at most `prefetch + 1` items are alive inside the stream (plus what the
/// caller keeps). The sequence of items is the same with or without prefetching.
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
        nonisolated(unsafe) var job: (indices: [Int], read: @Sendable (Int) throws -> StoreItem)?
        init(depth: Int) { self.depth = depth }

        func runAndRelease() {
            cond.lock()
            let j = job
            cond.unlock()
            if let j { run(j.indices, j.read) }
            cond.lock()
            job = nil
            cond.unlock()
        }

        func run(_ indices: [Int], _ read: (Int) throws -> StoreItem) {
            for idx in indices {
                cond.lock()
                while !cancelled && queue.count >= depth { cond.wait() }
                if cancelled { cond.unlock(); return }
                cond.unlock()
                let r = Result { try read(idx) }
                cond.lock()
                queue.append(r)
                cond.broadcast()
                cond.unlock()
                if case .failure = r { return }
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
    public init(store: FeatureStore, order: StreamOrder = .sequential, subset: [Int]? = nil,
                includeImages: Bool = false, includeLabels: Bool = false, prefetch: Int = 2) throws {
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
            p.cond.lock()
            p.job = (order, { try StoreStream.read(store, $0, images: images, labels: labels) })
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
