import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegPipeline

/// The claim of the README's main job: on the synthetic corpus, PriMaPs-EM on top of the
/// cosine k-means baseline improves mIoU (and accuracy) on the val split.
///
/// Size: the whole demo pipeline (synth, CRF-refined proposals, both fits, predict, evaluate,
/// export) at 200 train / 60 val images, about 30 s per seed on 2 cores.
///
/// Margin. Measured with this recipe and size (Docs/fitting.md), mIoU gains on seeds 0-5 were
/// +3.4, +0.1, +5.0, +0.2, +3.2, +2.3 (mean +2.4, standard deviation 1.9); accuracy gains
/// +7.5 to +24.3. One seed alone can land near zero (EM relabels small objects inside the
/// masks around them, see the doc), so the test takes the first three seeds, not chosen ones,
/// and asserts a mean mIoU gain of at least +1.0 point (measured +2.8: the standard error of
/// a three-seed mean is about 1.1), no seed losing more than 1.0 point, and accuracy up by at
/// least 5 points on every seed. Results are deterministic per seed and thread count, so the
/// test cannot flake; the margin is for platform differences in floating point (BLAS kernels).
@Suite(.serialized) struct DemoTests {
    @Test("PriMaPs-EM beats the cosine k-means baseline in mIoU on the synthetic val split (seeds 0, 1, 2)")
    func primapsEMBeatsBaseline() throws {
        var gains: [Double] = []
        for seed in UInt64(0)..<3 {
            var o = DemoJob.Options()
            o.workdir = scratch("demo-seed\(seed)")
            o.trainImages = 200
            o.valImages = 60
            o.seed = seed
            o.threads = 2
            let s = try DemoJob.run(o, log: { _ in }, progress: { _ in nil })
            try? FileManager.default.removeItem(atPath: o.workdir)
            #expect(s.rows.map(\.method) == ["Baseline", "+PriMaPs-EM"])
            let base = s.rows[0], em = s.rows[1]
            let gain = em.miou - base.miou
            gains.append(gain)
            #expect(gain > -1.0, "seed \(seed): mIoU \(base.miou) -> \(em.miou)")
            #expect(em.accuracy > base.accuracy + 5, "seed \(seed): Acc \(base.accuracy) -> \(em.accuracy)")
        }
        let mean = gains.reduce(0, +) / Double(gains.count)
        #expect(mean >= 1.0, "mean mIoU gain \(mean) over seeds 0-2: \(gains)")
    }
}
