// Shared by imaging (drawing, palettes) and evaluation (protocol palettes).

/// One sRGB colour, 8 bits per channel.
public struct RGB: Hashable, Codable, Sendable, CustomStringConvertible {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8

    /// Creates a colour from its three 8-bit channels.
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r; self.g = g; self.b = b
    }

    public static let black = RGB(0, 0, 0)
    public static let white = RGB(255, 255, 255)
    public static let gray = RGB(128, 128, 128)
    public static let lightGray = RGB(220, 220, 220)
    public static let darkGray = RGB(64, 64, 64)
    public static let red = RGB(214, 39, 40)
    public static let blue = RGB(31, 119, 180)
    public static let orange = RGB(255, 127, 14)
    public static let green = RGB(44, 160, 44)

    /// Relative luminance in [0, 255] (Rec. 709 weights on the encoded values; good enough
    /// to choose black or white text over a colour).
    public var luminance: Double {
        0.2126 * Double(r) + 0.7152 * Double(g) + 0.0722 * Double(b)
    }

    /// Black or white, whichever contrasts more with this colour (for text on a cell).
    public var contrastingText: RGB { luminance > 128 ? .black : .white }

    /// Linear mix `self * (1 - t) + other * t`, t clamped to [0, 1], rounded to nearest.
    public func mixed(with other: RGB, _ t: Double) -> RGB {
        let t = min(max(t, 0), 1)
        func m(_ a: UInt8, _ b: UInt8) -> UInt8 {
            UInt8((Double(a) * (1 - t) + Double(b) * t).rounded())
        }
        return RGB(m(r, other.r), m(g, other.g), m(b, other.b))
    }

    public var description: String { "RGB(\(r), \(g), \(b))" }
}
