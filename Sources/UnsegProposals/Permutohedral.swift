import Foundation
import CUnsegKernels

/// Open-addressing hash table from lattice keys (`d` Int16 coordinates) to dense vertex ids.
///
/// Keys live in one flat `[vertexCount * d]` Int16 buffer; the table holds `Int32` vertex ids
/// (`-1` = empty slot), linear probing, capacity a power of two kept at load <= 1/2 (grown by
/// rehashing); the slot is the top bits of a multiplicative hash. Vertex ids are assigned in
/// order of first insertion, so a lattice built from the same features is identical run to run.
/// A struct of raw buffers (no class-property exclusivity checks in the hot loop): call
/// `release()` exactly once when done.
protocol LatticeKeyTable {
    /// Number of vertices inserted.
    var count: Int { get }
    /// Vertex id of the key with coordinates `coords[0..<d]`, inserting it when absent.
    mutating func insert(_ coords: UnsafePointer<Int>) -> Int32
    /// Ids (-1 when absent) of the two neighbours of vertex `i` along lattice direction `j`:
    /// `key - 1 + (d+1) e_j` and `key + 1 - (d+1) e_j` (for `j == d` only the `-1`/`+1` part,
    /// the implicit last coordinate carries the rest).
    func neighbors(of i: Int, direction j: Int) -> (Int32, Int32)
    /// The first of `neighbors(of:direction:)` only (the second is its mirror: if `b` is the first
    /// neighbour of `a`, then `a` is the second neighbour of `b`).
    func firstNeighbor(of i: Int, direction j: Int) -> Int32
    /// Hints the cache line `firstNeighbor(of: i, direction: j)` probes first (no effect on results).
    func prefetchNeighbor(of i: Int, direction j: Int)
    /// Frees the buffers (call once).
    func release()
}

/// General key table (any coordinate that fits in Int16).
struct LatticeHashTable: LatticeKeyTable {
    let keySize: Int
    private(set) var count = 0
    private var keys: UnsafeMutablePointer<Int16>
    private var keyCapacity: Int
    private var table: UnsafeMutablePointer<Int32>
    private var mask: Int
    private var shift: UInt64

    init(keySize: Int, expected: Int) {
        self.keySize = max(keySize, 1)
        var cap = 1024, bits: UInt64 = 10
        while cap < 2 * expected { cap <<= 1; bits += 1 }
        mask = cap - 1
        shift = 64 - bits
        table = .allocate(capacity: cap)
        table.initialize(repeating: -1, count: cap)
        keyCapacity = max(expected, 256)
        keys = .allocate(capacity: keyCapacity * self.keySize)
        scratch = .allocate(capacity: 3 * self.keySize)
    }

    private let scratch: UnsafeMutablePointer<Int16>

    func release() {
        table.deallocate()
        keys.deallocate()
        scratch.deallocate()
    }

    mutating func insert(_ coords: UnsafePointer<Int>) -> Int32 {
        for i in 0..<keySize { scratch[i] = Int16(truncatingIfNeeded: coords[i]) }
        return insert(UnsafePointer(scratch))
    }

    func neighbors(of i: Int, direction j: Int) -> (Int32, Int32) {
        let kk = key(i), a = scratch + keySize, c = scratch + 2 * keySize
        let d = keySize
        for q in 0..<d { a[q] = kk[q] &- 1; c[q] = kk[q] &+ 1 }
        if j < d { a[j] = kk[j] &+ Int16(d); c[j] = kk[j] &- Int16(d) }
        return (find(UnsafePointer(a)), find(UnsafePointer(c)))
    }

    func prefetchNeighbor(of i: Int, direction j: Int) {}

    func firstNeighbor(of i: Int, direction j: Int) -> Int32 {
        let kk = key(i), a = scratch + keySize
        let d = keySize
        for q in 0..<d { a[q] = kk[q] &- 1 }
        if j < d { a[j] = kk[j] &+ Int16(d) }
        return find(UnsafePointer(a))
    }

