// Pictures people look at: label overlays and titled side-by-side panels.

/// Composite pictures built from images and label maps.
public enum Composite {
    /// The image with box outlines drawn on it: `boxes` as (x0, y0, x1, y1) in pixels (`[x0, x1)`),
    /// each with its colour, `thickness` pixels wide, clipped to the image. O(box perimeters).
    public static func boxes(on image: RGBImage, _ boxes: [(x0: Double, y0: Double, x1: Double, y1: Double, color: RGB)],
                             thickness: Int = 2) -> RGBImage {
        var out = image
        func clamp(_ v: Double, _ hi: Int) -> Int {
            guard v.isFinite else { return v > 0 ? hi + thickness : -thickness }
            return Int(min(max(v, Double(-thickness)), Double(hi + thickness)))
        }
        for b in boxes {
            let x0 = clamp(b.x0.rounded(.down), image.width), y0 = clamp(b.y0.rounded(.down), image.height)
            let x1 = clamp(b.x1.rounded(.up), image.width), y1 = clamp(b.y1.rounded(.up), image.height)
            out.strokeRect(x: x0, y: y0, width: max(1, x1 - x0), height: max(1, y1 - y0), color: b.color, thickness: thickness)
        }
        return out
    }

    /// Blends a coloured label map over an image and outlines the segments.
    ///
    /// - Parameters:
    ///   - image: the photo, `[height, width, 3]`.
    ///   - labels: class ids; resized with half-pixel nearest to the image size if it differs
    ///     (label maps often come at patch resolution).
    ///   - palette: id -> colour.
    ///   - alpha: opacity of the label colours in [0, 1] (0.5 default).
    ///   - transparent: ids left unblended (255 = ignore by default; add 0 for a mask whose 0 is background).
    ///   - boundaryColor: colour of the 1-pixel segment boundaries (a pixel whose right or lower
    ///     neighbour has another id); nil draws none. White contrasts with most palettes.
    ///   - legendNames: when given, a legend of the ids present (swatch + `legendNames[id]`, or
    ///     the number when the name is missing) is added to the right of the picture.
    /// - Returns: the overlay, widened by the legend if any. O(pixels).
    public static func overlay(image: RGBImage, labels: LabelMap, palette: Palette, alpha: Double = 0.5,
                               transparent: Set<UInt8> = [255], boundaryColor: RGB? = .white,
                               legendNames: [String]? = nil) -> RGBImage {
        var lab = labels
        if lab.width != image.width || lab.height != image.height {
            lab = Resize.nearest(labels, width: image.width, height: image.height)
        }
        var skip = [Bool](repeating: false, count: 256)
        for t in transparent { skip[Int(t)] = true }
        var out = image
        let w = image.width, h = image.height
        let a = min(max(alpha, 0), 1)
        for y in 0..<h {
            for x in 0..<w {
                let id = lab.pixels[y * w + x]
                if !skip[Int(id)] { out.blend(x, y, palette.color(for: id), alpha: a) }
            }
        }
        if let bc = boundaryColor {
            for y in 0..<h {
                for x in 0..<w {
                    let id = lab.pixels[y * w + x]
                    let right = x + 1 < w && lab.pixels[y * w + x + 1] != id
                    let down = y + 1 < h && lab.pixels[(y + 1) * w + x] != id
                    if right || down { out.plot(x, y, bc) }
                }
            }
        }
        guard let names = legendNames else { return out }
        var present = [Bool](repeating: false, count: 256)
        for v in lab.pixels { present[Int(v)] = true }
        let ids = (0..<256).filter { present[$0] && !skip[$0] }
        let entries = ids.map { (palette.color(for: UInt8($0)), $0 < names.count ? names[$0] : "\($0)") }
        let legend = Composite.legend(entries: entries, maxHeight: max(h, 40))
        var canvas = RGBImage(width: w + legend.width, height: max(h, legend.height), fill: .white)
        canvas.paste(out, x: 0, y: 0)
        canvas.paste(legend, x: w, y: 0)
        return canvas
    }

    /// A legend: rows of a colour swatch and a name (font scale 2), in as many columns as
    /// needed to stay within `maxHeight` pixels. White background.
    public static func legend(entries: [(RGB, String)], maxHeight: Int, scale: Int = 2) -> RGBImage {
        let pad = 8, rowH = BitmapFont.height(scale: scale) + 8, sw = BitmapFont.height(scale: scale) + 2
        let perCol = max(1, (maxHeight - 2 * pad) / rowH)
        let cols = max(1, (entries.count + perCol - 1) / perCol)
        var colW: [Int] = []
        for c in 0..<cols {
            let slice = entries[(c * perCol)..<min(entries.count, (c + 1) * perCol)]
            colW.append(sw + 6 + (slice.map { BitmapFont.width(of: $0.1, scale: scale) }.max() ?? 0) + 12)
        }
        let width = pad + colW.reduce(0, +) + pad
        let height = pad + min(perCol, entries.count) * rowH + pad
        var img = RGBImage(width: width, height: max(height, 1), fill: .white)
        var x = pad
        for c in 0..<cols {
            for r in 0..<perCol {
                let i = c * perCol + r
                guard i < entries.count else { break }
                let y = pad + r * rowH
                img.fillRect(x: x, y: y, width: sw, height: sw, color: entries[i].0)
                img.strokeRect(x: x, y: y, width: sw, height: sw, color: .darkGray)
                img.drawText(entries[i].1, x: x + sw + 6, y: y + 2, color: .black, scale: scale)
            }
            x += colW[c]
        }
        return img
    }

    /// Puts panels next to each other, top-aligned, each under its centred title (font scale
    /// `titleScale`), separated by `gap` pixels, on `background`. A title wider than its panel
    /// widens that column instead of being cut. `titles` may be shorter than `panels` (missing
    /// titles are empty). Typical use: image | prediction | ground truth.
    public static func sideBySide(_ panels: [RGBImage], titles: [String] = [], gap: Int = 10,
                                  titleScale: Int = 2, background: RGB = .white) -> RGBImage {
        guard !panels.isEmpty else { return RGBImage(width: 1, height: 1, fill: background) }
        let hasTitles = titles.contains { !$0.isEmpty }
        let titleH = hasTitles ? BitmapFont.height(scale: titleScale) + 2 * gap / 2 + 6 : 0
        let colW = panels.indices.map { i in
            max(panels[i].width, i < titles.count ? BitmapFont.width(of: titles[i], scale: titleScale) : 0)
        }
        let width = gap + colW.reduce(0, +) + gap * panels.count
        let height = gap + titleH + (panels.map(\.height).max() ?? 0) + gap
        var canvas = RGBImage(width: width, height: height, fill: background)
        let textColor: RGB = background.contrastingText
        var x = gap
        for (i, p) in panels.enumerated() {
            if i < titles.count, !titles[i].isEmpty {
                canvas.drawText(titles[i], x: x + colW[i] / 2, y: gap, color: textColor, scale: titleScale, align: .center)
            }
            canvas.paste(p, x: x + (colW[i] - p.width) / 2, y: gap + titleH)
            x += colW[i] + gap
        }
        return canvas
    }
}
