// Charts drawn directly into an RGBImage with the embedded font: confusion-matrix heat map,
// per-class bar chart, metric-history line chart. They take plain arrays so evaluation and
// fitting code need not know anything about drawing.

import Foundation

/// One line of a line chart.
public struct LineSeries: Sendable {
    /// Name shown in the legend (legend drawn when there are two or more series).
    public var name: String
    /// y values; NaN leaves a gap.
    public var values: [Double]
    /// x values (same count as `values`); nil means 1, 2, ..., n (epochs).
    public var x: [Double]?
    /// Line colour; nil picks from a fixed cycle (blue, orange, green, red, ...).
    public var color: RGB?

    /// A series; see the properties.
    public init(name: String, values: [Double], x: [Double]? = nil, color: RGB? = nil) {
        self.name = name; self.values = values; self.x = x; self.color = color
    }
}

/// Chart renderers. All return a white-background RGBImage sized to fit every label.
public enum Charts {
    static let margin = 16
    static let cycle: [RGB] = [.blue, .orange, .green, .red, RGB(148, 103, 189), RGB(140, 86, 75),
                               RGB(227, 119, 194), RGB(127, 127, 127), RGB(188, 189, 34), RGB(23, 190, 207)]
    static let axisColor = RGB(40, 40, 40)
    static let gridColor = RGB(228, 228, 228)

    // MARK: heat map

    /// Confusion-matrix heat map.
    ///
    /// - Parameters:
    ///   - matrix: `[rows][columns]`, rows = ground-truth classes, columns = predicted / matched
    ///     classes. Counts when `normalizeRows` (each row divided by its sum; an all-zero row
    ///     stays 0), else values already in [0, 1] (clamped; NaN drawn gray).
    ///   - rowNames, columnNames: class names (columnNames defaults to rowNames); missing
    ///     names are replaced by the index.
    ///   - title: drawn centred on top.
    ///   - cellSize: pixels per cell; default clamp(560 / n, 20, 80), so 27 classes get 20 px
    ///     cells and 3 classes 80 px.
    ///   - annotate: print each cell's value in percent (rounded; zeros left blank) where it fits.
    /// - Layout: row names right-aligned on the left with the rotated `rowAxisLabel`, column
    ///   names rotated below the matrix with `columnAxisLabel`, a colour bar with ticks 0,
    ///   0.5, 1 on the right. O(rows * columns * cellSize^2).
    /// - Throws: `ImagingError.invalidArgument` when the matrix is empty or ragged.
    public static func heatmap(_ matrix: [[Double]], rowNames: [String], columnNames: [String]? = nil,
                               title: String, normalizeRows: Bool = true,
                               rowAxisLabel: String = "ground truth", columnAxisLabel: String = "predicted",
                               cellSize: Int? = nil, annotate: Bool = true,
                               colorMap: ColorMap = .viridis) throws -> RGBImage {
        try heatmapWithLayout(matrix, rowNames: rowNames, columnNames: columnNames, title: title,
                              normalizeRows: normalizeRows, rowAxisLabel: rowAxisLabel,
                              columnAxisLabel: columnAxisLabel, cellSize: cellSize, annotate: annotate,
                              colorMap: colorMap).image
    }

