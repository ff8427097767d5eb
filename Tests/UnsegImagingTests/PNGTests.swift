import Foundation
import Testing
@testable import UnsegImaging

/// Reads the chunks of a PNG file by hand (no PIL): signature, then (length, type, data).
func pngChunks(_ path: String) throws -> (signatureOK: Bool, chunks: [(String, [UInt8])]) {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let sig: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]
    guard bytes.count >= 8, Array(bytes[0..<8]) == sig else { return (false, []) }
    var chunks: [(String, [UInt8])] = []
    var o = 8
    while o + 12 <= bytes.count {
        let len = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
        let type = String(decoding: bytes[(o + 4)..<(o + 8)], as: UTF8.self)
        guard o + 12 + len <= bytes.count else { break }
        chunks.append((type, Array(bytes[(o + 8)..<(o + 8 + len)])))
        o += 12 + len
    }
    return (true, chunks)
}

func be32(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }

@Suite struct PNGTests {
    @Test func rgbRoundTripIsExact() throws {
        let dir = try makeTempDir("rgb"); defer { removeDir(dir) }
        for seed: UInt64 in [1, 2, 3] {
            var rng = TestRNG(seed: seed)
            let w = 1 + rng.int(below: 60), h = 1 + rng.int(below: 40)
            let img = RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { _ in rng.byte() })
            let path = dir + "/rgb\(seed).png"
            try PNG.write(img, to: path, compression: seed == 2 ? .small : .fast)
            #expect(try PNG.readRGB(path) == img, "seed \(seed), \(w)x\(h)")
            #expect(try RGBImage(pngFile: path) == img, "seed \(seed)")
        }
    }

    @Test func grayRoundTripIsExact() throws {
        let dir = try makeTempDir("gray"); defer { removeDir(dir) }
        for seed: UInt64 in [4, 5] {
            var rng = TestRNG(seed: seed)
            let w = 1 + rng.int(below: 70), h = 1 + rng.int(below: 30)
            let img = GrayImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in rng.byte() })
            let path = dir + "/g\(seed).png"
            try img.writePNG(to: path)
            #expect(try PNG.readGray(path) == img, "seed \(seed), \(w)x\(h)")
            // Gray read as RGB replicates the value into the three channels.
            #expect(try PNG.readRGB(path) == RGBImage(gray: img), "seed \(seed)")
            // And a gray file is a valid label file: ids come back unchanged.
            let (labels, palette) = try PNG.readLabels(path)
            #expect(labels == img && palette == nil, "seed \(seed)")
        }
    }

    @Test func rgbaRoundTripIsExact() throws {
        let dir = try makeTempDir("rgba"); defer { removeDir(dir) }
        var rng = TestRNG(seed: 6)
        let w = 17, h = 9
        let img = RGBAImage(width: w, height: h, pixels: (0..<(w * h * 4)).map { _ in rng.byte() })
        let path = dir + "/a.png"
        try img.writePNG(to: path)
        #expect(try PNG.readRGBA(path) == img, "seed 6")
        let (ok, chunks) = try pngChunks(path)
        #expect(ok && chunks.first?.1[9] == 6, "colour type 6 = RGBA")
    }

    @Test func indexedRoundTripKeepsIndicesAndPalette() throws {
        let dir = try makeTempDir("idx"); defer { removeDir(dir) }
        for seed: UInt64 in [7, 8] {
            var rng = TestRNG(seed: seed)
            let w = 31, h = 19
            // ids 0...26 plus some 255 (ignore)
            let ids = (0..<(w * h)).map { _ in rng.int(below: 10) == 0 ? UInt8(255) : UInt8(rng.int(below: 27)) }
            let labels = LabelMap(width: w, height: h, pixels: ids)
            let path = dir + "/l\(seed).png"
            try PNG.writeIndexed(labels, palette: .cityscapes27, to: path)
            let (back, palette) = try PNG.readLabels(path)
            #expect(back == labels, "seed \(seed): indices differ")
            let p = try #require(palette)
            #expect(p.colors.count == 256, "palette has max id + 1 = 256 entries")
            #expect(Array(p.colors[0..<27]) == Palette.cityscapes27.colors, "seed \(seed)")
            #expect(p.colors[255] == Palette.cityscapes27.ignoreColor)
            // A viewer reading it as RGB sees the palette colours.
            let rgb = try PNG.readRGB(path)
            #expect(rgb == Palette.cityscapes27.colorize(labels), "seed \(seed)")
            // Colour type 3 (palette) with a PLTE of 256 entries.
            let (ok, chunks) = try pngChunks(path)
            #expect(ok && chunks.first?.0 == "IHDR" && chunks.first?.1[9] == 3)
            #expect(chunks.first { $0.0 == "PLTE" }?.1.count == 256 * 3)
        }
    }

    @Test func ihdrFieldsMatchWhatWasWritten() throws {
        let dir = try makeTempDir("ihdr"); defer { removeDir(dir) }
        let path = dir + "/x.png"
        try PNG.write(RGBImage(width: 13, height: 7, fill: .red), to: path)
        let (ok, chunks) = try pngChunks(path)
        #expect(ok, "PNG signature")
        let ihdr = try #require(chunks.first)
        #expect(ihdr.0 == "IHDR" && ihdr.1.count == 13)
        #expect(be32(ihdr.1, 0) == 13 && be32(ihdr.1, 4) == 7, "width, height")
        #expect(ihdr.1[8] == 8 && ihdr.1[9] == 2, "bit depth 8, colour type 2 = RGB")
        #expect(chunks.last?.0 == "IEND")
        try PNG.write(GrayImage(width: 5, height: 3), to: path)  // overwrite in place
        let g = try pngChunks(path).chunks.first!.1
        #expect(be32(g, 0) == 5 && be32(g, 4) == 3 && g[8] == 8 && g[9] == 0, "gray: colour type 0")
        // The atomic write leaves no temporary files behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["x.png"])
    }

    @Test func writingIntoMissingDirectoryNamesThePath() throws {
        let path = "/nonexistent-unseg-dir/sub/out.png"
        do {
            try PNG.write(RGBImage(width: 2, height: 2), to: path)
            Issue.record("expected an error")
        } catch let e as ImagingError {
            #expect(e == .directoryMissing(path: path, directory: "/nonexistent-unseg-dir/sub"))
            #expect(e.description.contains(path) && e.description.contains("mkdir"))
        }
    }

    @Test func readingANonPNGFails() throws {
        let dir = try makeTempDir("bad"); defer { removeDir(dir) }
        let path = dir + "/notes.png"
        try "this is not a PNG".write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try PNG.readRGB(path)
            Issue.record("expected an error")
        } catch let e as ImagingError {
            guard case let .readFailed(p, libpng) = e else { Issue.record("wrong error \(e)"); return }
            #expect(p == path && !libpng.isEmpty)
            #expect(e.description.contains(path))
        }
        #expect(throws: ImagingError.fileNotReadable(path: dir + "/missing.png")) {
            _ = try PNG.readGray(dir + "/missing.png")
        }
        // A colour PNG is not a label map.
        try PNG.write(RGBImage(width: 3, height: 3), to: dir + "/c.png")
        #expect(throws: ImagingError.self) { _ = try PNG.readLabels(dir + "/c.png") }
        // Empty images cannot be PNGs.
        #expect(throws: ImagingError.self) { try PNG.write(RGBImage(width: 0, height: 4), to: dir + "/e.png") }
    }
}