    /// The key of vertex `i` (`keySize` values).
    @inline(__always) func key(_ i: Int) -> UnsafePointer<Int16> { UnsafePointer(keys + i * keySize) }

    @inline(__always) private func slot(_ k: UnsafePointer<Int16>) -> Int {
        var h: UInt64 = 0
        for i in 0..<keySize {
            h = (h &+ UInt64(UInt16(bitPattern: k[i]))) &* 0x9E37_79B9_7F4A_7C15
        }
        return Int(truncatingIfNeeded: h >> shift)
    }

    @inline(__always) private func equal(_ a: UnsafePointer<Int16>, _ b: UnsafePointer<Int16>) -> Bool {
        for i in 0..<keySize where a[i] != b[i] { return false }
        return true
    }

    /// Vertex id of `k`, or -1 when absent.
    @inline(__always) func find(_ k: UnsafePointer<Int16>) -> Int32 {
        var s = slot(k)
        while true {
            let e = table[s]
            if e < 0 { return -1 }
            if equal(key(Int(e)), k) { return e }
            s = (s + 1) & mask
        }
    }

    /// Vertex id of `k`, inserting it when absent.
    @inline(__always) mutating func insert(_ k: UnsafePointer<Int16>) -> Int32 {
        if 2 * (count + 1) > mask + 1 { grow() }
        var s = slot(k)
        while true {
            let e = table[s]
            if e < 0 {
                if count == keyCapacity {
                    let newCap = keyCapacity * 2
                    let nk = UnsafeMutablePointer<Int16>.allocate(capacity: newCap * keySize)
                    nk.update(from: keys, count: count * keySize)
                    keys.deallocate()
                    keys = nk
                    keyCapacity = newCap
                }
                (keys + count * keySize).update(from: k, count: keySize)
                table[s] = Int32(count)
                count += 1
                return Int32(count - 1)
            }
            if equal(key(Int(e)), k) { return e }
            s = (s + 1) & mask
        }
    }

    private mutating func grow() {
        let cap = (mask + 1) * 2
        table.deallocate()
        table = .allocate(capacity: cap)
        table.initialize(repeating: -1, count: cap)
        mask = cap - 1
        shift -= 1
        for i in 0..<count {
            var s = slot(key(i))
            while table[s] >= 0 { s = (s + 1) & mask }
            table[s] = Int32(i)
        }
    }
}

/// Key table for lattices whose coordinates fit in `64 / d` bits: each key is packed into one
/// UInt64 (biased fields), stored inline in the slots (one cache line touched per probe), and a
/// neighbour key is the key plus a constant packed offset. Same insertion-order ids as
/// `LatticeHashTable`.
struct PackedKeyTable: LatticeKeyTable {
    struct Slot { var key: UInt64; var id: Int32 }
    let d: Int
    let bits: Int
    let bias: Int
    private(set) var count = 0
    private var slots: UnsafeMutablePointer<Slot>
    private var mask: Int
    private var shift: UInt64
    private var keys: UnsafeMutablePointer<UInt64>
    private var keyCapacity: Int
    /// Per direction: packed offsets to the two neighbours.
    private let delta1: UnsafeMutablePointer<UInt64>
    private let delta2: UnsafeMutablePointer<UInt64>
    /// 256-entry cache of recently inserted keys and their ids (-1 = empty).
    private let recentKeys: UnsafeMutablePointer<UInt64>
    private let recentIds: UnsafeMutablePointer<Int32>

    /// Coordinates must satisfy `|c| < 2^(bits-1) - 1` with `bits = 64 / d`; `d >= 2`.
    static func maxCoordinate(dimension d: Int) -> Int { (1 << (64 / d - 1)) - 2 }

