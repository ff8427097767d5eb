import Foundation
import Testing
import UnsegTestSupport
@testable import UnsegImaging

/// Bounding box (minX, minY, maxX, maxY) of pixels that differ from `background`.
func inkBox(_ img: RGBImage, background: RGB = .white) -> (Int, Int, Int, Int)? {
    var box: (Int, Int, Int, Int)? = nil
    for y in 0..<img.height {
        for x in 0..<img.width where img[x, y] != background {
            if let b = box { box = (min(b.0, x), min(b.1, y), max(b.2, x), max(b.3, y)) } else { box = (x, y, x, y) }
        }
    }
    return box
}

@Suite struct PaletteTests {
    @Test func vocPaletteKnownValuesAndDistinct() {
        let p = Palette.voc(count: 256)
        #expect(Array(p.colors[0..<9]) == [RGB(0, 0, 0), RGB(128, 0, 0), RGB(0, 128, 0), RGB(128, 128, 0),
                                           RGB(0, 0, 128), RGB(128, 0, 128), RGB(0, 128, 128),
                                           RGB(128, 128, 128), RGB(64, 0, 0)])
        #expect(Set(p.colors).count == 256)
        let d = Palette.distinct(count: 40)
        #expect(Set(d.colors).count == 40 && !d.colors.contains(.black) && !d.colors.contains(.white))
        #expect(Palette.distinct(count: 40) == d, "deterministic")
    }

    @Test func colorizeUsesPaletteAndIgnoreColour() {
        var pal = Palette(colors: [RGB(1, 2, 3), RGB(4, 5, 6)])
        pal.ignoreColor = RGB(9, 9, 9)
        let lab = GrayImage(width: 4, height: 1, pixels: [0, 1, 255, 7])
        let img = pal.colorize(lab)
        #expect(img[0, 0] == RGB(1, 2, 3) && img[1, 0] == RGB(4, 5, 6) && img[2, 0] == RGB(9, 9, 9))
        #expect(img[3, 0] == Palette.vocColor(7), "ids beyond the palette fall back to VOC")
    }

    @Test func viridisLightnessIsMonotone() {
        let cm = ColorMap.viridis
        #expect(cm.color(at: 0) == RGB(68, 1, 84) && cm.color(at: 1) == RGB(253, 231, 37))
        var prev = -1.0
        for i in 0...200 {
            let l = cm.color(at: Double(i) / 200).luminance
            #expect(l > prev, "luminance must rise at step \(i)")
            prev = l
        }
        #expect(cm.color(at: -3) == cm.color(at: 0) && cm.color(at: 7) == cm.color(at: 1) && cm.color(at: .nan) == cm.color(at: 0))
    }
}

