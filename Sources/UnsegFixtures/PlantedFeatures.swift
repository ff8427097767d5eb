import UnsegLinAlg

/// Synthetic feature maps with planted regions, for tests and benchmarks of the proposal methods.
///
/// Region 0 is the surround; regions 1...R-1 are non-overlapping axis-aligned rectangles, one per
/// tile of a near-square tile grid, each covering 50-90% of its tile per side at a random offset.
/// Region r has mean `common + d_r` with unit `d_r` orthogonal to each other (Gram-Schmidt on
/// Gaussian vectors, while regions <= C) and a shared component
/// `common ~ N(0, commonScale^2 I / C)` (like the strong common direction of DINO features);
/// each cell adds `N(0, noise^2 I / C)` and is multiplied by a scale uniform in [0.75, 1.25].
public enum PlantedFeatures {
    /// Features `[height * width, channels]` and the region of each cell `[height * width]` (0...regions-1).
    /// Deterministic for a given `seed`. O(h w C).
    public static func make(height: Int, width: Int, channels: Int, regions: Int,
                            noise: Float = 0.5, commonScale: Float = 0.5, seed: UInt64) -> (features: Matrix, regionMap: [Int]) {
        precondition(height >= 1 && width >= 1 && channels >= 1 && regions >= 1,
                     "PlantedFeatures.make: need positive sizes, got \(height) x \(width) x \(channels), regions \(regions)")
        var rng = SeededRandom(seed: seed)
        let n = height * width
        var map = [Int](repeating: 0, count: n)
        let rects = regions - 1
        if rects > 0 {
            var gx = 1
            while gx * gx < rects { gx += 1 }
            let gy = (rects + gx - 1) / gx
            for r in 0..<rects {
                let tx = r % gx, ty = r / gx
                let x0 = tx * width / gx, x1 = (tx + 1) * width / gx
                let y0 = ty * height / gy, y1 = (ty + 1) * height / gy
                let tw = x1 - x0, th = y1 - y0
                if tw <= 0 || th <= 0 { continue }
                let rw = max(1, Int((Float(tw) * rng.float(in: 0.5..<0.9)).rounded()))
                let rh = max(1, Int((Float(th) * rng.float(in: 0.5..<0.9)).rounded()))
                let ox = x0 + rng.int(below: tw - rw + 1), oy = y0 + rng.int(below: th - rh + 1)
                for y in oy..<(oy + rh) { for x in ox..<(ox + rw) { map[y * width + x] = r + 1 } }
            }
        }
        let inv = 1 / Float(channels).squareRoot()
        let common = (0..<channels).map { _ in rng.gaussian() * commonScale * inv }
        // distinct directions: Gram-Schmidt on Gaussian vectors (while regions <= channels), unit norm
        var dirs: [[Float]] = []
        for _ in 0..<regions {
            var d = (0..<channels).map { _ in rng.gaussian() }
            for e in dirs.suffix(channels - 1) {
                let t = Reduce.dot(d, e)
                for j in 0..<channels { d[j] -= t * e[j] }
            }
            let nrm = Reduce.dot(d, d).squareRoot()
            dirs.append(nrm > 0 ? d.map { $0 / nrm } : d)
        }
        let means: [[Float]] = dirs.map { d in (0..<channels).map { j in common[j] + d[j] } }
        var f = Matrix(rows: n, cols: channels)
        for i in 0..<n {
            let m = means[map[i]]
            let scale = rng.float(in: 0.75..<1.25)
            for j in 0..<channels { f.data[i * channels + j] = scale * (m[j] + noise * inv * rng.gaussian()) }
        }
        return (f, map)
    }
}
