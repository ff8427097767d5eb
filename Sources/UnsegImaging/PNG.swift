// PNG read / write through libpng's simplified API (png_image_*): no setjmp needed.
//
// Writes are atomic: the PNG goes to a hidden temporary file in the destination directory
// and is renamed onto the final name only when libpng reports success, so a reader never
// sees a half-written file and a failed write leaves no litter.
//
// Indexed ("palette") PNGs: writing uses PNG_FORMAT_RGB_COLORMAP, so pixel values are the
// class ids and the PLTE chunk holds the colours. Reading them back with the same format
// returns the raw indices: for a file whose colour type is PALETTE, libpng's
// png_image_read_colormap copies the file palette entry by entry (no re-quantisation), so
// index i in the file is index i in memory. `PNG.readLabels` relies on that (tested by a
// round trip) and falls back to the gray values for 8-bit gray label files (Cityscapes
// `*_labelIds.png`, COCO-Stuff label PNGs).

import CPNG
import Foundation

/// zlib effort for PNG writes (libpng's simplified API offers exactly these two).
public enum PNGCompression: Sendable {
    /// PNG_IMAGE_FLAG_FAST: no row filters, zlib level 3. Measured on a 2048x1024 RGB image
    /// (release, shared 2-core machine): 4-6x faster than `.small`, files 5-45% larger.
    case fast
    /// libpng's defaults (adaptive filters, default zlib level): smallest files.
    case small
}

/// Namespace for PNG file input and output.
public enum PNG {
    // MARK: writing

    /// Writes an RGB image as an 8-bit RGB PNG at `path`, atomically.
    /// Cost O(width * height) plus zlib (see `PNGCompression`; `.fast` by default). Errors: `.directoryMissing`, `.writeFailed`, `.renameFailed`.
    public static func write(_ image: RGBImage, to path: String, compression: PNGCompression = .fast) throws {
        try image.pixels.withUnsafeBytes { buf in
            try writeRaw(path: path, width: image.width, height: image.height,
                         format: unseg_png_format_rgb(), pixels: buf.baseAddress!, colormap: nil, colormapEntries: 0, compression: compression)
        }
    }

    /// Writes an RGBA image (straight alpha) as an 8-bit RGBA PNG at `path`, atomically.
    public static func write(_ image: RGBAImage, to path: String, compression: PNGCompression = .fast) throws {
        try image.pixels.withUnsafeBytes { buf in
            try writeRaw(path: path, width: image.width, height: image.height,
                         format: unseg_png_format_rgba(), pixels: buf.baseAddress!, colormap: nil, colormapEntries: 0, compression: compression)
        }
    }

    /// Writes a gray image (or a label map as plain gray values) as an 8-bit gray PNG, atomically.
    public static func write(_ image: GrayImage, to path: String, compression: PNGCompression = .fast) throws {
        try image.pixels.withUnsafeBytes { buf in
            try writeRaw(path: path, width: image.width, height: image.height,
                         format: unseg_png_format_gray(), pixels: buf.baseAddress!, colormap: nil, colormapEntries: 0, compression: compression)
        }
    }

    /// Writes a label map as an 8-bit indexed ("palette") PNG: pixel values are the class ids,
    /// the PLTE chunk holds `palette`'s colours (id 255 gets `palette.ignoreColor`), so viewers
    /// show colours while tools read ids. The palette has `max(id) + 1` entries (at least
    /// `palette.colors.count`, at most 256). Atomic. Errors as `write(_:to:)`.
    public static func writeIndexed(_ labels: LabelMap, palette: Palette, to path: String, compression: PNGCompression = .fast) throws {
        let maxID = Int(labels.pixels.max() ?? 0)
        let entries = min(256, max(maxID + 1, palette.colors.count, 1))
        var cmap = [UInt8](repeating: 0, count: entries * 3)
        for i in 0..<entries {
            let c = palette.color(for: UInt8(i))
            cmap[3 * i] = c.r; cmap[3 * i + 1] = c.g; cmap[3 * i + 2] = c.b
        }
        try labels.pixels.withUnsafeBytes { buf in
            try cmap.withUnsafeBytes { cm in
                try writeRaw(path: path, width: labels.width, height: labels.height,
                             format: unseg_png_format_rgb_colormap(), pixels: buf.baseAddress!,
                             colormap: cm.baseAddress!, colormapEntries: entries,
                             compression: compression)
            }
        }
    }