@Suite struct CanvasTests {
    @Test func textPixelsLandWhereTheFontSays() {
        var img = RGBImage(width: 40, height: 20, fill: .white)
        // 'I' = columns 0x00, 0x41, 0x7F, 0x41, 0x00: column 2 is a full vertical bar of 7 rows.
        img.drawText("I", x: 10, y: 5, color: .black)
        for row in 0..<7 { #expect(img[12, 5 + row] == .black, "row \(row) of the stem") }
        #expect(img[12, 12] == .white && img[10, 5] == .white && img[11, 6] == .white)
        #expect(img[11, 5] == .black && img[13, 11] == .black, "serifs")
        // Scale 3: each font pixel is a 3x3 block.
        var big = RGBImage(width: 40, height: 30, fill: .white)
        big.drawText("I", x: 0, y: 0, color: .black, scale: 3)
        #expect(inkBox(big)! == (3, 0, 11, 20))
    }

    @Test func measuredWidthBoundsTheInk() {
        for (text, scale) in [("Hello, world", 1), ("mIoU 43.2%", 2), ("W", 3)] {
            var img = RGBImage(width: 300, height: 40, fill: .white)
            img.drawText(text, x: 5, y: 5, color: .black, scale: scale)
            let b = inkBox(img)!
            let w = BitmapFont.width(of: text, scale: scale)
            #expect(b.0 >= 5 && b.2 <= 5 + w - 1 && b.2 >= 5 + w - 1 - scale * 5, "\(text) at scale \(scale)")
            #expect(b.3 - 5 < BitmapFont.height(scale: scale))
        }
        #expect(BitmapFont.width(of: "abc", scale: 2) == 34 && BitmapFont.width(of: "") == 0)
        // Right alignment ends at x - 1; centre alignment straddles x.
        var img = RGBImage(width: 100, height: 20, fill: .white)
        img.drawText("TTT", x: 60, y: 2, color: .black, align: .right)
        #expect(inkBox(img)!.2 == 59)
    }

    @Test func verticalTextIsTheRotatedHorizontalText() {
        let text = "Ab9"
        var h = RGBImage(width: 30, height: 12, fill: .white)
        h.drawText(text, x: 0, y: 0, color: .black, scale: 1)
        var v = RGBImage(width: 12, height: 30, fill: .white)
        let w = BitmapFont.width(of: text)
        v.drawTextVertical(text, x: 0, y: w - 1, color: .black, scale: 1, align: .left)
        // Counter-clockwise rotation: horizontal (tx, ty) -> vertical (ty, w - 1 - tx).
        for ty in 0..<BitmapFont.glyphHeight {
            for tx in 0..<w { #expect(h[tx, ty] == v[ty, w - 1 - tx], "(\(tx), \(ty))") }
        }
    }

    @Test func linesRectsAndClipping() {
        var img = RGBImage(width: 10, height: 10, fill: .white)
        img.drawLine(x0: 0, y0: 0, x1: 9, y1: 9, color: .black)
        for i in 0..<10 { #expect(img[i, i] == .black) }
        #expect(img.pixels.filter { $0 == 0 }.count == 30, "exactly the diagonal")
        var d = RGBImage(width: 30, height: 1, fill: .white)
        d.drawLine(x0: 0, y0: 0, x1: 29, y1: 0, color: .black, dash: (on: 5, off: 5))
        #expect(d[0, 0] == .black && d[4, 0] == .black && d[5, 0] == .white && d[10, 0] == .black)
        var r = RGBImage(width: 8, height: 8, fill: .white)
        r.fillRect(x: -5, y: 6, width: 100, height: 100, color: .black)  // clipped, no trap
        #expect(inkBox(r)! == (0, 6, 7, 7))
        r.strokeRect(x: 1, y: 1, width: 4, height: 3, color: .red)
        #expect(r[1, 1] == .red && r[4, 3] == .red && r[2, 2] == .white)
        var b = RGBImage(width: 1, height: 1, fill: .black)
        b.blend(0, 0, .white, alpha: 0.5)
        #expect(b[0, 0] == RGB(128, 128, 128))
    }
}

@Suite struct CompositeTests {
    @Test func overlayBlendsLabelsAndKeepsIgnore() {
        let (img, lab) = syntheticStreet(width: 64, height: 40)
        let none = Composite.overlay(image: img, labels: lab, palette: .cityscapes19, alpha: 0, boundaryColor: nil)
        #expect(none == img, "alpha 0 and no boundaries leave the image unchanged")
        let full = Composite.overlay(image: img, labels: lab, palette: .cityscapes19, alpha: 1, boundaryColor: nil)
        let col = Palette.cityscapes19.colorize(lab)
        for i in 0..<(lab.width * lab.height) {
            let x = i % lab.width, y = i / lab.width
            #expect(full[x, y] == (lab.pixels[i] == 255 ? img[x, y] : col[x, y]), "pixel (\(x), \(y))")
        }
        let edges = Composite.overlay(image: img, labels: lab, palette: .cityscapes19, alpha: 0.4, boundaryColor: RGB(255, 0, 255))
        // The sidewalk/road border at row 30 and the pole are outlined.
        #expect(edges.pixels.count == img.pixels.count)
        var boundaryPixels = 0
        for y in 0..<lab.height { for x in 0..<lab.width where edges[x, y] == RGB(255, 0, 255) {
            boundaryPixels += 1
            let right = x + 1 < lab.width && lab[x + 1, y] != lab[x, y]
            let down = y + 1 < lab.height && lab[x, y + 1] != lab[x, y]
            #expect(right || down, "boundary pixel (\(x), \(y)) must sit on a label change")
        } }
        #expect(boundaryPixels > 0)
        // Labels at a quarter of the resolution are upsampled; a legend widens the picture.
        let small = Resize.nearest(lab, width: 16, height: 10)
        let withLegend = Composite.overlay(image: img, labels: small, palette: .cityscapes19, legendNames: cityscapes19Names)
        #expect(withLegend.width > img.width && withLegend.height >= img.height)
    }

    @Test func sideBySideFitsPanelsAndTitles() {
        let a = RGBImage(width: 20, height: 10, fill: .red), b = RGBImage(width: 30, height: 15, fill: .blue)
        let s = Composite.sideBySide([a, b], titles: ["a much longer title", "b"], gap: 10)
        let titleW = BitmapFont.width(of: "a much longer title", scale: 2)
        #expect(s.width == 10 + titleW + 10 + 30 + 10, "a title wider than its panel widens the column")
        #expect(s.pixels.contains(0), "some text or colour is drawn")
        // Both panels appear unchanged somewhere.
        var reds = 0, blues = 0
        for y in 0..<s.height { for x in 0..<s.width { if s[x, y] == .red { reds += 1 }; if s[x, y] == .blue { blues += 1 } } }
        #expect(reds == 200 && blues == 450)
    }
}

@Suite struct ChartTests {
    @Test func heatmapCellColourIsMonotoneInValue() throws {
        let n = 6
        var m = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<n { m[i][i] = Double(i) / Double(n - 1) }
        let (img, gx, gy, cell) = try Charts.heatmapWithLayout(
            m, rowNames: (0..<n).map { "c\($0)" }, columnNames: nil, title: "t", normalizeRows: false,
            rowAxisLabel: "gt", columnAxisLabel: "pred", cellSize: nil, annotate: true, colorMap: .viridis)
        var prev = -1.0
        for i in 0..<n {
            let c = img[gx + i * cell + 1, gy + i * cell + 1]  // a corner pixel, away from the annotation
            #expect(c == ColorMap.viridis.color(at: m[i][i]), "cell \(i)")
            #expect(c.luminance > prev, "cell \(i) must be lighter than cell \(i - 1)")
            prev = c.luminance
        }
    }

    @Test func heatmapSizesAndLabels() throws {
        let names27 = cityscapes27Names
        let m = syntheticConfusion(classes: 27, seed: 5)
        let (img, gx, gy, cell) = try Charts.heatmapWithLayout(
            m, rowNames: names27, columnNames: nil, title: "confusion", normalizeRows: true,
            rowAxisLabel: "ground truth", columnAxisLabel: "predicted", cellSize: nil, annotate: true, colorMap: .viridis)
        #expect(cell == 20, "27 classes get 20 px cells")
        #expect(img.width > gx + 27 * cell && img.height > gy + 27 * cell)
        // Every row name is inked just left of the grid, within its row band.
        for i in 0..<27 {
            let band = img.cropped(x: 0, y: gy + i * cell, width: gx, height: cell)
            #expect(inkBox(band) != nil, "row name \(i) (\(names27[i])) is drawn")
        }
        // Each column has its rotated name below the grid.
        for j in 0..<27 {
            let band = img.cropped(x: gx + j * cell + 2, y: gy + 27 * cell + 4, width: cell - 4, height: 60)
            #expect(inkBox(band) != nil, "column name \(j)")
        }
        // The title is drawn in the top margin.
        #expect(inkBox(img.cropped(x: 0, y: 0, width: img.width, height: gy - 2)) != nil)
        // Nothing is cut: the outermost columns and rows of the image are blank.
        #expect(inkBox(img.cropped(x: 0, y: 0, width: 3, height: img.height)) == nil)
        #expect(inkBox(img.cropped(x: img.width - 3, y: 0, width: 3, height: img.height)) == nil)
        #expect(inkBox(img.cropped(x: 0, y: img.height - 3, width: img.width, height: 3)) == nil)
        let small = try Charts.heatmap([[5, 1], [0, 3]], rowNames: ["a", "b"], title: "a long title for two classes")
        #expect(small.width >= BitmapFont.width(of: "a long title for two classes", scale: 2))
        #expect(throws: ImagingError.self) { _ = try Charts.heatmap([[1, 2], [3]], rowNames: [], title: "") }
        #expect(throws: ImagingError.self) { _ = try Charts.heatmap([], rowNames: [], title: "") }
    }

    @Test func barLengthIsProportionalToValue() {
        let c = RGB(10, 200, 10)
        func barPixels(_ v: Double) -> Int {
            let img = Charts.barChart(values: [v], names: ["x"], title: "", showMean: false, colors: [c])
            return img.pixels.indices.filter { $0 % 3 == 0 && img.pixels[$0] == 10 && img.pixels[$0 + 1] == 200 }.count
        }
        let full = barPixels(100), half = barPixels(50), zero = barPixels(0)
        #expect(zero == 0 && full > 0)
        // Bars are 20 px tall; rounding the end to a pixel moves it by at most 1 column.
        expectClose(Double(Double(half) / 20), Double(Double(full) / 20 / 2), abs: 1, "half=\(half) full=\(full)")
        let chart = Charts.barChart(values: [50, .nan, 20], names: ["a", "b", "c"], title: "IoU")
        #expect(inkBox(chart.cropped(x: 0, y: 0, width: chart.width, height: 30)) != nil, "title")
        #expect(chart.pixels.contains(214), "the red mean line / label is drawn")
    }

    @Test func lineChartDrawsSeriesInsideItsSize() {
        let img = Charts.lineChart(series: [
            LineSeries(name: "loss", values: [3, 2, 1.5, .nan, 1.1, 1.0], color: RGB(1, 2, 250)),
            LineSeries(name: "flat", values: [2, 2, 2], color: RGB(250, 2, 1)),
        ], title: "history", xLabel: "epoch", yLabel: "loss", width: 500, height: 300)
        #expect(img.width == 500 && img.height == 300)
        var blue = 0, red = 0
        for y in 0..<img.height { for x in 0..<img.width {
            if img[x, y] == RGB(1, 2, 250) { blue += 1 }
            if img[x, y] == RGB(250, 2, 1) { red += 1 }
        } }
        #expect(blue > 100 && red > 100)
        // A single constant series still gets a sensible axis (no division by zero).
        let flat = Charts.lineChart(values: [0.5, 0.5], title: "t")
        #expect(flat.width == 720 && flat.pixels.contains(31))
        #expect(Charts.niceStep(1, maxTicks: 6) == 0.2 && Charts.niceStep(100, maxTicks: 6) == 20)
        #expect(Charts.decimalsFor(0.2) == 1 && Charts.decimalsFor(20) == 0 && Charts.decimalsFor(0.05) == 2)
    }
}