    /// `heatmap` plus where the grid went (top-left of cell (0, 0) and the cell size), for tests.
    static func heatmapWithLayout(_ matrix: [[Double]], rowNames: [String], columnNames: [String]?,
                                  title: String, normalizeRows: Bool, rowAxisLabel: String,
                                  columnAxisLabel: String, cellSize: Int?, annotate: Bool,
                                  colorMap: ColorMap) throws -> (image: RGBImage, gridX: Int, gridY: Int, cell: Int) {
        let n = matrix.count
        guard n > 0, let m = matrix.first?.count, m > 0 else {
            throw ImagingError.invalidArgument("heatmap: the matrix is empty (\(n) rows); pass at least one row and column")
        }
        if let bad = matrix.firstIndex(where: { $0.count != m }) {
            throw ImagingError.invalidArgument(
                "heatmap: row \(bad) has \(matrix[bad].count) values but row 0 has \(m); the matrix must be rectangular")
        }
        let values: [[Double]] = normalizeRows ? matrix.map { row in
            let s = row.reduce(0) { $0 + ($1.isFinite && $1 > 0 ? $1 : 0) }
            return row.map { s > 0 && $0.isFinite ? max($0, 0) / s : ($0.isNaN ? .nan : 0) }
        } : matrix
        let rNames = (0..<n).map { $0 < rowNames.count ? rowNames[$0] : "\($0)" }
        let cSource = columnNames ?? rowNames
        let cNames = (0..<m).map { $0 < cSource.count ? cSource[$0] : "\($0)" }

        let cell = max(4, cellSize ?? min(80, max(20, 560 / max(n, m))))
        let ls = cell >= 16 ? 2 : 1                          // label scale
        let lh = BitmapFont.height(scale: ls)
        let ts = 2                                           // title scale
        let rowLabelW = rNames.map { BitmapFont.width(of: $0, scale: ls) }.max() ?? 0
        let colLabelH = cNames.map { BitmapFont.width(of: $0, scale: ls) }.max() ?? 0
        let titleH = title.isEmpty ? 0 : BitmapFont.height(scale: ts) + 18
        let gridW = m * cell, gridH = n * cell

        // Horizontal layout.
        let axisX = margin
        let rowLabelRight = axisX + lh + 10 + rowLabelW
        var gx = rowLabelRight + 8
        let barGap = 20, barW = 18
        let tickLabelW = BitmapFont.width(of: "0.5", scale: ls)
        var contentW = gx + gridW + barGap + barW + 6 + tickLabelW + margin
        let titleW = BitmapFont.width(of: title, scale: ts) + 2 * margin
        var shift = 0
        if titleW > contentW { shift = (titleW - contentW) / 2; contentW = titleW }
        gx += shift
        // Vertical layout.
        let gy = margin + titleH
        let colLabelTop = gy + gridH + 8
        let colAxisY = colLabelTop + colLabelH + 10
        let height = colAxisY + lh + margin

        var img = RGBImage(width: contentW, height: height, fill: .white)
        if !title.isEmpty {
            img.drawText(title, x: contentW / 2, y: margin, color: .black, scale: ts, align: .center)
        }
        // Cells.
        let annScale = cell >= 48 ? 2 : 1
        for i in 0..<n {
            for j in 0..<m {
                let v = values[i][j]
                let c = v.isNaN ? RGB(190, 190, 190) : colorMap.color(at: v)
                let x = gx + j * cell, y = gy + i * cell
                img.fillRect(x: x, y: y, width: cell, height: cell, color: c)
                guard annotate, v.isFinite else { continue }
                let pct = Int((min(max(v, 0), 1) * 100).rounded())
                guard pct > 0 else { continue }
                let s = "\(pct)"
                let tw = BitmapFont.width(of: s, scale: annScale)
                guard tw <= cell - 2 else { continue }
                img.drawText(s, x: x + (cell - tw) / 2, y: y + (cell - 7 * annScale) / 2,
                             color: c.contrastingText, scale: annScale)
            }
        }
        img.strokeRect(x: gx - 1, y: gy - 1, width: gridW + 2, height: gridH + 2, color: axisColor)
        // Row names (right-aligned, vertically centred on the row) and ticks.
        for i in 0..<n {
            let cy = gy + i * cell + cell / 2
            img.drawText(rNames[i], x: gx - 8, y: cy - lh / 2, color: .black, scale: ls, align: .right)
        }
        img.drawTextVertical(rowAxisLabel, x: axisX + shift, y: gy + gridH / 2, color: axisColor, scale: ls, align: .center)
        // Column names rotated, ending just under the matrix.
        for j in 0..<m {
            let cx = gx + j * cell + cell / 2
            img.drawTextVertical(cNames[j], x: cx - lh / 2, y: colLabelTop, color: .black, scale: ls, align: .right)
        }
        img.drawText(columnAxisLabel, x: gx + gridW / 2, y: colAxisY, color: axisColor, scale: ls, align: .center)
        // Colour bar: 1 at the top, 0 at the bottom.
        let bx = gx + gridW + barGap
        for y in 0..<gridH {
            let v = gridH > 1 ? 1 - Double(y) / Double(gridH - 1) : 1
            img.fillRect(x: bx, y: gy + y, width: barW, height: 1, color: colorMap.color(at: v))
        }
        img.strokeRect(x: bx - 1, y: gy - 1, width: barW + 2, height: gridH + 2, color: axisColor)
        for (v, label) in [(1.0, "1"), (0.5, "0.5"), (0.0, "0")] {
            let ty = gy + Int((1 - v) * Double(gridH - 1))
            img.fillRect(x: bx + barW + 1, y: ty, width: 4, height: 1, color: axisColor)
            let textY = min(max(ty - lh / 2, gy - 1), gy + gridH - lh + 1)
            img.drawText(label, x: bx + barW + 7, y: textY, color: .black, scale: ls)
        }
        return (img, gx, gy, cell)
    }

