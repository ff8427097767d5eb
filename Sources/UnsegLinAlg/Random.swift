/// A seeded random generator that gives the same stream on every machine.
///
/// xoshiro256** (Blackman and Vigna, 2018) seeded through SplitMix64. Integer
/// outputs are bit-identical everywhere; floats are derived from the top bits
/// with exact arithmetic, Gaussians with Box-Muller (libm `log`/`cos`, which
/// glibc computes identically on every x86-64 machine). The whole state is four
/// `UInt64`s (`state`), so it can be checkpointed and restored exactly.
///
/// Use `shuffle(_:)` and `int(below:)` from here, not the standard library's
/// `shuffled(using:)`, whose algorithm is not guaranteed across Swift versions.
public struct SeededRandom: RandomNumberGenerator, Sendable, Equatable {
    public var state: (UInt64, UInt64, UInt64, UInt64) {
        get { (s0, s1, s2, s3) }
        set { (s0, s1, s2, s3) = newValue }
    }
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// Seeds the four words from `seed` with SplitMix64 (never all zero).
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(); s1 = splitmix(); s2 = splitmix(); s3 = splitmix()
    }

    /// Restores a generator from a saved `state`.
    public init(state: (UInt64, UInt64, UInt64, UInt64)) {
        (s0, s1, s2, s3) = state
    }

    /// An independent generator for stream `index` (e.g. one per image), derived from `seed`
    /// so that results do not depend on which thread handles which index.
    public static func stream(seed: UInt64, index: UInt64) -> SeededRandom {
        SeededRandom(seed: seed ^ (index &* 0xD1B5_4A32_D192_ED03) &+ 0x632B_E59B_D9B4_E019)
    }

    public static func == (a: SeededRandom, b: SeededRandom) -> Bool {
        a.s0 == b.s0 && a.s1 == b.s1 && a.s2 == b.s2 && a.s3 == b.s3
    }

    @inlinable static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = SeededRandom.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = SeededRandom.rotl(s3, 45)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func float() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func double() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform in `[lo, hi)`.
    public mutating func float(in range: Range<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * float()
    }

    /// Uniform integer in `0..<n` without modulo bias (Lemire's method). `n` must be positive.
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0, "int(below:) needs a positive bound, got \(n)")
        let bound = UInt64(n)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return Int(m.high)
    }

    /// Uniform integer in `range`.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + int(below: range.count)
    }

    /// Standard normal sample (Box-Muller, one of the pair).
    public mutating func gaussian() -> Float {
        var u1 = double()
        while u1 <= 0 { u1 = double() }
        let u2 = double()
        return Float((-2 * LibM.log(u1)).squareRoot() * LibM.cos(2 * Double.pi * u2))
    }

    /// `true` with probability `p`.
    public mutating func bernoulli(_ p: Double) -> Bool { double() < p }

    /// Fisher-Yates shuffle in place (deterministic for a given state).
    public mutating func shuffle<T>(_ a: inout [T]) {
        if a.count < 2 { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = int(below: i + 1)
            if i != j { a.swapAt(i, j) }
        }
    }

    /// A random permutation of `0..<n`.
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        shuffle(&p)
        return p
    }

    /// `k` distinct indices from `0..<n` in random order (`k <= n`).
    public mutating func sample(_ k: Int, from n: Int) -> [Int] {
        precondition(k <= n, "cannot sample \(k) distinct indices from \(n)")
        var p = Array(0..<n)
        for i in 0..<k {
            let j = i + int(below: n - i)
            p.swapAt(i, j)
        }
        return Array(p[0..<k])
    }
}

