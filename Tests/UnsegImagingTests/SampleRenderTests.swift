import Foundation
import Testing
@testable import UnsegImaging

/// Renders one sample of every picture. Files go to $UNSEG_IMAGING_SAMPLES_DIR when set (to
/// look at them), else to a temporary directory that is removed. Each file must read back
/// with the size that was written.
@Suite struct SampleRenderTests {
    func outputDir() throws -> (String, Bool) {
        if let d = ProcessInfo.processInfo.environment["UNSEG_IMAGING_SAMPLES_DIR"], !d.isEmpty {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            return (d, false)
        }
        return (try makeTempDir("samples"), true)
    }

    @Test func renderSamples() throws {
        let (dir, cleanup) = try outputDir()
        defer { if cleanup { removeDir(dir) } }
        var pictures: [(String, RGBImage)] = []

        let m27 = syntheticConfusion(classes: 27, seed: 27)
        pictures.append(("heatmap27", try Charts.heatmap(m27, rowNames: cityscapes27Names,
            title: "Cityscapes 27 classes: confusion (row-normalised)")))
        let m3 = syntheticConfusion(classes: 3, seed: 3)
        pictures.append(("heatmap3", try Charts.heatmap(m3, rowNames: ["road", "sky", "person"],
            title: "Confusion, 3 classes")))

        var rng = TestRNG(seed: 11)
        let iou = (0..<27).map { i -> Double in i == 9 ? .nan : (rng.double() * 95).rounded() / 1 + rng.double() }
        pictures.append(("barchart27", Charts.barChart(values: iou, names: cityscapes27Names,
            title: "Per-class IoU (Cityscapes, 27 classes)", colors: Palette.cityscapes27.colors)))
        pictures.append(("barchart3", Charts.barChart(values: [81.2, 45.0, 12.7], names: ["road", "sky", "person"],
            title: "IoU")))

        let loss = (0..<40).map { e -> Double in 2.5 * exp(-Double(e) / 8) + 0.3 + 0.05 * sin(Double(e)) }
        let miou = (0..<40).map { e -> Double in 0.2 + 0.25 * (1 - exp(-Double(e) / 10)) }
        pictures.append(("linechart_loss", Charts.lineChart(values: loss, title: "Training loss",
            xLabel: "epoch", yLabel: "loss")))
        pictures.append(("linechart_two", Charts.lineChart(series: [
            LineSeries(name: "mIoU train", values: miou),
            LineSeries(name: "mIoU val", values: miou.map { $0 - 0.03 }),
        ], title: "mIoU per epoch", xLabel: "epoch", yLabel: "mIoU")))

        let (img, lab) = syntheticStreet()
        let over = Composite.overlay(image: img, labels: lab, palette: .cityscapes19, alpha: 0.5,
                                     legendNames: cityscapes19Names)
        pictures.append(("overlay", over))
        var pred = lab
        for y in 0..<pred.height { for x in 0..<pred.width where pred[x, y] == 2 && x % 120 < 30 { pred[x, y] = 8 } }
        let side = Composite.sideBySide([
            img,
            Composite.overlay(image: img, labels: pred, palette: .cityscapes19, alpha: 0.6),
            Palette.cityscapes19.colorize(lab),
        ], titles: ["image", "prediction", "ground truth"])
        pictures.append(("side_by_side", side))

        for (name, p) in pictures {
            let path = dir + "/" + name + ".png"
            try PNG.write(p, to: path)
            let back = try PNG.readRGB(path)
            #expect(back == p, "\(name) did not round-trip")
        }
    }
}
