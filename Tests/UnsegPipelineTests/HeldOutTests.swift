import Foundation
import Testing
import UnsegClustering
import UnsegCore
import UnsegLinAlg
@testable import UnsegPipeline
import UnsegStore
import UnsegSynthetic

/// The MaskContrast-style fit on the held-out mosaic corpus (issue 27, Docs/maskcontrast.md): seed 0
/// of the documented measurement (300 / 100 images, 384 channels; `Tools/heldout-maskcontrast.sh`),
/// asserted. (At 120 / 40 images and 128 channels the 0.5 row fell 1.3 points short of the
/// Baseline: the claim is for the measured size.) The masks of `unseg propose`'s default threshold (0.4) span several
/// classes; the mask stages' threshold (masks.primaps_threshold 0.5) gives more, purer masks, and
/// with them the MaskContrast-style row is at least the pixel k-means Baseline's mIoU.
@Suite struct HeldOutMaskContrastTests {
    /// Cell-weighted purity of the masks (share of a mask's labelled cells in its majority class)
    /// and masks per image.
    static func purity(_ props: ProposalsFile, _ store: FeatureStore) throws -> (purity: Double, perImage: Double) {
        let l = store.layout, p = l.imageHeight / l.gridHeight
        var agree = 0, total = 0, masks = 0
        for i in 0..<l.imageCount {
            let m = try props.masks(i), lab = try store.labels(i)
            var counts: [Int: [Int: Int]] = [:]
            for c in 0..<m.count where m[c] != 0 {
                let y = (c / l.gridWidth) * p + p / 2, x = (c % l.gridWidth) * p + p / 2
                let cls = Int(lab[y * l.imageWidth + x])
                if cls != 255 { counts[Int(m[c]), default: [:]][cls, default: 0] += 1 }
            }
            for (_, byClass) in counts { agree += byClass.values.max() ?? 0; total += byClass.values.reduce(0, +); masks += 1 }
        }
        return (Double(agree) / Double(max(total, 1)), Double(masks) / Double(l.imageCount))
    }

    @Test func finerMasksLiftTheMaskContrastRowToTheBaseline() throws {
        let train = scratch("mosaic-train.h5"), val = scratch("mosaic-val.h5")
        for p in [train, val] { try? FileManager.default.removeItem(atPath: p) }
        try Synthesize.writeMosaicStore(config: SyntheticConfig(imageCount: 300, imageSize: 320, patchSize: 8, channels: 384, classes: 27, seed: 0, split: "train"), path: train, threads: 2)
        try Synthesize.writeMosaicStore(config: SyntheticConfig(imageCount: 100, imageSize: 320, patchSize: 8, channels: 384, classes: 27, seed: 0, split: "val"), path: val, threads: 2)
        let store = try FeatureStore(path: train)
        var quality: [Double: (purity: Double, perImage: Double)] = [:]
        for t in [0.4, 0.5] {
            let out = scratch("mosaic-props-\(t).h5")
            try? FileManager.default.removeItem(atPath: out)
            var o = ProposeOptions(threads: 2)
            o.primaps.threshold = Float(t)
            _ = try ProposeJob.run(storePath: train, outputPath: out, options: o)
            quality[t] = try Self.purity(try ProposalsFile(path: out, store: store), store)
        }
        let (q4, q5) = (quality[0.4]!, quality[0.5]!)
        #expect(q5.purity > q4.purity + 0.05 && q5.perImage > q4.perImage, "masks at 0.5: purity \(q5.purity), \(q5.perImage)/image; at 0.4: \(q4.purity), \(q4.perImage)/image")

        func score(_ r: Recipe, _ props: String, _ tag: String) throws -> Double {
            let ck = scratch("mosaic-\(tag).h5"), pred = scratch("mosaic-\(tag)-pred.h5")
            for p in [ck, pred] { try? FileManager.default.removeItem(atPath: p) }
            _ = try FitJob.run(FitOptions(recipe: r, storePath: train, proposalsPath: props, checkpointPath: ck, threads: 2))
            var po = PredictOptions(checkpointPath: ck, storePath: val, outPath: pred)
            po.threads = 2
            _ = try PredictJob.run(po)
            return try EvaluateJob.run(storePath: val, predictionsPath: pred, threads: 2).result.miou
        }
        let demo = Recipe.demo
        #expect(demo.masks.primapsThreshold == 0.5, "the mask stages' threshold the measurement chose")
        let baseline = try score(demo.baseline, scratch("mosaic-props-0.4.h5"), "baseline")
        let coarse = try score(demo.maskContrastOnly, scratch("mosaic-props-0.4.h5"), "mc-0.4")
        let fine = try score(demo.maskContrastOnly, scratch("mosaic-props-0.5.h5"), "mc-0.5")
        #expect(fine >= baseline && fine > coarse, "MaskContrast-style mIoU: \(fine) with 0.5 masks, \(coarse) with 0.4; Baseline \(baseline)")
    }
}
