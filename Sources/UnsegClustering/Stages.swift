import UnsegCore
import UnsegLinAlg

// The seam between a fit's per-image work and its reductions.
//
// Every fit stage does a step in the same shape: per-image work (pure, on any thread, any
// process) produces one contribution per image; the contributions of the batch come back in
// global image order; an ordered reduction turns them into the update. `ImageExecutor` is where
// the per-image work runs: `LocalExecutor` runs it on this process's threads; a distributed
// executor runs each process's share and gathers the contributions in image order, so the
// reduction, and with it every byte of the result, does not depend on where the work ran.

/// Runs the per-image work of one step and returns one result per image, in image order.
public protocol ImageExecutor: Sendable {
    /// `body(i)` for the indices of `0..<count` this process owns; every index's result, in index
    /// order, on every process (so every process runs the same ordered reduction). `body` only
    /// reads shared state and writes its own result. Throws when the exchange fails.
    func map<T: Sendable & WireCodable>(_ count: Int, _ body: @Sendable (Int) -> T) throws -> [T]
    /// `body(i)` for the indices this process owns, nil for the others: per-image state that a
    /// later `map` of the same step (on the same process, for the same index) consumes.
    func mapLocal<T: Sendable>(_ count: Int, _ body: @Sendable (Int) -> T) -> [T?]
    /// Whether this process works on item `i` of `count` (its inputs are here; the others are
    /// placeholders, not to be checked or read).
    func holds(_ i: Int, of count: Int) -> Bool
}

/// Per-image work on this process's threads (one BLAS thread each, see `Parallel`).
public struct LocalExecutor: ImageExecutor {
    public let threads: Int
    public init(threads: Int) { self.threads = max(1, threads) }
    public func map<T: Sendable & WireCodable>(_ count: Int, _ body: @Sendable (Int) -> T) -> [T] { Parallel.map(count, threads: threads, body) }
    public func mapLocal<T: Sendable>(_ count: Int, _ body: @Sendable (Int) -> T) -> [T?] { Parallel.map(count, threads: threads, body) }
    public func holds(_ i: Int, of count: Int) -> Bool { true }
}

/// Per-image work shared by the processes of an MPI job: each rank takes a contiguous share of
/// the indices (`Distributed.shard`), runs it on its threads, and all ranks exchange the results
/// (`allgather`, in rank order = index order). With one process it is `LocalExecutor`.
public struct DistributedExecutor: ImageExecutor {
    public let threads: Int
    public init(threads: Int) { self.threads = max(1, threads) }
    public func map<T: Sendable & WireCodable>(_ count: Int, _ body: @Sendable (Int) -> T) throws -> [T] {
        guard Distributed.isActive else { return Parallel.map(count, threads: threads, body) }
        let own = Distributed.shard(count)
        let lo = own.lowerBound
        let mine = Parallel.map(own.count, threads: threads) { j in body(lo + j) }
        var w = WireWriter()
        for r in mine { r.encode(into: &w) }
        var out: [T] = []
        out.reserveCapacity(count)
        for (rank, bytes) in try Distributed.allgather(w.bytes).enumerated() {
            var rd = WireReader(bytes)
            for _ in Distributed.shard(count, rank: rank) { out.append(try T(wire: &rd)) }
            guard rd.isAtEnd else { throw KernelError("rank \(rank) sent more than its \(Distributed.shard(count, rank: rank).count) results") }
        }
        return out
    }
    public func mapLocal<T: Sendable>(_ count: Int, _ body: @Sendable (Int) -> T) -> [T?] {
        guard Distributed.isActive else { return Parallel.map(count, threads: threads, body) }
        let own = Distributed.shard(count)
        let lo = own.lowerBound
        let mine = Parallel.map(own.count, threads: threads) { j in body(lo + j) }
        return (0..<count).map { own.contains($0) ? mine[$0 - lo] : nil }
    }
    public func holds(_ i: Int, of count: Int) -> Bool { Distributed.holds(i, of: count) }
}

// MARK: saved state of the stages (StateRecord, written by the store layer into checkpoints)

extension PrototypeModel {
    /// `directions` `[K, C]` and `gains` `[K]` under `prefix/`.
    public func save(into r: inout StateRecord, at prefix: String) {
        r.set(prefix + "/directions", directions.data, shape: [classCount, channelCount])
        r.set(prefix + "/gains", gains)
    }

    /// The model saved by `save(into:at:)`; errors name the entry.
    public init(record r: StateRecord, at prefix: String) throws {
        let dName = r.place(prefix + "/directions"), gName = r.place(prefix + "/gains")
        let (d, shape) = try r.floats(prefix + "/directions")
        guard shape.count == 2, shape[0] >= 1, shape[1] >= 1, shape[0] * shape[1] == d.count else {
            throw ClusteringError("saved prototypes '\(dName)' have shape \(shape); expected [K, C]")
        }
        let (g, _) = try r.floats(prefix + "/gains")
        guard g.count == shape[0] else {
            throw ClusteringError("saved prototypes '\(gName)' have \(g.count) entries for \(shape[0]) prototypes")
        }
        if let bad = Finite.describeFirstNonFinite(d, cols: shape[1]) {
            throw ClusteringError("saved prototypes '\(dName)' \(bad); the checkpoint is damaged; fit again")
        }
        if let bad = Finite.describeFirstNonFinite(g, cols: 1) {
            throw ClusteringError("saved prototypes '\(gName)' \(bad); the checkpoint is damaged; fit again")
        }
        let dm = Matrix(rows: shape[0], cols: shape[1], data: d)
        if let zero = dm.rowNorms().firstIndex(where: { $0 == 0 }) {
            throw ClusteringError("saved prototypes '\(dName)': prototype \(zero) is all zeros, which defines no direction; the checkpoint is damaged; fit again")
        }
        self.init(directions: Matrix(rows: shape[0], cols: shape[1], data: d), gains: g)
    }
}