    init(dimension d: Int, expected: Int) {
        self.d = d
        bits = 64 / d
        bias = 1 << (bits - 1)
        var cap = 1024, b: UInt64 = 10
        while cap < 2 * expected { cap <<= 1; b += 1 }
        mask = cap - 1
        shift = 64 - b
        slots = .allocate(capacity: cap)
        slots.initialize(repeating: Slot(key: 0, id: -1), count: cap)
        keyCapacity = max(expected, 256)
        keys = .allocate(capacity: keyCapacity)
        delta1 = .allocate(capacity: d + 1)
        delta2 = .allocate(capacity: d + 1)
        recentKeys = .allocate(capacity: 256)
        recentKeys.initialize(repeating: 0, count: 256)
        recentIds = .allocate(capacity: 256)
        recentIds.initialize(repeating: -1, count: 256)
        for j in 0...d {
            var a: Int64 = 0, c: Int64 = 0
            for q in 0..<d {
                let da: Int64 = q == j ? Int64(d) : -1
                a = a &+ (da &* (Int64(1) << Int64(q * bits)))
                c = c &- (da &* (Int64(1) << Int64(q * bits)))
            }
            delta1[j] = UInt64(bitPattern: a)
            delta2[j] = UInt64(bitPattern: c)
        }
    }

    func release() {
        slots.deallocate()
        keys.deallocate()
        delta1.deallocate()
        delta2.deallocate()
        recentKeys.deallocate()
        recentIds.deallocate()
    }

