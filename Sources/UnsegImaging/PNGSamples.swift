// Exact sample values of PNGs written by other tools (label maps, saliency maps), through the
// classic libpng reader in CUnsegPNG: no gamma, no scaling of 1/2/4-bit grey, palette indices as
// stored, 16-bit values whole. `PNG.readLabels` (simplified API) stays the reader for unseg's own
// 8-bit files; this one is for files of unknown origin.

import CUnsegPNG
import Foundation

/// A PNG's header as far as sample reading cares.
public struct PNGHeader: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// Samples per pixel: 1 grey or palette index, 2 grey + alpha, 3 RGB, 4 RGBA.
    public var channels: Int
    /// Bits per sample in the file (1, 2, 4, 8, 16).
    public var bitDepth: Int
    /// Whether the samples are palette indices.
    public var isPalette: Bool

    /// "8-bit grey", "16-bit grey", "8-bit palette", "8-bit RGB", ...
    public var kind: String {
        let what: String
        switch (isPalette, channels) {
        case (true, _): what = "palette"
        case (false, 1): what = "grey"
        case (false, 2): what = "grey + alpha"
        case (false, 3): what = "RGB"
        default: what = "RGBA"
        }
        return "\(bitDepth)-bit \(what)"
    }

    /// Whether the colour channels are not grey by construction (RGB or RGBA, not a palette).
    public var isColour: Bool { !isPalette && channels >= 3 }

    /// The largest sample value the file can hold (1, 3, 15, 255, 65535).
    public var maxSample: Int { (1 << bitDepth) - 1 }

    fileprivate var c: unseg_png_info {
        unseg_png_info(width: UInt32(width), height: UInt32(height), channels: Int32(channels),
                       bit_depth: Int32(bitDepth), palette: isPalette ? 1 : 0, interlaced: 0)
    }
}

/// A PNG's samples as stored: `samples[(y * width + x) * channels + c]`.
public struct PNGSamples: Sendable {
    public var header: PNGHeader
    public var samples: [UInt16]

    /// The first channel of every pixel (grey level or palette index), `[height * width]`.
    public var firstChannel: [UInt16] {
        let c = header.channels
        if c == 1 { return samples }
        return (0..<(header.width * header.height)).map { samples[$0 * c] }
    }

    /// Whether every pixel's R, G and B are equal (a grey map saved as a colour PNG). False for
    /// files without colour channels.
    public var coloursAreGrey: Bool {
        guard header.isColour else { return false }
        let c = header.channels
        return samples.withUnsafeBufferPointer { s in
            var i = 0
            while i + 2 < s.count {
                if s[i] != s[i + 1] || s[i] != s[i + 2] { return false }
                i += c
            }
            return true
        }
    }
}

extension PNG {
    /// The header of `path` (dimensions, channels, bit depth, palette or not).
    /// Errors: `.fileNotReadable`, `.readFailed` (not a PNG, truncated header).
    public static func readHeader(_ path: String) throws -> PNGHeader {
        guard FileManager.default.isReadableFile(atPath: path) else { throw ImagingError.fileNotReadable(path: path) }
        var info = unseg_png_info()
        var msg = [CChar](repeating: 0, count: 256)
        if unseg_png_read_info(path, &info, &msg, msg.count) == 0 {
            throw ImagingError.readFailed(path: path, libpng: cString(msg))
        }
        return PNGHeader(width: Int(info.width), height: Int(info.height), channels: Int(info.channels),
                         bitDepth: Int(info.bit_depth), isPalette: info.palette != 0)
    }

    /// Every sample of `path` as stored (see `PNGSamples`). `header` is what `readHeader` gave;
    /// a file that changed since is an error. Errors: `.fileNotReadable`, `.readFailed` (truncated,
    /// corrupt data, CRC errors).
    public static func readSamples(_ path: String, header: PNGHeader? = nil) throws -> PNGSamples {
        let h = try header ?? readHeader(path)
        var out = [UInt16](repeating: 0, count: h.width * h.height * h.channels)
        var msg = [CChar](repeating: 0, count: 256)
        var info = h.c
        let ok = out.withUnsafeMutableBufferPointer { buf in
            unseg_png_read_samples(path, &info, buf.baseAddress, &msg, msg.count)
        }
        if ok == 0 { throw ImagingError.readFailed(path: path, libpng: cString(msg)) }
        return PNGSamples(header: h, samples: out)
    }

    private static func cString(_ buf: [CChar]) -> String {
        let bytes = buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let s = String(decoding: bytes, as: UTF8.self)
        return s.isEmpty ? "(no message)" : s
    }
}
