import Foundation
import Testing
import UnsegTestSupport
@testable import UnsegImaging

/// A PNG writer in plain Python (zlib + struct, no PIL), so that every bit depth, palette files
/// and Adam7 interlacing can be written exactly as other tools write them. It reads the samples
/// as a .npy array ([H, W] or [H, W, C]) and writes `path` with `bit_depth`, `colour_type`
/// (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA) and `interlace` (0 or 1).
private let pythonPNGWriter = """
import sys, zlib, struct, numpy as np
src, path, depth, ctype, interlace = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
a = np.load(src)
if a.ndim == 2: a = a[:, :, None]
H, W, C = a.shape
def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
def rows(b):
    out = b''
    for r in b:
        if depth == 16: line = r.astype('>u2').tobytes()
        elif depth == 8: line = r.astype(np.uint8).tobytes()
        else:
            v = r.reshape(-1).astype(np.uint8); per = 8 // depth
            pad = (-len(v)) % per; v = np.concatenate([v, np.zeros(pad, np.uint8)]).reshape(-1, per)
            line = bytes(int(sum(int(x) << (8 - depth * (k + 1)) for k, x in enumerate(g))) for g in v)
        out += b'\\x00' + line
    return out
if interlace:
    raw = b''
    for x0, y0, dx, dy in [(0,0,8,8),(4,0,8,8),(0,4,4,8),(2,0,4,4),(0,2,2,4),(1,0,2,2),(0,1,1,2)]:
        p = a[y0::dy, x0::dx]
        if p.size: raw += rows(p)
else:
    raw = rows(a)
png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', W, H, depth, ctype, 0, 0, interlace))
if ctype == 3:
    n = 1 << depth
    png += chunk(b'PLTE', bytes((i * 37 % 256, i * 91 % 256, i * 13 % 256)[c] for i in range(n) for c in range(3)))
png += chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
open(path, 'wb').write(png)
"""

/// Writes `samples` ([h, w, c] row-major) as a PNG through the Python writer above.
private func writePNG(_ path: String, _ samples: [UInt16], height h: Int, width w: Int, channels c: Int,
                      depth: Int, colourType: Int, interlace: Bool) throws {
    let npy = path + ".txt"
    try samples.map(String.init).joined(separator: " ").write(toFile: npy, atomically: true, encoding: .utf8)
    _ = try runPython("""
    import numpy as np, sys
    v = np.array(open(sys.argv[1]).read().split(), dtype=np.int64).reshape(\(h), \(w), \(c))
    np.save(sys.argv[2], v)
    """, args: [npy, npy + ".npy"])
    _ = try runPython(pythonPNGWriter, args: [npy + ".npy", path, String(depth), String(colourType), interlace ? "1" : "0"])
}

/// `PNG.readSamples` returns every sample as stored, whatever the bit depth, colour type or
/// interlacing: no gamma, no scaling of low-bit grey, palette indices whole, 16 bits whole.
@Suite struct PNGSamplesTests {
    @Test(arguments: [
        (1, 0, 1), (2, 0, 1), (4, 0, 1), (8, 0, 1), (16, 0, 1),   // grey at every depth
        (1, 3, 1), (4, 3, 1), (8, 3, 1),                          // palette indices
        (8, 2, 3), (16, 2, 3), (8, 4, 2), (8, 6, 4), (16, 6, 4),  // RGB, grey+alpha, RGBA
    ])
    func everyDepthAndTypeReadsExactly(depth: Int, colourType: Int, channels: Int) throws {
        let dir = try makeTempDir("samples"); defer { removeDir(dir) }
        for interlace in [false, true] {
            var rng = TestRNG(seed: UInt64(depth * 100 + colourType * 10 + (interlace ? 1 : 0)))
            // Odd sizes exercise partial bytes of low-bit rows and the empty Adam7 passes.
            let w = 1 + rng.int(below: 13), h = 1 + rng.int(below: 11)
            let top = (1 << depth) - 1
            let s = (0..<(w * h * channels)).map { _ in UInt16(rng.int(below: top + 1)) }
            let path = dir + "/d\(depth)-t\(colourType)-i\(interlace ? 1 : 0).png"
            try writePNG(path, s, height: h, width: w, channels: channels, depth: depth, colourType: colourType, interlace: interlace)
            let header = try PNG.readHeader(path)
            #expect(header == PNGHeader(width: w, height: h, channels: channels, bitDepth: depth, isPalette: colourType == 3))
            #expect(header.maxSample == top)
            let got = try PNG.readSamples(path)
            #expect(got.samples == s, "depth \(depth), type \(colourType), interlace \(interlace), \(w)x\(h)")
            #expect(got.firstChannel == (0..<(w * h)).map { s[$0 * channels] })
        }
    }

