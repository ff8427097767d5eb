// Drawing on an RGBImage: rectangles, lines, alpha blending, pasting and bitmap text.
// Every primitive clips to the image, so callers may draw partly outside it.

/// Horizontal anchoring of text relative to the given x.
public enum TextAlign: Sendable {
    /// x is the left edge.
    case left
    /// x is the centre.
    case center
    /// x is the right edge (last pixel column is x - 1).
    case right
}

public extension RGBImage {
    /// Sets pixel (x, y) if it lies inside the image.
    @inline(__always)
    mutating func plot(_ x: Int, _ y: Int, _ color: RGB) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = 3 * (y * width + x)
        pixels[o] = color.r; pixels[o + 1] = color.g; pixels[o + 2] = color.b
    }

    /// Blends `color` over pixel (x, y) with opacity `alpha` in [0, 1] (clipped).
    @inline(__always)
    mutating func blend(_ x: Int, _ y: Int, _ color: RGB, alpha: Double) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = 3 * (y * width + x)
        let a = min(max(alpha, 0), 1)
        pixels[o] = UInt8((Double(pixels[o]) * (1 - a) + Double(color.r) * a).rounded())
        pixels[o + 1] = UInt8((Double(pixels[o + 1]) * (1 - a) + Double(color.g) * a).rounded())
        pixels[o + 2] = UInt8((Double(pixels[o + 2]) * (1 - a) + Double(color.b) * a).rounded())
    }

    /// Fills the rectangle `[x, x + w) x [y, y + h)` (clipped). O(area).
    mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, color: RGB) {
        let x0 = max(0, x), y0 = max(0, y), x1 = min(width, x + w), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        let W = width
        pixels.withUnsafeMutableBufferPointer { p in
            for yy in y0..<y1 {
                var o = 3 * (yy * W + x0)
                for _ in x0..<x1 {
                    p[o] = color.r; p[o + 1] = color.g; p[o + 2] = color.b
                    o += 3
                }
            }
        }
    }

    /// Blends `color` at opacity `alpha` over the rectangle (clipped).
    mutating func blendRect(x: Int, y: Int, width w: Int, height h: Int, color: RGB, alpha: Double) {
        let x0 = max(0, x), y0 = max(0, y), x1 = min(width, x + w), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 { for xx in x0..<x1 { blend(xx, yy, color, alpha: alpha) } }
    }

    /// Outlines the rectangle `[x, x + w) x [y, y + h)` with lines `thickness` pixels wide, inside it.
    mutating func strokeRect(x: Int, y: Int, width w: Int, height h: Int, color: RGB, thickness: Int = 1) {
        let t = max(1, thickness)
        fillRect(x: x, y: y, width: w, height: t, color: color)
        fillRect(x: x, y: y + h - t, width: w, height: t, color: color)
        fillRect(x: x, y: y, width: t, height: h, color: color)
        fillRect(x: x + w - t, y: y, width: t, height: h, color: color)
    }

    /// Draws a line from (x0, y0) to (x1, y1) inclusive (Bresenham), `thickness` pixels wide
    /// (square pen). `dash` = (on, off) lengths in steps draws a dashed line; nil = solid.
    mutating func drawLine(x0: Int, y0: Int, x1: Int, y1: Int, color: RGB, thickness: Int = 1,
                           dash: (on: Int, off: Int)? = nil) {
        let dx = abs(x1 - x0), dy = -abs(y1 - y0)
        let sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        var x = x0, y = y0, step = 0
        let t = max(1, thickness), lo = -(t - 1) / 2
        while true {
            var on = true
            if let d = dash, d.on > 0 { on = step % (d.on + max(0, d.off)) < d.on }
            if on {
                if t == 1 { plot(x, y, color) } else { fillRect(x: x + lo, y: y + lo, width: t, height: t, color: color) }
            }
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
            step += 1
        }
    }

    /// Copies `image` with its top-left corner at (x, y) (clipped).
    mutating func paste(_ image: RGBImage, x: Int, y: Int) {
        for yy in 0..<image.height {
            let ty = y + yy
            guard ty >= 0, ty < height else { continue }
            for xx in 0..<image.width {
                let tx = x + xx
                guard tx >= 0, tx < width else { continue }
                let s = 3 * (yy * image.width + xx), d = 3 * (ty * width + tx)
                pixels[d] = image.pixels[s]; pixels[d + 1] = image.pixels[s + 1]; pixels[d + 2] = image.pixels[s + 2]
            }
        }
    }

    /// Draws one line of `text` with the 5x7 font at integer `scale`; `y` is the top of the
    /// glyphs, `x` is interpreted by `align`. Returns the drawn width in pixels.
    @discardableResult
    mutating func drawText(_ text: String, x: Int, y: Int, color: RGB, scale: Int = 1,
                           align: TextAlign = .left) -> Int {
        let s = max(1, scale)
        let w = BitmapFont.width(of: text, scale: s)
        var cx: Int
        switch align {
        case .left: cx = x
        case .center: cx = x - w / 2
        case .right: cx = x - w
        }
        for scalar in text.unicodeScalars {
            for col in 0..<BitmapFont.glyphWidth {
                for row in 0..<BitmapFont.glyphHeight where BitmapFont.isSet(scalar, col: col, row: row) {
                    fillRect(x: cx + col * s, y: y + row * s, width: s, height: s, color: color)
                }
            }
            cx += BitmapFont.advance * s
        }
        return w
    }

    /// Draws `text` rotated 90 degrees counter-clockwise (reading bottom to top, as a y-axis
    /// label). The rotated text occupies a box `BitmapFont.height(scale:)` wide and `width(of: text)` tall.
    /// `x` is the box's left edge; `y` is interpreted by `align` along the text direction:
    /// `.left` = y is the bottom end where the text starts, `.right` = y is the top end
    /// where it finishes, `.center` = y is the middle.
    mutating func drawTextVertical(_ text: String, x: Int, y: Int, color: RGB, scale: Int = 1,
                                   align: TextAlign = .center) {
        let s = max(1, scale)
        let w = BitmapFont.width(of: text, scale: s)
        let bottom: Int  // y of the last pixel row of the box (where the text starts)
        switch align {
        case .left: bottom = y
        case .center: bottom = y + w / 2
        case .right: bottom = y + w - 1
        }
        var along = 0
        for scalar in text.unicodeScalars {
            for col in 0..<BitmapFont.glyphWidth {
                for row in 0..<BitmapFont.glyphHeight where BitmapFont.isSet(scalar, col: col, row: row) {
                    // text pixel (tx, ty) -> rotated (ty, -tx)
                    let tx = along + col * s, ty = row * s
                    fillRect(x: x + ty, y: bottom - tx - (s - 1), width: s, height: s, color: color)
                }
            }
            along += BitmapFont.advance * s
        }
    }
}