/// An independent decoder: Python's zlib plus the PNG filter rules (no PIL), run on files
/// written by libpng, must give back the exact pixel bytes.
@Suite struct PythonDecodeTests {
    static let decoder = #"""
import sys, zlib, struct
def decode(path):
    b = open(path, 'rb').read()
    assert b[:8] == b'\x89PNG\r\n\x1a\n', 'signature'
    o, idat, ihdr = 8, b'', None
    while o < len(b):
        n, = struct.unpack('>I', b[o:o+4]); t = b[o+4:o+8]; d = b[o+8:o+8+n]
        crc, = struct.unpack('>I', b[o+8+n:o+12+n])
        assert zlib.crc32(t + d) & 0xffffffff == crc, 'crc of ' + t.decode()
        if t == b'IHDR': ihdr = struct.unpack('>IIBBBBB', d)
        if t == b'IDAT': idat += d
        o += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0
    bpp = {0: 1, 2: 3, 3: 1, 6: 4}[ctype]
    raw = zlib.decompress(idat); stride = w * bpp
    out, prev, p = bytearray(), bytearray(stride), 0
    for y in range(h):
        f = raw[p]; line = bytearray(raw[p+1:p+1+stride]); p += 1 + stride
        for i in range(stride):
            a = line[i-bpp] if i >= bpp else 0; c = prev[i-bpp] if i >= bpp else 0; up = prev[i]
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + up) & 255
            elif f == 3: line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
                pr = a if pa <= pb and pa <= pc else (up if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        out += line; prev = line
    return bytes(out)
for path in sys.argv[1:]:
    sys.stdout.write(('ok' if decode(path) == open(path + '.raw', 'rb').read() else 'MISMATCH') + ' ' + path + '\n')
"""#

    @Test func pythonDecodesOurPNGsExactly() throws {
        let dir = try makeTempDir("py"); defer { removeDir(dir) }
        var rng = TestRNG(seed: 31)
        let w = 23, h = 11
        // Smooth-ish content so libpng's adaptive filters pick several filter types.
        let rgb = RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { i in UInt8((i * 7 + Int(rng.byte() % 4)) & 255) })
        let gray = GrayImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in rng.byte() })
        let labels = LabelMap(width: w, height: h, pixels: (0..<(w * h)).map { i in UInt8((i / 5) % 19) })
        var files: [(String, [UInt8])] = []
        for (name, c) in [("fast", PNGCompression.fast), ("small", .small)] {
            try PNG.write(rgb, to: dir + "/rgb-\(name).png", compression: c); files.append(("rgb-\(name).png", rgb.pixels))
            try PNG.write(gray, to: dir + "/gray-\(name).png", compression: c); files.append(("gray-\(name).png", gray.pixels))
            try PNG.writeIndexed(labels, palette: .cityscapes19, to: dir + "/idx-\(name).png", compression: c)
            files.append(("idx-\(name).png", labels.pixels))
        }
        for (f, raw) in files { try Data(raw).write(to: URL(fileURLWithPath: dir + "/" + f + ".raw")) }
        try PythonDecodeTests.decoder.write(toFile: dir + "/decode.py", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", dir + "/decode.py"] + files.map { dir + "/" + $0.0 }
        let pipe = Pipe(), errPipe = Pipe()
        p.standardOutput = pipe; p.standardError = errPipe
        try p.run(); p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "python failed: \(err)")
        let lines = out.split(separator: "\n")
        #expect(lines.count == files.count && lines.allSatisfy { $0.hasPrefix("ok ") }, "seed 31: \(out)")
    }
}