    @Test func kindsAndColourChecks() throws {
        let dir = try makeTempDir("kinds"); defer { removeDir(dir) }
        let grey: [UInt16] = [0, 1, 2, 3, 4, 5]
        try writePNG(dir + "/g.png", grey, height: 2, width: 3, channels: 1, depth: 16, colourType: 0, interlace: false)
        let g = try PNG.readHeader(dir + "/g.png")
        #expect(g.kind == "16-bit grey" && !g.isColour)
        // A grey map saved as RGB: colour by type, grey by content.
        let rgb = grey.flatMap { [$0, $0, $0] }
        try writePNG(dir + "/rgb.png", rgb, height: 2, width: 3, channels: 3, depth: 8, colourType: 2, interlace: false)
        let r = try PNG.readSamples(dir + "/rgb.png")
        #expect(r.header.kind == "8-bit RGB" && r.header.isColour && r.coloursAreGrey)
        var tinted = rgb
        tinted[4] = 9
        try writePNG(dir + "/tint.png", tinted, height: 2, width: 3, channels: 3, depth: 8, colourType: 2, interlace: false)
        #expect(try !PNG.readSamples(dir + "/tint.png").coloursAreGrey)
        try writePNG(dir + "/p.png", grey, height: 2, width: 3, channels: 1, depth: 8, colourType: 3, interlace: false)
        let p = try PNG.readHeader(dir + "/p.png")
        #expect(p.kind == "8-bit palette" && p.isPalette && !p.isColour)
    }

    @Test func damagedFilesAreErrorsNotCrashes() throws {
        let dir = try makeTempDir("damaged"); defer { removeDir(dir) }
        let s = (0..<(20 * 30)).map { UInt16($0 % 251) }
        let good = dir + "/good.png"
        try writePNG(good, s, height: 20, width: 30, channels: 1, depth: 8, colourType: 0, interlace: false)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        // Cut inside the image data: the header reads, the samples do not.
        let cut = dir + "/cut.png"
        try bytes.prefix(bytes.count - 30).write(to: URL(fileURLWithPath: cut))
        #expect(try PNG.readHeader(cut).width == 30)
        #expect(throws: ImagingError.self) { try PNG.readSamples(cut) }
        // Cut inside the header, a text file, an empty file, a file that is not there.
        let stub = dir + "/stub.png"
        try bytes.prefix(20).write(to: URL(fileURLWithPath: stub))
        let text = dir + "/text.png"
        try "not a png\n".write(toFile: text, atomically: true, encoding: .utf8)
        let empty = dir + "/empty.png"
        try Data().write(to: URL(fileURLWithPath: empty))
        for path in [stub, text, empty, dir + "/absent.png"] {
            #expect(throws: ImagingError.self) { try PNG.readHeader(path) }
            #expect(throws: ImagingError.self) { try PNG.readSamples(path) }
        }
        // A flipped byte in the compressed data: a CRC error, reported.
        var flipped = [UInt8](bytes)
        flipped[flipped.count - 20] ^= 0xFF
        let bad = dir + "/crc.png"
        try Data(flipped).write(to: URL(fileURLWithPath: bad))
        #expect(throws: ImagingError.self) { try PNG.readSamples(bad) }
        // A file that changed since its header was read is an error, not a wrong-sized read.
        let header = try PNG.readHeader(good)
        try writePNG(good, Array(s.prefix(10 * 30)), height: 10, width: 30, channels: 1, depth: 8, colourType: 0, interlace: false)
        #expect(throws: ImagingError.self) { try PNG.readSamples(good, header: header) }
    }
}
