// Image containers: 8-bit RGB, RGBA and gray (also used for label maps).

@_exported import struct UnsegLinAlg.RGB

/// An 8-bit RGB image, row-major, channels interleaved: `pixels` has shape
/// `[height, width, 3]` (`width * height * 3` bytes, top row first).
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// A `width x height` image filled with `color`. Traps if a size is negative (programming error).
    public init(width: Int, height: Int, fill color: RGB = .black) {
        precondition(width >= 0 && height >= 0, "RGBImage size must be >= 0, got \(width)x\(height)")
        self.width = width
        self.height = height
        var p = [UInt8](repeating: 0, count: width * height * 3)
        if color != .black {
            for i in 0..<(width * height) {
                p[3 * i] = color.r; p[3 * i + 1] = color.g; p[3 * i + 2] = color.b
            }
        }
        self.pixels = p
    }

    /// Wraps interleaved RGB bytes of shape `[height, width, 3]`; traps if the count differs.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3,
                     "RGBImage \(width)x\(height) needs \(width * height * 3) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A gray image expanded to RGB (each gray value copied to the three channels).
    public init(gray: GrayImage) {
        var p = [UInt8](repeating: 0, count: gray.width * gray.height * 3)
        for i in 0..<(gray.width * gray.height) {
            let v = gray.pixels[i]
            p[3 * i] = v; p[3 * i + 1] = v; p[3 * i + 2] = v
        }
        self.init(width: gray.width, height: gray.height, pixels: p)
    }

    /// The colour at column `x`, row `y` (bounds checked by the array only).
    public subscript(x: Int, y: Int) -> RGB {
        get {
            let o = 3 * (y * width + x)
            return RGB(pixels[o], pixels[o + 1], pixels[o + 2])
        }
        set {
            let o = 3 * (y * width + x)
            pixels[o] = newValue.r; pixels[o + 1] = newValue.g; pixels[o + 2] = newValue.b
        }
    }

    /// Copy of the rectangle `[x, x + w) x [y, y + h)`, clipped to the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> RGBImage {
        let x0 = max(0, x), y0 = max(0, y)
        let x1 = min(width, x + w), y1 = min(height, y + h)
        let cw = max(0, x1 - x0), ch = max(0, y1 - y0)
        var out = RGBImage(width: cw, height: ch)
        for yy in 0..<ch {
            let src = 3 * ((y0 + yy) * width + x0)
            let dst = 3 * yy * cw
            for k in 0..<(3 * cw) { out.pixels[dst + k] = pixels[src + k] }
        }
        return out
    }
}

/// An 8-bit single-channel image, row-major `[height, width]`: gray levels, or a label map
/// whose values are class ids (255 conventionally meaning "ignore").
public struct GrayImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// A `width x height` image filled with `value`.
    public init(width: Int, height: Int, fill value: UInt8 = 0) {
        precondition(width >= 0 && height >= 0, "GrayImage size must be >= 0, got \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = [UInt8](repeating: value, count: width * height)
    }

    /// Wraps bytes of shape `[height, width]`; traps if the count differs.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height,
                     "GrayImage \(width)x\(height) needs \(width * height) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A label map from Int32 class ids of shape `[height, width]`; ids outside 0...255 become `ignore`.
    public init(width: Int, height: Int, labels: [Int32], ignore: UInt8 = 255) {
        precondition(labels.count == width * height,
                     "label map \(width)x\(height) needs \(width * height) ids, got \(labels.count)")
        self.init(width: width, height: height,
                  pixels: labels.map { ($0 >= 0 && $0 <= 255) ? UInt8($0) : ignore })
    }

    /// The value at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> UInt8 {
        get { pixels[y * width + x] }
        set { pixels[y * width + x] = newValue }
    }
}

/// A label map: class id per pixel, 255 = ignore. Same storage as `GrayImage`.
public typealias LabelMap = GrayImage

/// An 8-bit RGBA image, row-major `[height, width, 4]`, straight (not premultiplied) alpha.
public struct RGBAImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    /// Wraps bytes of shape `[height, width, 4]`; traps if the count differs.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 4,
                     "RGBAImage \(width)x\(height) needs \(width * height * 4) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An RGB image with a constant alpha.
    public init(_ rgb: RGBImage, alpha: UInt8 = 255) {
        var p = [UInt8](repeating: alpha, count: rgb.width * rgb.height * 4)
        for i in 0..<(rgb.width * rgb.height) {
            p[4 * i] = rgb.pixels[3 * i]; p[4 * i + 1] = rgb.pixels[3 * i + 1]; p[4 * i + 2] = rgb.pixels[3 * i + 2]
        }
        self.init(width: rgb.width, height: rgb.height, pixels: p)
    }
}

/// Errors of the imaging module: each names the file or values involved and what to do.
public enum ImagingError: Error, CustomStringConvertible, Equatable {
    /// The directory a file should go into does not exist.
    case directoryMissing(path: String, directory: String)
    /// libpng refused to write `path`; `libpng` is its message.
    case writeFailed(path: String, libpng: String)
    /// The temporary file could not be renamed onto `path`.
    case renameFailed(path: String, temporary: String, errno: Int32)
    /// The file does not exist or cannot be opened.
    case fileNotReadable(path: String)
    /// libpng could not read `path` (not a PNG, truncated, ...); `libpng` is its message.
    case readFailed(path: String, libpng: String)
    /// A value outside what the call accepts (sizes, palette lengths, ...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .directoryMissing(path, directory):
            return "cannot write \(path): directory \(directory) does not exist; create it first (mkdir -p \(directory))"
        case let .writeFailed(path, libpng):
            return "cannot write PNG \(path): libpng says \"\(libpng)\"; check that the directory is writable and the disk is not full"
        case let .renameFailed(path, temporary, errno):
            return "cannot move \(temporary) onto \(path) (errno \(errno)); check permissions of the directory; the temporary file was removed"
        case let .fileNotReadable(path):
            return "cannot read \(path): the file does not exist or is not readable; check the path"
        case let .readFailed(path, libpng):
            return "cannot read PNG \(path): libpng says \"\(libpng)\"; is it a PNG file (not JPEG, not truncated)?"
        case let .invalidArgument(message):
            return message
        }
    }
}