extension AdamState {
    public func save(into r: inout StateRecord, at prefix: String) {
        r.set(prefix + "/m", m)
        r.set(prefix + "/v", v)
        r.set(prefix + "/step", step)
    }
    public init(record r: StateRecord, at prefix: String) throws {
        let m = try r.floats(prefix + "/m").values, v = try r.floats(prefix + "/v").values
        guard m.count == v.count else { throw ClusteringError("saved Adam state: m has \(m.count) entries, v \(v.count)") }
        self.init(m: m, v: v, step: try r.int(prefix + "/step"))
    }
}

func saveRNG(_ s: [UInt64], into r: inout StateRecord) { r.set("rng_state", s) }
func loadRNG(_ r: StateRecord) throws -> [UInt64] {
    let w = try r.words("rng_state")
    guard w.count == 4 else { throw ClusteringError("saved generator state has \(w.count) words, needs 4") }
    return w
}

extension CosineKMeansTrainerState {
    /// The state as a record: `model/*`, `adam/*`, `rng_state`, `step`, `epoch`, `loss`.
    public var record: StateRecord {
        var r = StateRecord()
        model.save(into: &r, at: "model")
        adam.save(into: &r, at: "adam")
        saveRNG(rngState, into: &r)
        r.set("step", step)
        r.set("epoch", epoch)
        r.set("loss", lossHistory)
        return r
    }
    public init(record r: StateRecord) throws {
        self.init(model: try PrototypeModel(record: r, at: "model"), adam: try AdamState(record: r, at: "adam"),
                  step: try r.int("step"), epoch: try r.int("epoch"), rngState: try loadRNG(r),
                  lossHistory: try r.doubles("loss"))
    }
}

extension EMTrainerState {
    /// The state as a record: `running/*`, `momentum/*`, `adam/*`, `rng_state`, `step`, `epoch`,
    /// `momentum_updates`, `loss`.
    public var record: StateRecord {
        var r = StateRecord()
        running.save(into: &r, at: "running")
        momentum.save(into: &r, at: "momentum")
        adam.save(into: &r, at: "adam")
        saveRNG(rngState, into: &r)
        r.set("step", step)
        r.set("epoch", epoch)
        r.set("momentum_updates", momentumUpdates)
        r.set("loss", lossHistory)
        return r
    }
    public init(record r: StateRecord) throws {
        self.init(running: try PrototypeModel(record: r, at: "running"), momentum: try PrototypeModel(record: r, at: "momentum"),
                  adam: try AdamState(record: r, at: "adam"), step: try r.int("step"), epoch: try r.int("epoch"),
                  momentumUpdates: try r.int("momentum_updates"), rngState: try loadRNG(r), lossHistory: try r.doubles("loss"))
    }
}

extension MaskContrastTrainerState {
    /// The state as a record: `query/*`, `key/*` (heads), `optimizer/*`, `queue/entries`
    /// `[capacity, D]`, `queue/pointer`, `queue/filled`, `step`, `epoch`, `loss`.
    public var record: StateRecord {
        var r = StateRecord()
        query.save(into: &r, at: "query")
        key.save(into: &r, at: "key")
        optimizer.save(into: &r, at: "optimizer")
        r.set("queue/entries", queue.entries.data, shape: [queue.entries.rows, queue.entries.cols])
        r.set("queue/pointer", queue.pointer)
        r.set("queue/filled", queue.filled)
        r.set("step", step)
        r.set("epoch", epoch)
        r.set("loss", lossHistory)
        return r
    }
    public init(record r: StateRecord) throws {
        let (q, shape) = try r.floats("queue/entries")
        guard shape.count == 2, shape[0] * shape[1] == q.count else {
            throw ClusteringError("saved queue '\(r.place("queue/entries"))' has shape \(shape); expected [capacity, D]")
        }
        if let bad = Finite.describeFirstNonFinite(q, cols: max(shape[1], 1)) {
            throw ClusteringError("saved queue '\(r.place("queue/entries"))' \(bad); the checkpoint is damaged; fit again")
        }
        self.init(query: try ProjectionHead(record: r, at: "query"), key: try ProjectionHead(record: r, at: "key"),
                  optimizer: try AdamState(record: r, at: "optimizer"),
                  queue: try PrototypeQueue(entries: Matrix(rows: shape[0], cols: shape[1], data: q), pointer: try r.int("queue/pointer"),
                                            filled: try r.int("queue/filled")),
                  step: try r.int("step"), epoch: try r.int("epoch"), lossHistory: try r.doubles("loss"))
    }
}
