import UnsegClustering
import UnsegLinAlg

/// Planted inputs for PriMaPs-EM benchmarks and tests.
public enum EMFixtures {
    /// A synthetic batch for benchmarks: `count` images of `[h*w, channels]` features uniform in
    /// [-1, 1) and `H x W` mask maps of `masks` vertical stripes (stripe 0 background). Seeded.
    public static func syntheticBatch(count: Int, h: Int = 40, w: Int = 40, H: Int = 320, W: Int = 320,
                                      channels: Int = 384, masks: Int = 8, seed: UInt64 = 0) -> [EMSample] {
        (0..<count).map { i in
            var r = SeededRandom.stream(seed: seed, index: UInt64(i))
            let f = Matrix(rows: h * w, cols: channels, data: (0..<(h * w * channels)).map { _ in r.float(in: -1..<1) })
            var m = [UInt8](repeating: 0, count: H * W)
            for y in 0..<H { for x in 0..<W { m[y * W + x] = UInt8(min(x * (masks + 1) / W, 255)) } }
            return EMSample(features: f, height: h, width: w, labelHeight: H, labelWidth: W, masks: m)
        }
    }
}