    // MARK: reading

    /// Reads any PNG (gray, RGB, palette, with or without alpha, 8 or 16 bit, interlaced) as
    /// 8-bit sRGB. Alpha is composited onto `background`.
    /// Errors: `.fileNotReadable`, `.readFailed` (not a PNG, truncated, ...).
    public static func readRGB(_ path: String, background: RGB = .white) throws -> RGBImage {
        let (w, h, bytes) = try readRaw(path: path, format: unseg_png_format_rgb(), background: background)
        return RGBImage(width: w, height: h, pixels: bytes)
    }

    /// Reads any PNG as 8-bit RGBA (straight alpha; files without alpha get alpha 255).
    public static func readRGBA(_ path: String) throws -> RGBAImage {
        let (w, h, bytes) = try readRaw(path: path, format: unseg_png_format_rgba(), background: .white)
        return RGBAImage(width: w, height: h, pixels: bytes)
    }

    /// Reads any PNG as 8-bit gray (colour files are converted to luminance by libpng; gray
    /// files come back exactly). Alpha is composited onto `background`.
    public static func readGray(_ path: String, background: UInt8 = 255) throws -> GrayImage {
        let (w, h, bytes) = try readRaw(path: path, format: unseg_png_format_gray(),
                                        background: RGB(background, background, background))
        return GrayImage(width: w, height: h, pixels: bytes)
    }

    /// Reads a label PNG: the raw indices of an indexed (palette) PNG, or the values of an
    /// 8-bit gray PNG. Returns the ids and, for an indexed file, its palette.
    /// Errors: `.fileNotReadable`, `.readFailed`, `.invalidArgument` for a colour (RGB) PNG,
    /// whose colours would first have to be mapped to ids.
    public static func readLabels(_ path: String) throws -> (labels: LabelMap, palette: Palette?) {
        var image = try beginRead(path)
        let colormapFlag: png_uint_32 = 0x08  // PNG_FORMAT_FLAG_COLORMAP
        let colorFlag: png_uint_32 = 0x02     // PNG_FORMAT_FLAG_COLOR
        let fileFormat = image.format
        if fileFormat & colormapFlag == 0 {
            if fileFormat & colorFlag != 0 {
                png_image_free(&image)
                throw ImagingError.invalidArgument(
                    "cannot read \(path) as a label map: it is a colour PNG without a palette; "
                    + "write labels as indexed or 8-bit gray PNGs, or map its colours to class ids first")
            }
            let (w, h, bytes) = try finishRead(&image, path: path, format: unseg_png_format_gray(),
                                               background: .black)
            return (GrayImage(width: w, height: h, pixels: bytes), nil)
        }
        let w = Int(image.width), h = Int(image.height)
        image.format = unseg_png_format_rgb_colormap()
        let entries = max(1, Int(image.colormap_entries))
        var indices = [UInt8](repeating: 0, count: w * h)
        var cmap = [UInt8](repeating: 0, count: 256 * 4)  // >= PNG_IMAGE_COLORMAP_SIZE for RGB
        var bg = png_color(red: 0, green: 0, blue: 0)
        let ok = indices.withUnsafeMutableBytes { buf in
            cmap.withUnsafeMutableBytes { cm in
                png_image_finish_read(&image, &bg, buf.baseAddress, 0, cm.baseAddress)
            }
        }
        if ok == 0 {
            let msg = message(of: &image)
            png_image_free(&image)
            throw ImagingError.readFailed(path: path, libpng: msg)
        }
        let n = min(entries, Int(image.colormap_entries) > 0 ? Int(image.colormap_entries) : entries)
        var colors: [RGB] = []
        for i in 0..<min(n, 256) { colors.append(RGB(cmap[3 * i], cmap[3 * i + 1], cmap[3 * i + 2])) }
        var palette = Palette(colors: colors)
        if colors.count == 256 { palette.ignoreColor = colors[255] }
        return (GrayImage(width: w, height: h, pixels: indices), palette)
    }