    // MARK: bar chart

    /// Horizontal bar chart of per-class values (e.g. IoU in percent).
    ///
    /// - Parameters:
    ///   - values: one value per class; NaN (class absent) is shown as "n/a" without a bar;
    ///     negative values draw no bar.
    ///   - names: class names (missing names replaced by the index), right-aligned on the left.
    ///   - title: drawn centred on top.
    ///   - axisLabel: label under the value axis.
    ///   - maxValue: right end of the axis; default 100 when every value is in [0, 100], else
    ///     a rounded-up maximum.
    ///   - showMean: draw a dashed line at the mean of the finite values, labelled "mean x".
    ///   - colors: per-bar colours (e.g. the class palette); nil = one blue.
    ///   - decimals: digits after the point in the value labels.
    /// - Returns: image about 760 px wide, 28 px per bar plus title and axis. O(bars * width).
    public static func barChart(values: [Double], names: [String], title: String,
                                axisLabel: String = "IoU (%)", maxValue: Double? = nil,
                                showMean: Bool = true, colors: [RGB]? = nil, decimals: Int = 1,
                                plotWidth: Int = 480) -> RGBImage {
        let k = values.count
        let finite = values.filter { $0.isFinite }
        let top: Double = {
            if let mv = maxValue, mv > 0 { return mv }
            let mx = finite.max() ?? 1
            if finite.allSatisfy({ $0 >= 0 && $0 <= 100 }) { return 100 }
            let step = niceStep(max(mx, 1e-9), maxTicks: 6)
            return max(step, (mx / step).rounded(.up) * step)
        }()
        let ls = 2, lh = BitmapFont.height(scale: ls), ts = 2
        let labels = (0..<k).map { $0 < names.count ? names[$0] : "\($0)" }
        let nameW = labels.map { BitmapFont.width(of: $0, scale: ls) }.max() ?? 0
        let fmt = { (v: Double) -> String in String(format: "%.\(max(0, decimals))f", v) }
        let valueW = values.map { BitmapFont.width(of: $0.isFinite ? fmt($0) : "n/a", scale: ls) }.max() ?? 0
        let barH = 20, pitch = 28
        let titleH = title.isEmpty ? 0 : BitmapFont.height(scale: ts) + 14
        let meanRowH = showMean && !finite.isEmpty ? lh + 10 : 4

        var px = margin + nameW + 10
        let plotW = max(100, plotWidth)
        var width = px + plotW + 8 + valueW + margin
        let titleW = BitmapFont.width(of: title, scale: ts) + 2 * margin
        if titleW > width { px += (titleW - width) / 2; width = titleW }
        let py = margin + titleH + meanRowH
        let plotH = max(1, k) * pitch
        let tickY = py + plotH
        let height = tickY + 6 + lh + 8 + lh + margin

        var img = RGBImage(width: width, height: height, fill: .white)
        if !title.isEmpty { img.drawText(title, x: width / 2, y: margin, color: .black, scale: ts, align: .center) }
        let xOf = { (v: Double) -> Int in px + Int((min(max(v, 0), top) / top * Double(plotW)).rounded()) }
        // Grid and ticks.
        let step = niceStep(top, maxTicks: 6)
        let tickDecimals = decimalsFor(step)
        var t = 0.0
        while t <= top + step * 1e-9 {
            let x = xOf(t)
            img.fillRect(x: x, y: py, width: 1, height: plotH, color: gridColor)
            img.fillRect(x: x, y: tickY, width: 1, height: 5, color: axisColor)
            img.drawText(String(format: "%.\(tickDecimals)f", t), x: x, y: tickY + 8, color: .black, scale: ls, align: .center)
            t += step
        }
        img.drawText(axisLabel, x: px + plotW / 2, y: tickY + 8 + lh + 8, color: axisColor, scale: ls, align: .center)
        // Bars.
        var valueLabels: [(String, Int, Int, RGB)] = []
        for i in 0..<k {
            let y = py + i * pitch + (pitch - barH) / 2
            img.drawText(labels[i], x: px - 10, y: y + (barH - lh) / 2, color: .black, scale: ls, align: .right)
            let v = values[i]
            guard v.isFinite else {
                valueLabels.append(("n/a", px + 6, y + (barH - lh) / 2, .gray))
                continue
            }
            let x1 = xOf(v)
            let c = colors.map { i < $0.count ? $0[i] : .blue } ?? .blue
            if x1 > px {
                img.fillRect(x: px, y: y, width: x1 - px, height: barH, color: c)
                if c.luminance > 200 { img.strokeRect(x: px, y: y, width: x1 - px, height: barH, color: .gray) }
            }
            valueLabels.append((fmt(v), x1 + 6, y + (barH - lh) / 2, .black))
        }
        // Axes.
        img.fillRect(x: px, y: py, width: 1, height: plotH + 1, color: axisColor)
        img.fillRect(x: px, y: tickY, width: plotW + 1, height: 1, color: axisColor)
        // Mean.
        if showMean, !finite.isEmpty {
            let mean = finite.reduce(0, +) / Double(finite.count)
            let x = xOf(mean)
            img.drawLine(x0: x, y0: py - 4, x1: x, y1: tickY, color: .red, thickness: 2, dash: (6, 4))
            let label = "mean \(fmt(mean))"
            let lw = BitmapFont.width(of: label, scale: ls)
            let lx = min(max(x - lw / 2, 2), width - lw - 2)
            img.drawText(label, x: lx, y: py - meanRowH, color: .red, scale: ls)
        }
        // Value labels last, on a white box so the mean line never runs through them.
        for (text, x, y, c) in valueLabels {
            img.fillRect(x: x - 2, y: y - 1, width: BitmapFont.width(of: text, scale: ls) + 4, height: lh + 2, color: .white)
            img.drawText(text, x: x, y: y, color: c, scale: ls)
        }
        return img
    }

