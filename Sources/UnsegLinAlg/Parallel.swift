import Foundation
import Synchronization

/// Work over independent items (images) on several threads.
///
/// Results are deterministic whatever the thread count as long as the body for
/// item `i` only writes to slot `i` of its output and draws randomness from
/// `SeededRandom.stream(seed:index:)`. The job's `BLASPolicy.imagesInParallel` gives every
/// worker one BLAS thread (never nest our threads inside BLAS threads).
public enum Parallel {
    /// Cores available to this process.
    public static var coreCount: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Runs `body(i)` for `i` in `0..<count` on up to `threads` threads (dynamic
    /// scheduling: each thread takes the next index). Blocks until all are done.
    /// With `threads <= 1` it runs in order on the calling thread.
    ///
    /// Concurrency: `body` is `@Sendable` (checked by the compiler): it may only capture values
    /// that are safe to share; each call writes only its own result.
    public static func forEach(_ count: Int, threads: Int, _ body: @Sendable (Int) -> Void) {
        // Images get one BLAS thread each (BLASPolicy.imagesInParallel), on one of our threads or
        // several: never nest our threads inside BLAS threads, and the same BLAS partitioning (so
        // the same bits) whatever `threads` is. Set, not saved and restored: it is the policy of any
        // run over images.
        if BLAS.threads != 1 { BLASPolicy.imagesInParallel.apply() }
        let t = min(max(threads, 1), count)
        if t <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        let next = Counter()
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: t) { _ in
                while true {
                    let i = next.increment()
                    if i >= count { break }
                    body(i)
                }
            }
        }
    }

    /// `forEach` that collects one result per index, in index order.
    public static func map<T: Sendable>(_ count: Int, threads: Int, _ body: @Sendable (Int) -> T) -> [T] {
        let out = Slots<T>(count)
        forEach(count, threads: threads) { i in out.set(i, body(i)) }
        return out.values()
    }

    /// `map` whose body may throw; the first error (lowest index) is rethrown after all finish.
    public static func tryMap<T: Sendable>(_ count: Int, threads: Int, _ body: @Sendable (Int) throws -> T) throws -> [T] {
        let results: [Result<T, any Error>] = map(count, threads: threads) { i in Result { try body(i) } }
        return try results.map { try $0.get() }
    }
}

/// One result slot per index, written by the workers of one `forEach` and read after all of
/// them finished.
final class Slots<T: Sendable>: Sendable {
    private let storage: Mutex<[T?]>
    init(_ count: Int) { storage = Mutex([T?](repeating: nil, count: count)) }
    func set(_ i: Int, _ v: T) { storage.withLock { $0[i] = v } }
    func values() -> [T] { storage.withLock { $0.map { $0! } } }
}

/// A lock-protected counter (work distribution, progress across worker threads).
public final class Counter: Sendable {
    private let value = Mutex(0)
    public init() {}
    /// Returns the current value and adds one.
    public func increment() -> Int {
        value.withLock { v in
            defer { v += 1 }
            return v
        }
    }
}