    // MARK: internals

    private static let counterLock = NSLock()
    nonisolated(unsafe) private static var counter = 0

    private static func nextCounter() -> Int {
        counterLock.lock(); defer { counterLock.unlock() }
        counter += 1
        return counter
    }

    static func message(of image: inout png_image) -> String {
        let s = withUnsafeBytes(of: &image.message) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return s.isEmpty ? "(no message)" : s
    }

    private static func writeRaw(path: String, width: Int, height: Int, format: png_uint_32,
                                 pixels: UnsafeRawPointer, colormap: UnsafeRawPointer?,
                                 colormapEntries: Int, compression: PNGCompression) throws {
        guard width > 0, height > 0, width < Int(Int32.max) / 4, height < Int(Int32.max) else {
            throw ImagingError.invalidArgument(
                "cannot write PNG \(path): size \(width)x\(height) is empty or too large; PNG needs width and height >= 1")
        }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue {
            throw ImagingError.directoryMissing(path: path, directory: dir)
        }
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(nextCounter())"
        var image = png_image()
        image.version = unseg_png_image_version()
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = format
        image.colormap_entries = png_uint_32(colormapEntries)
        if compression == .fast { image.flags = 0x02 }  // PNG_IMAGE_FLAG_FAST
        let ok = png_image_write_to_file(&image, tmp, 0, pixels, 0, colormap)
        if ok == 0 {
            let msg = message(of: &image)
            png_image_free(&image)
            unlink(tmp)
            throw ImagingError.writeFailed(path: path, libpng: msg)
        }
        png_image_free(&image)
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw ImagingError.renameFailed(path: path, temporary: tmp, errno: e)
        }
    }

    private static func beginRead(_ path: String) throws -> png_image {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ImagingError.fileNotReadable(path: path)
        }
        var image = png_image()
        image.version = unseg_png_image_version()
        if png_image_begin_read_from_file(&image, path) == 0 {
            let msg = message(of: &image)
            png_image_free(&image)
            throw ImagingError.readFailed(path: path, libpng: msg)
        }
        return image
    }

    private static func finishRead(_ image: inout png_image, path: String, format: png_uint_32,
                                   background: RGB) throws -> (Int, Int, [UInt8]) {
        image.format = format
        let w = Int(image.width), h = Int(image.height)
        var bytes = [UInt8](repeating: 0, count: Int(unseg_png_image_size(&image)))
        var bg = png_color(red: background.r, green: background.g, blue: background.b)
        let ok = bytes.withUnsafeMutableBytes { buf in
            png_image_finish_read(&image, &bg, buf.baseAddress, 0, nil)
        }
        if ok == 0 {
            let msg = message(of: &image)
            png_image_free(&image)
            throw ImagingError.readFailed(path: path, libpng: msg)
        }
        return (w, h, bytes)
    }

    private static func readRaw(path: String, format: png_uint_32, background: RGB) throws -> (Int, Int, [UInt8]) {
        var image = try beginRead(path)
        return try finishRead(&image, path: path, format: format, background: background)
    }
}

public extension RGBImage {
    /// Writes this image as an RGB PNG (atomic); see `PNG.write`.
    func writePNG(to path: String) throws { try PNG.write(self, to: path) }
    /// Reads any PNG as RGB; see `PNG.readRGB`.
    init(pngFile path: String) throws { self = try PNG.readRGB(path) }
}

public extension GrayImage {
    /// Writes this image as an 8-bit gray PNG (atomic); see `PNG.write`.
    func writePNG(to path: String) throws { try PNG.write(self, to: path) }
    /// Writes this label map as an indexed PNG with `palette`; see `PNG.writeIndexed`.
    func writeIndexedPNG(to path: String, palette: Palette) throws {
        try PNG.writeIndexed(self, palette: palette, to: path)
    }
    /// Reads any PNG as gray; see `PNG.readGray`.
    init(pngFile path: String) throws { self = try PNG.readGray(path) }
}

public extension RGBAImage {
    /// Writes this image as an RGBA PNG (atomic); see `PNG.write`.
    func writePNG(to path: String) throws { try PNG.write(self, to: path) }
}