    // MARK: line chart

    /// Line chart of one metric history (e.g. loss per epoch): x = 1...n.
    public static func lineChart(values: [Double], title: String, xLabel: String = "epoch",
                                 yLabel: String = "", width: Int = 720, height: Int = 440) -> RGBImage {
        lineChart(series: [LineSeries(name: yLabel, values: values)], title: title,
                  xLabel: xLabel, yLabel: yLabel, width: width, height: height)
    }

    /// Line chart of several series with axes, "nice" ticks (1, 2, 5 x 10^k), light grid,
    /// rotated y label, and a legend (top right inside the plot) when there are >= 2 series.
    /// Points are marked when a series has <= 60 of them. NaN values leave gaps. Integer x
    /// values get integer ticks. Size `width x height` (at least 240 x 180).
    public static func lineChart(series: [LineSeries], title: String, xLabel: String = "epoch",
                                 yLabel: String = "", width: Int = 720, height: Int = 440) -> RGBImage {
        let W = max(240, width), H = max(180, height)
        var img = RGBImage(width: W, height: H, fill: .white)
        let ls = 2, lh = BitmapFont.height(scale: ls), ts = 2
        // Data ranges.
        var xs: [[Double]] = [], ysAll: [Double] = [], xsAll: [Double] = []
        for s in series {
            let x = (s.x?.count == s.values.count) ? s.x! : (0..<s.values.count).map { Double($0 + 1) }
            xs.append(x)
            for (xv, yv) in zip(x, s.values) where xv.isFinite && yv.isFinite { xsAll.append(xv); ysAll.append(yv) }
        }
        var yLo = ysAll.min() ?? 0, yHi = ysAll.max() ?? 1
        if yHi - yLo < 1e-12 { let d = max(abs(yHi) * 0.1, 1e-3); yLo -= d; yHi += d }
        var xLo = xsAll.min() ?? 0, xHi = xsAll.max() ?? 1
        if xHi - xLo < 1e-12 { xLo -= 1; xHi += 1 }
        let yStep = niceStep(yHi - yLo, maxTicks: 6)
        yLo = (yLo / yStep).rounded(.down) * yStep
        yHi = (yHi / yStep).rounded(.up) * yStep
        let integerX = xsAll.allSatisfy { $0 == $0.rounded() }
        var xStep = niceStep(xHi - xLo, maxTicks: 8)
        if integerX { xStep = max(1, xStep.rounded()) }
        let yDec = decimalsFor(yStep), xDec = integerX ? 0 : decimalsFor(xStep)
        var yTicks: [Double] = []
        var v = yLo
        while v <= yHi + yStep * 1e-9 { yTicks.append(abs(v) < yStep * 1e-9 ? 0 : v); v += yStep }
        var xTicks: [Double] = []
        v = (xLo / xStep).rounded(.up) * xStep
        while v <= xHi + xStep * 1e-9 { xTicks.append(v); v += xStep }
        let yTickLabels = yTicks.map { String(format: "%.\(yDec)f", $0) }
        // Layout.
        let titleH = title.isEmpty ? 0 : BitmapFont.height(scale: ts) + 18
        let yTickW = yTickLabels.map { BitmapFont.width(of: $0, scale: ls) }.max() ?? 0
        let left = margin + (yLabel.isEmpty ? 0 : lh + 10) + yTickW + 10
        let right = margin + 12
        let top = margin + titleH
        let bottom = margin + lh + 10 + (xLabel.isEmpty ? 0 : lh + 8) + 6
        let pw = max(10, W - left - right), ph = max(10, H - top - bottom)
        let inset = 6  // data never touches the frame, so end points and markers stay whole
        let X = { (x: Double) -> Int in left + inset + Int(((x - xLo) / (xHi - xLo) * Double(pw - 1 - 2 * inset)).rounded()) }
        let Y = { (y: Double) -> Int in top + ph - 1 - inset - Int(((y - yLo) / (yHi - yLo) * Double(ph - 1 - 2 * inset)).rounded()) }

        if !title.isEmpty { img.drawText(title, x: W / 2, y: margin, color: .black, scale: ts, align: .center) }
        for (t, label) in zip(yTicks, yTickLabels) {
            let y = Y(t)
            img.fillRect(x: left, y: y, width: pw, height: 1, color: gridColor)
            img.fillRect(x: left - 5, y: y, width: 5, height: 1, color: axisColor)
            img.drawText(label, x: left - 8, y: y - lh / 2, color: .black, scale: ls, align: .right)
        }
        for t in xTicks {
            let x = X(t)
            img.fillRect(x: x, y: top, width: 1, height: ph, color: gridColor)
            img.fillRect(x: x, y: top + ph, width: 1, height: 5, color: axisColor)
            img.drawText(String(format: "%.\(xDec)f", t), x: x, y: top + ph + 8, color: .black, scale: ls, align: .center)
        }
        img.strokeRect(x: left - 1, y: top - 1, width: pw + 2, height: ph + 2, color: axisColor)
        if !xLabel.isEmpty {
            img.drawText(xLabel, x: left + pw / 2, y: top + ph + 8 + lh + 8, color: axisColor, scale: ls, align: .center)
        }
        if !yLabel.isEmpty {
            img.drawTextVertical(yLabel, x: margin, y: top + ph / 2, color: axisColor, scale: ls, align: .center)
        }
        // Lines.
        for (si, s) in series.enumerated() {
            let c = s.color ?? cycle[si % cycle.count]
            var prev: (Int, Int)? = nil
            let mark = s.values.count <= 60
            for (xv, yv) in zip(xs[si], s.values) {
                guard xv.isFinite, yv.isFinite else { prev = nil; continue }
                let p = (X(xv), Y(yv))
                if let q = prev { img.drawLine(x0: q.0, y0: q.1, x1: p.0, y1: p.1, color: c, thickness: 2) }
                if mark { img.fillRect(x: p.0 - 2, y: p.1 - 2, width: 5, height: 5, color: c) }
                prev = p
            }
        }
        // Legend.
        if series.count >= 2 {
            let entries = series.enumerated().map { ($1.color ?? cycle[$0 % cycle.count], $1.name) }
            let textW = entries.map { BitmapFont.width(of: $0.1, scale: ls) }.max() ?? 0
            let boxW = 8 + 20 + 6 + textW + 8, boxH = 6 + entries.count * (lh + 6) + 2
            // The corner of the plot that covers the fewest data points.
            let corners = [(left + pw - boxW - 8, top + 8), (left + 8, top + 8),
                           (left + pw - boxW - 8, top + ph - boxH - 8), (left + 8, top + ph - boxH - 8)]
            var best = corners[0], bestCount = Int.max
            for (cx, cy) in corners {
                var count = 0
                for (si, s) in series.enumerated() {
                    for (xv, yv) in zip(xs[si], s.values) where xv.isFinite && yv.isFinite {
                        let p = (X(xv), Y(yv))
                        if p.0 >= cx - 4 && p.0 < cx + boxW + 4 && p.1 >= cy - 4 && p.1 < cy + boxH + 4 { count += 1 }
                    }
                }
                if count < bestCount { bestCount = count; best = (cx, cy) }
            }
            let (bx, by) = best
            img.fillRect(x: bx, y: by, width: boxW, height: boxH, color: .white)
            img.strokeRect(x: bx, y: by, width: boxW, height: boxH, color: .gray)
            for (i, e) in entries.enumerated() {
                let y = by + 6 + i * (lh + 6)
                img.fillRect(x: bx + 8, y: y + lh / 2 - 1, width: 20, height: 3, color: e.0)
                img.drawText(e.1, x: bx + 34, y: y, color: .black, scale: ls)
            }
        }
        return img
    }

    // MARK: helpers

    /// A step of the form {1, 2, 5} x 10^k giving at most about `maxTicks` ticks over `range`.
    static func niceStep(_ range: Double, maxTicks: Int) -> Double {
        let raw = max(range, 1e-12) / Double(max(1, maxTicks - 1))
        let mag = pow(10, (log10(raw)).rounded(.down))
        let f = raw / mag
        let nice: Double = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10
        return nice * mag
    }

    /// Digits after the point needed to print multiples of `step`.
    static func decimalsFor(_ step: Double) -> Int {
        max(0, -Int((log10(step) + 1e-9).rounded(.down)))
    }
}
