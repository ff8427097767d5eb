import Foundation
import Testing
import UnsegLinAlg
import UnsegSynthetic

/// The held-out mosaic corpus (`unseg synth --scene mosaic`): deterministic, other statistics than
/// the street corpus, rare classes only as small objects.
@Suite struct MosaicCorpusTests {
    static func corpus(seed: UInt64 = 3, split: String = "train", count: Int = 24, size: Int = 160) throws -> MosaicCorpus {
        try MosaicCorpus(config: SyntheticConfig(imageCount: count, imageSize: size, patchSize: 8, channels: 32, classes: 27, seed: seed, split: split))
    }

    @Test func imagesArePureFunctionsOfTheSeedSplitAndIndex() throws {
        let a = try Self.corpus(), b = try Self.corpus()
        for i in [0, 5, 23] {
            let x = a.image(i), y = b.image(i)
            #expect(x.features == y.features && x.labels == y.labels && x.image == y.image, "image \(i)")
        }
        let val = try Self.corpus(split: "val")
        #expect(val.image(0).labels != a.image(0).labels, "splits differ")
        #expect(val.rareClasses == a.rareClasses, "the class structure is shared by the splits of a seed")
        #expect(try Self.corpus(seed: 4).rareClasses != a.rareClasses || Self.corpus(seed: 4).image(0).features != a.image(0).features)
    }

    @Test func frequenciesAreSkewedAndRareClassesStaySmall() throws {
        let c = try Self.corpus(count: 40, size: 320)
        var pixels = [Int](repeating: 0, count: 256)
        var largestRare = 0
        for i in 0..<c.config.imageCount {
            let img = c.image(i)
            var perImage = [Int](repeating: 0, count: 256)
            for l in img.labels { pixels[Int(l)] += 1; perImage[Int(l)] += 1 }
            largestRare = max(largestRare, c.rareClasses.map { perImage[$0] }.max() ?? 0)
        }
        let labelled = (0..<27).map { pixels[$0] }
        let total = Double(labelled.reduce(0, +))
        let sorted = labelled.sorted(by: >)
        #expect(Double(sorted[0]) / total > 0.15, "the most frequent class covers a large share: \(sorted.prefix(3))")
        #expect(Double(sorted[0]) > 20 * Double(sorted[20]), "Zipf-like frequencies: \(sorted)")
        // Rare classes: only ellipses (radius < 14 * 1.6 px) and bars (< 10 px wide): a few percent of an image at most.
        #expect(Double(largestRare) < 0.12 * 320 * 320, "a rare class covered \(largestRare) pixels of one image")
        #expect(c.rareClasses.allSatisfy { pixels[$0] > 0 }, "every rare class appears")
    }
}
