import UnsegLinAlg

/// A small deterministic k-means for spectral segments (a few thousand points, a few dozen dims).
///
/// k-means++ seeding (one candidate per step, D^2 sampling) from `SeededRandom.stream(seed, restart)`,
/// Lloyd iterations until no assignment changes (or `maxIterations`), empty clusters relocated to
/// the point farthest from its centroid; the restart with the lowest inertia wins (first on ties).
/// Assignment ties go to the lower cluster index. O(restarts * iterations * n * k * d).
enum SegmentKMeans {
    /// Cluster index per point `[n]` for `points` `[n, d]`, `k` clusters (1 <= k <= n).
    static func cluster(_ points: Matrix, k: Int, seed: UInt64, restarts: Int, maxIterations: Int) -> [Int] {
        let n = points.rows
        precondition(k >= 1 && k <= n, "SegmentKMeans: k=\(k) should be in 1...\(n)")
        var best: [Int] = []
        var bestInertia = Double.infinity
        for r in 0..<max(1, restarts) {
            var rng = SeededRandom.stream(seed: seed, index: UInt64(r))
            let (labels, inertia) = run(points, k: k, rng: &rng, maxIterations: maxIterations)
            if inertia < bestInertia { bestInertia = inertia; best = labels }
        }
        return best
    }

    static func dist2(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, _ d: Int) -> Double {
        var s = 0.0
        for j in 0..<d { let t = Double(p[j] - q[j]); s += t * t }
        return s
    }

    static func run(_ points: Matrix, k: Int, rng: inout SeededRandom, maxIterations: Int) -> ([Int], Double) {
        let n = points.rows, d = points.cols
        var centers = [Float](repeating: 0, count: k * d)
        var labels = [Int](repeating: -1, count: n)
        var dist = [Double](repeating: 0, count: n)
        var inertia = 0.0
        points.data.withUnsafeBufferPointer { pb in
            let p = pb.baseAddress!
            // k-means++ seeding
            let first = rng.int(below: n)
            for j in 0..<d { centers[j] = p[first * d + j] }
            for i in 0..<n { dist[i] = dist2(p + i * d, p + first * d, d) }
            if k > 1 {
                for c in 1..<k {
                    let total = dist.reduce(0, +)
                    var pick = 0
                    if total > 0 {
                        var target = rng.double() * total
                        pick = n - 1
                        for i in 0..<n { target -= dist[i]; if target < 0 { pick = i; break } }
                    } else {
                        pick = rng.int(below: n)
                    }
                    centers.withUnsafeMutableBufferPointer { cb in
                        for j in 0..<d { cb[c * d + j] = p[pick * d + j] }
                        for i in 0..<n { dist[i] = min(dist[i], dist2(p + i * d, cb.baseAddress! + c * d, d)) }
                    }
                }
            }
            var counts = [Int](repeating: 0, count: k)
            var sums = [Double](repeating: 0, count: k * d)
            for _ in 0..<max(1, maxIterations) {
                var changed = false
                inertia = 0
                centers.withUnsafeBufferPointer { cb in
                    for i in 0..<n {
                        var bl = 0
                        var bd = dist2(p + i * d, cb.baseAddress!, d)
                        for c in 1..<k {
                            let t = dist2(p + i * d, cb.baseAddress! + c * d, d)
                            if t < bd { bd = t; bl = c }
                        }
                        if labels[i] != bl { labels[i] = bl; changed = true }
                        dist[i] = bd
                        inertia += bd
                    }
                }
                if !changed { break }
                for c in 0..<k { counts[c] = 0 }
                for t in 0..<(k * d) { sums[t] = 0 }
                for i in 0..<n {
                    counts[labels[i]] += 1
                    for j in 0..<d { sums[labels[i] * d + j] += Double(p[i * d + j]) }
                }
                for c in 0..<k {
                    if counts[c] > 0 {
                        for j in 0..<d { centers[c * d + j] = Float(sums[c * d + j] / Double(counts[c])) }
                    } else {
                        // relocate an empty cluster to the point farthest from its centroid
                        var far = 0
                        for i in 1..<n where dist[i] > dist[far] { far = i }
                        for j in 0..<d { centers[c * d + j] = p[far * d + j] }
                        dist[far] = 0
                    }
                }
            }
        }
        return (labels, inertia)
    }
}
