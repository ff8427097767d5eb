import Foundation

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
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
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
    public static func map<T>(_ count: Int, threads: Int, _ body: (Int) -> T) -> [T] {
        var out = [T?](repeating: nil, count: count)
        out.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            forEach(count, threads: threads) { i in (base + i).pointee = body(i) }
        }
        return out.map { $0! }
    }

    /// `map` whose body may throw; the first error (lowest index) is rethrown after all finish.
    public static func tryMap<T>(_ count: Int, threads: Int, _ body: (Int) throws -> T) throws -> [T] {
        let results: [Result<T, Error>] = map(count, threads: threads) { i in Result { try body(i) } }
        return try results.map { try $0.get() }
    }
}

/// A lock-protected counter (work distribution, progress across worker threads).
public final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    public init() {}
    /// Returns the current value and adds one.
    public func increment() -> Int {
        lock.lock(); defer { lock.unlock() }
        let v = value
        value += 1
        return v
    }
}
