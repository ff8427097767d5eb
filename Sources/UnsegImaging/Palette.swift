import UnsegCore

// Class palettes (id -> colour) and sequential colour maps (value in [0, 1] -> colour).

/// Colours per class id. Id `ignoreIndex` (255 by convention) is drawn in `ignoreColor`;
/// ids beyond `colors` fall back to the PASCAL VOC colour of that id, so every id has a
/// deterministic colour.
public struct Palette: Equatable, Sendable {
    /// Colour of class id i at index i.
    public var colors: [RGB]
    /// Colour for `ignoreIndex` pixels (black by default, as in VOC's "void" border).
    public var ignoreColor: RGB
    /// The id that means "ignore / void" (255).
    public var ignoreIndex: UInt8

    /// A palette with explicit colours.
    public init(colors: [RGB], ignoreColor: RGB = .black, ignoreIndex: UInt8 = 255) {
        self.colors = colors
        self.ignoreColor = ignoreColor
        self.ignoreIndex = ignoreIndex
    }

    /// Colour for class `id`: `ignoreColor` for `ignoreIndex`, `colors[id]` if present, else the VOC colour.
    @inline(__always)
    public func color(for id: UInt8) -> RGB {
        if id == ignoreIndex { return ignoreColor }
        let i = Int(id)
        return i < colors.count ? colors[i] : Palette.vocColor(i)
    }

    /// The PASCAL VOC colour of `id` (`LabelProtocol.vocColor`, the one VOC palette of the project).
    public static func vocColor(_ id: Int) -> RGB { LabelProtocol.vocColor(id) }

    /// The first `count` PASCAL VOC colours (deterministic, pairwise distinct for count <= 256).
    /// Note id 0 is black; use `distinct(count:)` when class 0 is a real class in an overlay.
    public static func voc(count: Int) -> Palette {
        Palette(colors: (0..<max(0, count)).map { vocColor($0) })
    }

    /// `count` saturated colours, none black or white, hues spaced by the golden angle and
    /// lightness alternating over three levels so neighbours in id differ clearly. Deterministic.
    public static func distinct(count: Int) -> Palette {
        var out: [RGB] = []
        for i in 0..<max(0, count) {
            let h = (Double(i) * 0.618_033_988_749_895).truncatingRemainder(dividingBy: 1)
            let v = [0.95, 0.75, 0.55][i % 3]
            let s = [0.75, 0.9, 0.65][(i / 3) % 3]
            out.append(hsv(h, s, v))
        }
        return Palette(colors: out)
    }

    /// Cityscapes' 19 training classes (trainId order: road, sidewalk, building, wall, fence,
    /// pole, traffic light, traffic sign, vegetation, terrain, sky, person, rider, car, truck,
    /// bus, train, motorcycle, bicycle) in the official colours.
    public static let cityscapes19 = Palette(colors: [
        RGB(128, 64, 128), RGB(244, 35, 232), RGB(70, 70, 70), RGB(102, 102, 156), RGB(190, 153, 153),
        RGB(153, 153, 153), RGB(250, 170, 30), RGB(220, 220, 0), RGB(107, 142, 35), RGB(152, 251, 152),
        RGB(70, 130, 180), RGB(220, 20, 60), RGB(255, 0, 0), RGB(0, 0, 142), RGB(0, 0, 70),
        RGB(0, 60, 100), RGB(0, 80, 100), RGB(0, 0, 230), RGB(119, 11, 32),
    ])

    /// The colours of a label protocol's classes (cityscapes27: the official Cityscapes colours).
    public static func of(_ p: LabelProtocol) -> Palette { Palette(colors: p.palette) }

    /// Cityscapes' 27 classes of the unsupervised-segmentation protocol, official colours.
    public static let cityscapes27 = Palette.of(.cityscapes27)

    /// Colours a label map: `[height, width]` ids -> `[height, width, 3]` RGB. O(pixels).
    public func colorize(_ labels: LabelMap) -> RGBImage {
        var lut = [UInt8](repeating: 0, count: 256 * 3)
        for i in 0..<256 {
            let c = color(for: UInt8(i))
            lut[3 * i] = c.r; lut[3 * i + 1] = c.g; lut[3 * i + 2] = c.b
        }
        var out = [UInt8](repeating: 0, count: labels.pixels.count * 3)
        lut.withUnsafeBufferPointer { l in
            labels.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for i in 0..<src.count {
                        let k = 3 * Int(src[i])
                        dst[3 * i] = l[k]; dst[3 * i + 1] = l[k + 1]; dst[3 * i + 2] = l[k + 2]
                    }
                }
            }
        }
        return RGBImage(width: labels.width, height: labels.height, pixels: out)
    }

    static func hsv(_ h: Double, _ s: Double, _ v: Double) -> RGB {
        let i = Int(h * 6) % 6
        let f = h * 6 - Double(Int(h * 6))
        let p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s)
        let (r, g, b): (Double, Double, Double)
        switch i {
        case 0: (r, g, b) = (v, t, p)
        case 1: (r, g, b) = (q, v, p)
        case 2: (r, g, b) = (p, v, t)
        case 3: (r, g, b) = (p, q, v)
        case 4: (r, g, b) = (t, p, v)
        default: (r, g, b) = (v, p, q)
        }
        return RGB(UInt8((r * 255).rounded()), UInt8((g * 255).rounded()), UInt8((b * 255).rounded()))
    }
}

/// A sequential colour map: piecewise-linear interpolation between control points in sRGB.
public struct ColorMap: Sendable {
    /// Control colours at evenly spaced positions 0, 1/(n-1), ..., 1.
    public let controls: [RGB]

    /// A map through `controls` (at least 2), evenly spaced on [0, 1].
    public init(controls: [RGB]) {
        precondition(controls.count >= 2, "ColorMap needs >= 2 control colours, got \(controls.count)")
        self.controls = controls
    }

    /// Viridis (matplotlib) from 9 control points sampled from the original table; lightness
    /// rises monotonically from dark purple (0) to yellow (1), readable in gray print and by
    /// colour-blind readers.
    public static let viridis = ColorMap(controls: [
        RGB(68, 1, 84), RGB(71, 44, 122), RGB(59, 82, 139), RGB(44, 113, 142), RGB(33, 145, 140),
        RGB(39, 173, 129), RGB(92, 200, 99), RGB(170, 220, 50), RGB(253, 231, 37),
    ])

    /// Gray ramp from black (0) to white (1).
    public static let gray = ColorMap(controls: [.black, .white])

    /// The colour of `value`, clamped to [0, 1]; NaN maps to 0.
    public func color(at value: Double) -> RGB {
        let v = value.isNaN ? 0 : min(max(value, 0), 1)
        let pos = v * Double(controls.count - 1)
        let i = min(Int(pos), controls.count - 2)
        return controls[i].mixed(with: controls[i + 1], pos - Double(i))
    }
}
