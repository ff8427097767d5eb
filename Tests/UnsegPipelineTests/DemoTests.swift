import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegPipeline

/// The claims of the README's main job: on the synthetic corpus, PriMaPs-EM on top of the
/// cosine k-means baseline improves mIoU (and accuracy) on the val split; the MaskContrast-style
/// head's mask clustering is far more accurate than the same clustering of the raw features
/// (Segment k-means) and more accurate than the baseline; the multi-scale consistency raises the
/// small-object IoU over +PriMaPs-EM.
///
/// Size: the whole demo pipeline (synth, CRF-refined proposals, the five fits, predict, evaluate,
/// export) at 200 train / 60 val images, about 40 s per seed on 2 cores.
///
/// Margin. Measured with this recipe and size (Docs/fitting.md), mIoU gains on seeds 0-5 were
/// +3.4, +0.1, +5.0, +0.2, +3.2, +2.3 (mean +2.4, standard deviation 1.9); accuracy gains
/// +7.5 to +24.3. One seed alone can land near zero (EM relabels small objects inside the
/// masks around them, see the doc), so the test takes the first three seeds, not chosen ones,
/// and asserts a mean mIoU gain of at least +1.0 point (measured +2.8: the standard error of
/// a three-seed mean is about 1.1), no seed losing more than 1.0 point, and accuracy up by at
/// least 5 points on every seed. Results are deterministic per seed and thread count, so the
/// test cannot flake; the margin is for platform differences in floating point (BLAS kernels).
///
/// MaskContrast-style rows at this size, seeds 0, 1, 2 (Acc / mIoU): 81.0 / 50.8, 75.2 / 40.9,
/// 91.8 / 46.2; Segment k-means 56.8 / 54.3, 57.3 / 47.7, 54.8 / 53.3; Baseline 71.6 / 49.8,
/// 72.6 / 44.2, 74.0 / 44.0. The head's accuracy gain over Segment k-means is +17.9 to +37.0, so
/// the test asks +10 on every seed; over the Baseline it is +2.6 to +17.8 (mean +9.9, a wide
/// spread), so the test asks a mean gain of +3. mIoU is not asserted for this row: it is below
/// Segment k-means' on all three seeds (-3.5 to -7.1) and within 3.3 points of the Baseline's
/// (Docs/maskcontrast.md reads these numbers).
@Suite(.serialized) struct DemoTests {
    @Test("PriMaPs-EM beats the cosine k-means baseline in mIoU; the contrastive head beats segment k-means in accuracy (seeds 0, 1, 2)")
    func demoRows() throws {
        var gains: [Double] = [], headOverBaseline: [Double] = [], smallGains: [Double] = []
        for seed in UInt64(0)..<3 {
            var o = DemoJob.Options()
            o.workdir = scratch("demo-seed\(seed)")
            o.trainImages = 200
            o.valImages = 60
            o.seed = seed
            o.threads = 2
            let s = try DemoJob.run(o, log: { _ in }, progress: { _ in nil })
            try? FileManager.default.removeItem(atPath: o.workdir)
            #expect(s.rows.map(\.method) == ["Baseline (k-means)", "Segment k-means", "MaskContrast-style", "+PriMaPs-EM", "+multi-scale consistency"])
            // The multi-scale consistency is for small objects: measured +12.5, +3.3, +13.9 on the
            // small-object IoU over +PriMaPs-EM at this size (mIoU +6.6, +2.2, +7.7; Acc +1.5, -8.0, +1.3).
            let smallGain = (s.rows[4].smallIoU ?? 0) - (s.rows[3].smallIoU ?? 100)
            smallGains.append(smallGain)
            #expect(smallGain > 2, "seed \(seed): small-object IoU \(String(describing: s.rows[3].smallIoU)) -> \(String(describing: s.rows[4].smallIoU))")
            let base = s.rows[0], seg = s.rows[1], head = s.rows[2], em = s.rows[3]
            #expect(head.accuracy > seg.accuracy + 10, "seed \(seed): Acc segment k-means \(seg.accuracy) -> head \(head.accuracy)")
            headOverBaseline.append(head.accuracy - base.accuracy)
            let gain = em.miou - base.miou
            gains.append(gain)
            #expect(gain > -1.0, "seed \(seed): mIoU \(base.miou) -> \(em.miou)")
            #expect(em.accuracy > base.accuracy + 5, "seed \(seed): Acc \(base.accuracy) -> \(em.accuracy)")
        }
        let mean = gains.reduce(0, +) / Double(gains.count)
        #expect(mean >= 1.0, "mean mIoU gain \(mean) over seeds 0-2: \(gains)")
        let headMean = headOverBaseline.reduce(0, +) / 3
        #expect(headMean >= 3, "mean Acc gain of the head over the baseline \(headMean): \(headOverBaseline)")
        #expect(smallGains.reduce(0, +) / 3 >= 5, "mean small-object IoU gain of the consistency \(smallGains)")
    }
}

/// The demo's file table prints whole descriptions (it once cut them at a fixed width).
@Test func demoFileTablePrintsWholeNames() {
    let files = [("val store", "/w/val.h5"), ("MaskContrast-style val predictions", "/w/mc-val.h5"), ("pseudo-labels (PNG) + manifest", "/w/x/manifest.json")]
    let lines = DemoFiles.table(files).split(separator: "\n").map(String.init)
    #expect(lines.count == 3)
    for (line, (what, path)) in zip(lines, files) {
        #expect(line.hasPrefix("  " + what + " ") && line.hasSuffix("  " + path), "\(line)")
    }
    // Paths start in one column.
    #expect(Set(zip(lines, files).map { $0.0.count - $0.1.1.count }).count == 1)
}
