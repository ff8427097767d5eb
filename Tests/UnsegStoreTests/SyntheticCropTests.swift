import Foundation
import Testing
import UnsegLinAlg
import UnsegCore
@testable import UnsegStore
@testable import UnsegSynthetic

/// `unseg synth --crops`: the scene rendered zoomed in, consistent with the full view, and the
/// store's `/features_crops` / `/crop_boxes` as the reader validates them.
@Suite struct SyntheticCropTests {
    /// Without noise, per-cell norm factors, blur or depth drift (which weighs each fraction by its
    /// cell's row), a feature is linear in the cell's area fractions, so a full-view cell equals the
    /// mean of the 2 x 2 crop cells that cover it in a half-side crop whose origin is on 4-pixel
    /// boundaries: the instance vectors, nuisance offset and norm scale are the full view's.
    @Test("crop features from synth agree with the zoomed render: a full cell is the mean of its 2 x 2 crop cells")
    func cropsAgreeWithTheFullView() throws {
        var config = SyntheticConfig(imageCount: 4, imageSize: 64, patchSize: 8, channels: 24, classes: 27, seed: 3)
        config.noise = 0; config.normSpread = 0; config.blurSigma = 0; config.depthDrift = 0; config.smallObjects = 6
        let corpus = try SyntheticCorpus(config: config)
        let box = CropBox(x0: 12, y0: 20, x1: 44, y1: 52)   // 32 px: cells 4 px of the image; full cells 1.5...5.5
        var compared = 0
        for i in 0..<4 {
            let img = corpus.image(i, boxes: [box])
            let crop = img.cropFeatures[0]
            let g = 8, c = 24
            #expect(img.features == corpus.image(i).features, "crops changed the full view of image \(i)")
            for cy in 0..<g {
                for cx in 0..<g {
                    // Full cell (cy, cx) covers pixels [8cx, 8cx + 8); crop cells are 4 px, from x0.
                    let px = 8 * cx - Int(box.x0), py = 8 * cy - Int(box.y0)
                    guard px >= 0, py >= 0, px + 8 <= 32, py + 8 <= 32 else { continue }
                    let X = px / 4, Y = py / 4
                    for j in 0..<c {
                        let mean = (crop[Y * g + X, j] + crop[Y * g + X + 1, j] + crop[(Y + 1) * g + X, j] + crop[(Y + 1) * g + X + 1, j]) / 4
                        let full = img.features[cy * g + cx, j]
                        #expect(abs(mean - full) <= 1e-3 * max(1, abs(full)), "image \(i) cell (\(cy), \(cx)) channel \(j): crop mean \(mean), full \(full)")
                    }
                    compared += 1
                }
            }
        }
        #expect(compared == 4 * 9)
    }

    @Test("with noise the crops are their own draws: deterministic, different from each other, same statistics")
    func cropsAreSeeded() throws {
        let corpus = try SyntheticCorpus(config: SyntheticConfig(imageCount: 3, imageSize: 64, patchSize: 8, channels: 32, seed: 4))
        let views = CropViews(count: 2, scale: 0.3...0.8)
        let a = corpus.image(1, crops: views), b = corpus.image(1, crops: views)
        #expect(a == b)
        #expect(a.cropBoxes.count == 2 && a.cropFeatures.count == 2 && a.cropBoxes[0] != a.cropBoxes[1])
        #expect(a.features == corpus.image(1).features && a.labels == corpus.image(1).labels)
        let norm = { (m: Matrix) in m.rowNorms().reduce(0, +) / Float(m.rows) }
        #expect(abs(norm(a.cropFeatures[0]) / norm(a.features) - 1) < 0.3)
    }

    @Test("small objects: many segments under a cell's area; 0 leaves the corpus as it was")
    func smallObjects() throws {
        var config = SyntheticConfig(imageCount: 6, imageSize: 320, patchSize: 8, channels: 8, seed: 2)
        let plain = try SyntheticCorpus(config: config)
        config.smallObjects = 12
        let small = try SyntheticCorpus(config: config)
        var extra = 0
        for i in 0..<6 {
            let p = plain.image(i).labels, s = small.image(i).labels
            extra += zip(p, s).filter { $0 != $1 && ($1 == 10 || $1 == 13) }.count
        }
        #expect(extra > 6 * 12 * 5, "small poles / signs added \(extra) pixels")
        config.smallObjects = 65
        #expect(throws: SyntheticConfigError.self) { _ = try SyntheticCorpus(config: config) }
    }

    @Test("a synth store with crops: /features_crops and /crop_boxes read back as rendered")
    func storeRoundTrip() throws {
        let path = tempPath("synth-crops.h5")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = SyntheticConfig(imageCount: 5, imageSize: 64, patchSize: 8, channels: 16, seed: 6)
        let views = CropViews(count: 3, scale: 0.4...0.6)
        let corpus = try SyntheticCorpus(config: config)
        let meta = StoreMetadata(backbone: "synthetic", patchSize: 8, dataset: "synthetic", split: "train", labelProtocol: "cityscapes27",
                                 classNames: corpus.classNames)
        let writer = try FeatureStoreWriter(path: path, metadata: meta, count: 5, gridHeight: 8, gridWidth: 8, channels: 16, cropCount: 3)
        for i in 0..<5 {
            let img = corpus.image(i, crops: views)
            try writer.write(i, features: img.features, image: img.image, labels: img.labels, name: img.name,
                             crops: Array(zip(img.cropFeatures, img.cropBoxes)))
        }
        // The writer refuses a box the reader would refuse.
        let img0 = corpus.image(0, crops: views)
        let outside = CropBox(x0: 40, y0: 0, x1: 72, y1: 32)
        #expect(throws: StoreError.self) {
            try writer.write(0, features: img0.features, image: img0.image, labels: img0.labels, name: img0.name,
                             crops: [(img0.cropFeatures[0], outside), (img0.cropFeatures[1], img0.cropBoxes[1]), (img0.cropFeatures[2], img0.cropBoxes[2])])
        }
        try writer.commit()
        let store = try FeatureStore(path: path)
        #expect(store.layout.cropCount == 3 && store.cropBoxes.count == 3 && store.cropBoxes[0].count == 5)
        for i in 0..<5 {
            let img = corpus.image(i, crops: views)
            for k in 0..<3 {
                #expect(store.cropBoxes[k][i] == img.cropBoxes[k])
                let f = try store.features(i, source: .crop(k))
                for j in 0..<f.count { #expect(abs(f.data[j] - img.cropFeatures[k].data[j]) <= 2e-3 * max(1, abs(img.cropFeatures[k].data[j]))) }
            }
        }
        #expect(throws: StoreError.self) { _ = try store.features(0, source: .crop(3)) }
    }
}