    @inline(__always) private func slot(_ k: UInt64) -> Int {
        Int(truncatingIfNeeded: ((k ^ (k >> 31)) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inline(__always) func find(_ k: UInt64) -> Int32 {
        var s = slot(k)
        while true {
            let e = slots[s]
            if e.id < 0 { return -1 }
            if e.key == k { return e.id }
            s = (s + 1) & mask
        }
    }

    mutating func insert(_ coords: UnsafePointer<Int>) -> Int32 {
        var k: UInt64 = 0
        for i in 0..<d { k |= UInt64(coords[i] + bias) << UInt64(i * bits) }
        // Neighbouring pixels share most simplex corners: a small direct-mapped cache of recent
        // keys (stays in L1) answers those without a probe into the big table.
        let ci = Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 56)
        if recentKeys[ci] == k && recentIds[ci] >= 0 { return recentIds[ci] }
        let id = insertUncached(k)
        recentKeys[ci] = k
        recentIds[ci] = id
        return id
    }

    private mutating func insertUncached(_ k: UInt64) -> Int32 {
        if 2 * (count + 1) > mask + 1 { grow() }
        var s = slot(k)
        while true {
            let e = slots[s]
            if e.id < 0 {
                if count == keyCapacity {
                    let newCap = keyCapacity * 2
                    let nk = UnsafeMutablePointer<UInt64>.allocate(capacity: newCap)
                    nk.update(from: keys, count: count)
                    keys.deallocate()
                    keys = nk
                    keyCapacity = newCap
                }
                keys[count] = k
                slots[s] = Slot(key: k, id: Int32(count))
                count += 1
                return Int32(count - 1)
            }
            if e.key == k { return e.id }
            s = (s + 1) & mask
        }
    }

    func neighbors(of i: Int, direction j: Int) -> (Int32, Int32) {
        let k = keys[i]
        return (find(k &+ delta1[j]), find(k &+ delta2[j]))
    }

    func firstNeighbor(of i: Int, direction j: Int) -> Int32 { find(keys[i] &+ delta1[j]) }

    func prefetchNeighbor(of i: Int, direction j: Int) { unseg_prefetch(slots + slot(keys[i] &+ delta1[j])) }

    private mutating func grow() {
        let cap = (mask + 1) * 2
        slots.deallocate()
        slots = .allocate(capacity: cap)
        slots.initialize(repeating: Slot(key: 0, id: -1), count: cap)
        mask = cap - 1
        shift -= 1
        for i in 0..<count {
            var s = slot(keys[i])
            while slots[s].id >= 0 { s = (s + 1) & mask }
            slots[s] = Slot(key: keys[i], id: Int32(i))
        }
    }
}

/// Permutohedral lattice (Adams, Baek, Davis, "Fast High-Dimensional Filtering Using the
/// Permutohedral Lattice", Eurographics 2010) for approximate Gaussian filtering
/// `out_i ~ sum_j exp(-|f_i - f_j|^2 / 2) v_j` of values attached to `d`-dimensional features.
///
/// Follows the reference dense-CRF implementation (Kraehenbuehl's `densecrf`, the code behind
/// `pydensecrf`) step for step: elevation with scale `sqrt(2/3) (d+1) / sqrt((i+1)(i+2))`,
/// rounding to the nearest remainder-0 point, rank by sorting, barycentric weights; splat; blur
/// along each of the `d+1` lattice directions with `new = old + 0.5 (left + right)` (the 1-2-1
/// kernel up to a factor 2); slice with the constant `alpha = 1 / (1 + 2^-d)`. As in the reference,
/// the output at a point includes its own (self) contribution: nothing is subtracted.
///
/// Built once per feature set (O(N d^2) plus hashing, vertex count `M <= N (d+1)`), then
/// `filter` costs O((N + M) (d+1) C) for `C` value channels. The values are stored
/// `[vertex, C]` contiguous so all channels (labels) move together. Deterministic.
public final class PermutohedralLattice: Sendable {
    /// Number of input points `N`.
    public let pointCount: Int
    /// Feature dimension `d`.
    public let dimension: Int
    /// Number of lattice vertices `M`.
    public let vertexCount: Int
    /// `[N, d+1]`: vertex id + 1 of each enclosing-simplex corner (0 is a zero dummy vertex).
    let offsets: [Int32]
    /// `[N, d+1]`: barycentric weight of each corner.
    let weights: [Float]
    /// `[d+1, M, 2]`: vertex id + 1 of the two neighbours along each lattice direction (0 = none).
    let neighbors: [Int32]
    /// The reference's slice constant `1 / (1 + 2^-d)`.
    public let alpha: Float

    /// Builds the lattice for `features` `[N, d]` (row-major, already divided by the kernel
    /// standard deviations). Keys are packed into one UInt64 when the elevated coordinates fit
    /// in `64/d` bits (d=2 and d=5 with the CRF settings), else stored as Int16 arrays.
    /// Precondition: `d >= 1`, `features.count == N * d`, and
    /// `keyBound(features:count:dimension:) < maxKeyBound` (callers with user input check it first).
    public init(features: [Float], count n: Int, dimension d: Int) {
        precondition(d >= 1 && n >= 0 && features.count == n * d,
                     "PermutohedralLattice: features has \(features.count) values, expected N=\(n) x d=\(d)")
        pointCount = n
        dimension = d
        alpha = 1 / (1 + Float(pow(2.0, -Double(d))))
        let scale = PermutohedralLattice.elevationScale(d)
        let limit = PermutohedralLattice.keyBound(features: features, count: n, dimension: d)
        // (d = 1 would need 64-bit fields: it takes the general table.)
        if d >= 2 && d <= 16 && limit < Float(PackedKeyTable.maxCoordinate(dimension: d)) {
            (offsets, weights, neighbors, vertexCount) = PermutohedralLattice.buildPacked(features, n, d, scale)
        } else {
            precondition(limit < PermutohedralLattice.maxKeyBound, "PermutohedralLattice: key bound \(limit) too large for Int16 keys; "
                         + "scale the features down (larger kernel standard deviations)")
            var table = LatticeHashTable(keySize: d, expected: 2 * n)
            defer { table.release() }
            (offsets, weights, neighbors, vertexCount) =
                PermutohedralLattice.build(features, n, d, scale, &table)
        }
    }

    /// Largest key-coordinate bound the general (Int16) key table accepts.
    public static let maxKeyBound: Float = 32000

    /// Upper bound on |lattice key coordinate| for `features` `[N, d]` (elevation bound plus
    /// rounding, simplex and neighbour offsets). Must be below `maxKeyBound`. O(N d).
    public static func keyBound(features: [Float], count n: Int, dimension d: Int) -> Float {
        let scale = elevationScale(d)
        var bound: Float = 0
        features.withUnsafeBufferPointer { fb in
            for k in 0..<n {
                var s: Float = 0, mx: Float = 0
                for i in 0..<d { let v = abs(fb[k * d + i]) * scale[i]; s += v; mx = max(mx, v) }
                bound = max(bound, s + Float(d) * mx)
            }
        }
        return bound + Float(4 * (d + 1))
    }

    /// Diagonal of the elevation matrix: `sqrt(2/3) (d+1) / sqrt((i+1)(i+2))` (p.5-6 of Adams et al.).
    static func elevationScale(_ d: Int) -> [Float] {
        let invStd = Float((2.0 / 3.0).squareRoot()) * Float(d + 1)
        return (0..<d).map { i in 1 / Float((Double((i + 2) * (i + 1))).squareRoot()) * invStd }
    }

    /// `build` with a `PackedKeyTable`, in C (`CUnsegKernels/lattice.c`): the same offsets, weights,
    /// vertex ids and neighbours (tested), about twice as fast: it computes a block of 8 points'
    /// simplices (for d = 5 with AVX2, all 8 at once) before inserting their corners, prefetching
    /// the table slots meanwhile, and probes a keys-only table. The Swift `build` stays the
    /// reference the tests compare with. Preconditions as for `PackedKeyTable`.
    static func buildPacked(_ features: [Float], _ n: Int, _ d: Int, _ scale: [Float]) -> ([Int32], [Float], [Int32], Int) {
        let d1 = d + 1
        var m: Int64 = 0
        var offsets = [Int32](repeating: 0, count: n * d1)
        var weights = [Float](repeating: 0, count: n * d1)
        let lattice = offsets.withUnsafeMutableBufferPointer { o in
            weights.withUnsafeMutableBufferPointer { w in
                features.withUnsafeBufferPointer { f in
                    scale.withUnsafeBufferPointer { s in
                        unseg_lattice_build(f.baseAddress, Int64(n), Int32(d), s.baseAddress, o.baseAddress, w.baseAddress, &m)
                    }
                }
            }
        }
        precondition(lattice != nil, "PermutohedralLattice: out of memory building the lattice of \(n) points")
        defer { unseg_lattice_free(lattice) }
        let vertices = Int(m)
        let neighbors = [Int32](unsafeUninitializedCapacity: d1 * vertices * 2) { nb, count in
            unseg_lattice_neighbors(lattice, nb.baseAddress)
            count = d1 * vertices * 2
        }
        return (offsets, weights, neighbors, vertices)
    }

    /// Splat coordinates (offsets, barycentric weights), vertex count and blur neighbours.
    static func build<T: LatticeKeyTable>(_ features: [Float], _ n: Int, _ d: Int, _ scale: [Float],
                                          _ hashTable: inout T) -> ([Int32], [Float], [Int32], Int) {
        let d1 = d + 1
        var offs = [Int32](repeating: 0, count: n * d1)
        var bary = [Float](repeating: 0, count: n * d1)
        // canonical[r * d1 + j]: coordinate j of the remainder-r corner of the canonical simplex.
        var canonical = [Int](repeating: 0, count: d1 * d1)
        for i in 0...d {
            for j in 0...(d - i) { canonical[i * d1 + j] = i }
            if d - i + 1 <= d { for j in (d - i + 1)...d { canonical[i * d1 + j] = i - d1 } }
        }
        var elevated = [Float](repeating: 0, count: d1)
        var rem0 = [Int](repeating: 0, count: d1)
        var rank = [Int](repeating: 0, count: d1)
        var bc = [Float](repeating: 0, count: d1 + 1)
        var key = [Int](repeating: 0, count: d1)
        let pr0 = UnsafeMutablePointer<Int>.allocate(capacity: d1), prk = UnsafeMutablePointer<Int>.allocate(capacity: d1)
        let res = UnsafeMutablePointer<Float>.allocate(capacity: d1)
        defer { pr0.deallocate(); prk.deallocate(); res.deallocate() }
        let down = 1 / Float(d1), up = Float(d1)
        features.withUnsafeBufferPointer { fb in
        scale.withUnsafeBufferPointer { sc in
        canonical.withUnsafeBufferPointer { can in
        elevated.withUnsafeMutableBufferPointer { el in
        rem0.withUnsafeMutableBufferPointer { r0 in
        rank.withUnsafeMutableBufferPointer { rk in
        bc.withUnsafeMutableBufferPointer { b in
        key.withUnsafeMutableBufferPointer { ky in
        offs.withUnsafeMutableBufferPointer { ob in
        bary.withUnsafeMutableBufferPointer { bb in
            for k in 0..<n {
                let f = fb.baseAddress! + k * d
                // Elevate: y = E f (p.5 of Adams et al.).
                var sm: Float = 0
                var j = d
                while j > 0 {
                    let cf = f[j - 1] * sc[j - 1]
                    el[j] = sm - Float(j) * cf
                    sm += cf
                    j -= 1
                }
                el[0] = sm
                // Closest remainder-0 point by rounding each coordinate to a multiple of d+1.
                var sum = 0
                for i in 0...d {
                    let v = down * el[i]
                    // floor and ceil of v without libm calls (baseline x86-64 has no roundss):
                    // the nearest integer by the 1.5 * 2^23 trick (exact for |v| < 2^22, which
                    // keyBound guarantees), then one step down or up. Same values as floorf / ceilf.
                    let near = (v + 12_582_912) - 12_582_912
                    let fl = near > v ? near - 1 : near, ce = near < v ? near + 1 : near
                    let upV = ce * up, downV = fl * up
                    let q = Int(upV - el[i] < el[i] - downV ? ce : fl)
                    r0[i] = q * d1
                    sum += q
                }
                // Rank of each coordinate of the residual (its position in descending order).
                // Branch-free counting (the comparisons are unpredictable).
                for i in 0...d { rk[i] = 0; res[i] = el[i] - Float(r0[i]) }
                for i in 0..<d {
                    let di = res[i]
                    var ri = rk[i]
                    for jj in (i + 1)...d {
                        let c = di < res[jj] ? 1 : 0
                        ri &+= c
                        rk[jj] &+= 1 &- c
                    }
                    rk[i] = ri
                }
                // Bring the point back onto the plane when the rounding left it off (sum != 0).
                for i in 0...d {
                    rk[i] += sum
                    if rk[i] < 0 {
                        rk[i] += d1; r0[i] += d1
                    } else if rk[i] > d {
                        rk[i] -= d1; r0[i] -= d1
                    }
                }
                // Barycentric coordinates (p.10).
                for i in 0...(d + 1) { b[i] = 0 }
                for i in 0...d {
                    let v = (el[i] - Float(r0[i])) * down
                    b[d - rk[i]] += v
                    b[d - rk[i] + 1] -= v
                }
                b[0] += 1 + b[d + 1]
                // The d+1 corners of the enclosing simplex. They depend only on the remainder-0 point
                // and the ranks: when both equal the previous point's (neighbouring pixels of a
                // smooth region), its vertex ids are reused without hashing.
                var same = k > 0
                if same { for i in 0...d where r0[i] != pr0[i] || rk[i] != prk[i] { same = false; break } }
                if same {
                    for r in 0...d {
                        ob[k * d1 + r] = ob[(k - 1) * d1 + r]
                        bb[k * d1 + r] = b[r]
                    }
                    continue
                }
                for i in 0...d { pr0[i] = r0[i]; prk[i] = rk[i] }
                for r in 0...d {
                    for i in 0..<d {
                        ky[i] = r0[i] + can[r * d1 + rk[i]]
                    }
                    let id = hashTable.insert(UnsafePointer(ky.baseAddress!))
                    ob[k * d1 + r] = id + 1
                    bb[k * d1 + r] = b[r]
                }
            }
        }}}}}}}}}}
        let m = hashTable.count
        // Neighbours of each vertex along each of the d+1 lattice directions.
        var nb = [Int32](repeating: 0, count: d1 * m * 2)
        // One lookup per vertex and direction: the second neighbour relation mirrors the first.
        nb.withUnsafeMutableBufferPointer { nbb in
            for j in 0...d {
                for i in 0..<m {
                    // The probes are random reads into a table larger than the caches: ask for the
                    // slot a dozen vertices ahead.
                    if i + 12 < m { hashTable.prefetchNeighbor(of: i + 12, direction: j) }
                    let a = hashTable.firstNeighbor(of: i, direction: j)
                    nbb[(j * m + i) * 2] = a + 1
                    if a >= 0 { nbb[(j * m + Int(a)) * 2 + 1] = Int32(i + 1) }
                }
            }
        }
        return (offs, bary, nb, m)
    }

    /// Scratch buffers for `filter`: two `[(M+1), blocks]` arrays of SIMD4 values.
    public final class Workspace {
        let capacity: Int
        let a: UnsafeMutablePointer<SIMD4<Float>>
        let b: UnsafeMutablePointer<SIMD4<Float>>
        /// Space for `vertexCount` vertices of `blocks * 4` channels.
        public init(vertexCount: Int, blocks: Int) {
            capacity = (vertexCount + 1) * blocks
            a = .allocate(capacity: capacity)
            b = .allocate(capacity: capacity)
        }
        deinit { a.deallocate(); b.deallocate() }
    }

    /// Filters `input` `[N, 4 blocks]` (channels padded to a multiple of 4, as SIMD4 blocks) into
    /// `output`: `output_i (+)= outWeight * outScale_i * alpha * slice(blur(splat(inScale_j input_j)))_i`.
    ///
    /// `inScale`/`outScale` are optional per-point factors `[N]` (the CRF's symmetric
    /// normalisation). With `accumulate == false` the output is overwritten.
    /// With `roundBlurToHalf` every blur direction's output is rounded to float16 (nearest even), as
    /// the dense CRF's fused pass stores them (`FusedLattice.halfValues`).
    /// O((N + M) (d+1) blocks); no allocation. `output` must not alias `input`.
    public func filter(_ input: UnsafePointer<SIMD4<Float>>, blocks c: Int, inScale: UnsafePointer<Float>?,
                       into output: UnsafeMutablePointer<SIMD4<Float>>, outScale: UnsafePointer<Float>?,
                       outWeight: Float, accumulate: Bool, workspace ws: Workspace, roundBlurToHalf: Bool = false) {
        let d1 = dimension + 1, m = vertexCount, n = pointCount
        precondition(ws.capacity >= (m + 1) * c, "lattice workspace holds \(ws.capacity) blocks, need \((m + 1) * c)")
        var values = ws.a, newValues = ws.b
        values.initialize(repeating: .zero, count: (m + 1) * c)
        newValues.initialize(repeating: .zero, count: c)
        offsets.withUnsafeBufferPointer { ob in
        weights.withUnsafeBufferPointer { wb in
        neighbors.withUnsafeBufferPointer { nbb in
            let o = ob.baseAddress!, w = wb.baseAddress!, nb = nbb.baseAddress!
            // Splat.
            for i in 0..<n {
                let s = inScale?[i] ?? 1
                let src = input + i * c
                for r in 0..<d1 {
                    let wt = SIMD4<Float>(repeating: w[i * d1 + r] * s)
                    let dst = values + Int(o[i * d1 + r]) * c
                    for k in 0..<c { dst[k] += wt * src[k] }
                }
            }
            // Blur along each lattice direction: new = old + 0.5 (n1 + n2). Vertex 0 stays zero.
            let half = SIMD4<Float>(repeating: 0.5)
            for j in 0..<d1 {
                let nj = nb + j * m * 2
                for i in 0..<m {
                    let old = values + (i + 1) * c
                    let nw = newValues + (i + 1) * c
                    let a = values + Int(nj[2 * i]) * c
                    let b = values + Int(nj[2 * i + 1]) * c
                    for k in 0..<c { nw[k] = old[k] + half * (a[k] + b[k]) }
                }
                if roundBlurToHalf {
                    unseg_round_through_half(UnsafeMutableRawPointer(newValues + c).assumingMemoryBound(to: Float.self), m * c * 4)
                }
                swap(&values, &newValues)
            }
            // Slice.
            for i in 0..<n {
                let s = (outScale?[i] ?? 1) * outWeight * alpha
                let dst = output + i * c
                var acc0 = accumulate ? dst[0] : .zero
                if c == 1 {
                    for r in 0..<d1 {
                        acc0 += SIMD4<Float>(repeating: w[i * d1 + r] * s) * values[Int(o[i * d1 + r])]
                    }
                    dst[0] = acc0
                    continue
                }
                if !accumulate { for k in 0..<c { dst[k] = .zero } }
                for r in 0..<d1 {
                    let wt = SIMD4<Float>(repeating: w[i * d1 + r] * s)
                    let src = values + Int(o[i * d1 + r]) * c
                    for k in 0..<c { dst[k] += wt * src[k] }
                }
            }
        }}}
    }

    /// `filter(ones, channels: 1)` (the dense CRF's normalisation), the same bits, by a one-channel
    /// scalar C loop (`unseg_lattice_filter_ones`) instead of four-lane blocks with three idle lanes.
    func filterOnes() -> [Float] {
        let n = pointCount
        var status: Int32 = 0
        let out = [Float](unsafeUninitializedCapacity: n) { o, count in
            status = offsets.withUnsafeBufferPointer { ob in
            weights.withUnsafeBufferPointer { wb in
            neighbors.withUnsafeBufferPointer { nb in
                unseg_lattice_filter_ones(ob.baseAddress, wb.baseAddress, nb.baseAddress, Int64(n), Int32(dimension + 1),
                                          Int64(vertexCount), alpha, o.baseAddress)
            }}}
            count = status == 0 ? n : 0
        }
        precondition(status == 0, "PermutohedralLattice: out of memory filtering \(n) points")
        return out
    }

    /// Convenience: filters `values` `[N, channels]` and returns `[N, channels]`
    /// (`alpha * slice(blur(splat(values)))`, self-contribution included, unnormalised).
    public func filter(_ values: [Float], channels: Int) -> [Float] {
        precondition(values.count == pointCount * channels,
                     "lattice filter: values has \(values.count) elements, expected N=\(pointCount) x \(channels)")
        let blocks = (channels + 3) / 4
        let n = pointCount
        let inp = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: max(n * blocks, 1))
        let outp = UnsafeMutablePointer<SIMD4<Float>>.allocate(capacity: max(n * blocks, 1))
        defer { inp.deallocate(); outp.deallocate() }
        inp.initialize(repeating: .zero, count: n * blocks)
        UnsafeMutableRawPointer(inp).withMemoryRebound(to: Float.self, capacity: n * blocks * 4) { f in
            for i in 0..<n { for k in 0..<channels { f[i * blocks * 4 + k] = values[i * channels + k] } }
        }
        let ws = Workspace(vertexCount: vertexCount, blocks: blocks)
        filter(inp, blocks: blocks, inScale: nil, into: outp, outScale: nil, outWeight: 1, accumulate: false,
               workspace: ws)
        var out = [Float](repeating: 0, count: values.count)
        UnsafeMutableRawPointer(outp).withMemoryRebound(to: Float.self, capacity: n * blocks * 4) { f in
            for i in 0..<n { for k in 0..<channels { out[i * channels + k] = f[i * blocks * 4 + k] } }
        }
        return out
    }
}
