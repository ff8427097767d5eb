@_exported import struct UnsegLinAlg.RGB
/// A label protocol: how raw dataset label ids become evaluation classes.
///
/// `rawToClass` is a 256-entry look-up table from raw UInt8 ids to class ids in
/// `0..<classCount`, 255 meaning ignore. `classNames` and `palette` have one entry per
/// class. Known protocols: `cityscapes27`, `cocostuff27`, `potsdam3`; `generic(classCount:)`
/// serves stores with no known protocol (identity on `0..<n`, names `class0...`).
public struct LabelProtocol: Equatable, Sendable {
    /// Protocol name, e.g. `cityscapes27`.
    public let name: String
    /// One name per class (`[classCount]`).
    public let classNames: [String]
    /// One display colour per class (`[classCount]`).
    public let palette: [RGB]
    /// Raw id -> class id, 255 = ignore (`[256]`).
    public let rawToClass: [UInt8]

    /// Number of classes.
    public var classCount: Int { classNames.count }

    /// Makes a protocol; a mismatch of the table sizes is a programming error.
    public init(name: String, classNames: [String], palette: [RGB], rawToClass: [UInt8]) {
        precondition(palette.count == classNames.count && rawToClass.count == 256
                     && rawToClass.allSatisfy { $0 == 255 || Int($0) < classNames.count },
                     "protocol \(name): \(classNames.count) names, \(palette.count) colours, \(rawToClass.count) LUT entries (need 256, values < n or 255)")
        self.name = name
        self.classNames = classNames
        self.palette = palette
        self.rawToClass = rawToClass
    }

    /// Maps raw label ids to class ids through `rawToClass` (`[pixelCount]` -> same).
    public func mapLabels(_ raw: [UInt8]) -> [UInt8] {
        rawToClass.withUnsafeBufferPointer { lut in raw.map { lut[Int($0)] } }
    }

    /// Names of the known protocols.
    public static let knownNames = ["cityscapes27", "cocostuff27", "potsdam3"]

    /// Looks a protocol up by name: a known name, or `generic<N>` (e.g. `generic21`).
    ///
    /// Errors: `KernelError` listing the known names.
    public static func named(_ name: String) throws -> LabelProtocol {
        switch name {
        case "cityscapes27": return cityscapes27
        case "cocostuff27": return cocostuff27
        case "potsdam3": return potsdam3
        default:
            if name.hasPrefix("generic"), let n = Int(name.dropFirst("generic".count)), (1...255).contains(n) {
                return try generic(classCount: n)
            }
            throw KernelError(
                "unknown label protocol '\(name)'; known: \(knownNames.joined(separator: ", ")), or genericN for N classes (1...255) with identity ids")
        }
    }

    /// A protocol for `classCount` classes with identity ids (`0..<n` -> same, else
    /// ignore), names `class0, class1, ...`, and the PASCAL VOC bit-interleaved palette
    /// (deterministic, distinct for all 256 ids; equals VOC's colours for 21 classes).
    ///
    /// Errors: `KernelError` unless `classCount` is in `1...255`.
    public static func generic(classCount: Int) throws -> LabelProtocol {
        guard (1...255).contains(classCount) else {
            throw KernelError("generic protocol: classCount=\(classCount) must be in 1...255")
        }
        var lut = [UInt8](repeating: 255, count: 256)
        for c in 0..<classCount { lut[c] = UInt8(c) }
        return LabelProtocol(name: "generic\(classCount)", classNames: (0..<classCount).map { "class\($0)" },
                             palette: (0..<classCount).map(vocColor), rawToClass: lut)
    }

    /// Colour `i` of the PASCAL VOC palette (bits of `i` spread over R, G, B, high bits first).
    public static func vocColor(_ i: Int) -> RGB {
        var r = 0, g = 0, b = 0, c = i
        for j in 0..<8 {
            r |= (c & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        }
        return RGB(UInt8(r), UInt8(g), UInt8(b))
    }

    // MARK: cityscapes27

    /// Cityscapes `labelIds` 7...33 -> classes 0...26 (`class = labelId - 7`), all else
    /// ignore. Colours are the official Cityscapes ones of those labelIds (pole and
    /// polegroup share (153,153,153) officially, kept as is).
    public static let cityscapes27: LabelProtocol = {
        let names = ["road", "sidewalk", "parking", "rail track", "building", "wall", "fence",
                     "guard rail", "bridge", "tunnel", "pole", "polegroup", "traffic light",
                     "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                     "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle"]
        let palette = [RGB(128, 64, 128), RGB(244, 35, 232), RGB(250, 170, 160), RGB(230, 150, 140),
                       RGB(70, 70, 70), RGB(102, 102, 156), RGB(190, 153, 153), RGB(180, 165, 180),
                       RGB(150, 100, 100), RGB(150, 120, 90), RGB(153, 153, 153), RGB(153, 153, 153),
                       RGB(250, 170, 30), RGB(220, 220, 0), RGB(107, 142, 35), RGB(152, 251, 152),
                       RGB(70, 130, 180), RGB(220, 20, 60), RGB(255, 0, 0), RGB(0, 0, 142),
                       RGB(0, 0, 70), RGB(0, 60, 100), RGB(0, 0, 90), RGB(0, 0, 110),
                       RGB(0, 80, 100), RGB(0, 0, 230), RGB(119, 11, 32)]
        var lut = [UInt8](repeating: 255, count: 256)
        for id in 7...33 { lut[id] = UInt8(id - 7) }
        return LabelProtocol(name: "cityscapes27", classNames: names, palette: palette, rawToClass: lut)
    }()

    // MARK: cocostuff27

    /// Fine COCO-Stuff ids (0-based, 0...181) of each of the 27 coarse classes, as in
    /// the spec's table. Every fine id appears exactly once (checked by a test).
    public static let cocoStuffFineIds: [[Int]] = [
        Array(71...76), Array(77...82), Array(51...60), Array(61...70), Array(83...90),
        Array(43...50), Array(25...32), Array(15...24), Array(9...14), [0], Array(33...42), Array(1...8),
        [101, 102],
        [100] + Array(113...117),
        [120, 121, 152, 169],
        [97, 106, 107, 109, 111, 122, 129, 132, 155, 160, 164],
        [99, 131, 138, 142],
        [91, 92, 103, 104, 108, 130, 136, 140, 151, 166, 167],
        Array(170...176),
        [179, 180],
        [94, 95, 127, 150, 157, 165],
        [110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158],
        [93, 96, 118, 123, 128, 133, 141, 162, 168],
        [105, 156],
        [126, 134, 149, 159, 161, 181],
        [98, 112, 137, 145, 163],
        [119, 147, 154, 177, 178],
    ]

    /// COCO-Stuff fine ids 0...181 -> 27 coarse classes (STEGO's split), 182...255 ignore.
    /// The palette is a fixed hand-picked set of 27 distinct colours.
    public static let cocostuff27: LabelProtocol = {
        let names = ["electronic", "appliance", "food (things)", "furniture (things)", "indoor",
                     "kitchen", "accessory", "animal", "outdoor", "person", "sports", "vehicle",
                     "ceiling", "floor", "food (stuff)", "furniture (stuff)", "rawmaterial",
                     "textile", "wall", "window", "building", "ground", "plant", "sky", "solid",
                     "structural", "water"]
        let palette = [RGB(31, 119, 180), RGB(174, 199, 232), RGB(255, 127, 14), RGB(255, 187, 120),
                       RGB(44, 160, 44), RGB(152, 223, 138), RGB(255, 0, 255), RGB(255, 152, 150),
                       RGB(148, 103, 189), RGB(220, 20, 60), RGB(140, 86, 75), RGB(0, 0, 142),
                       RGB(227, 119, 194), RGB(127, 127, 127), RGB(188, 189, 34), RGB(219, 219, 141),
                       RGB(23, 190, 207), RGB(158, 218, 229), RGB(102, 102, 156), RGB(250, 170, 30),
                       RGB(70, 70, 70), RGB(81, 0, 81), RGB(107, 142, 35), RGB(70, 130, 180),
                       RGB(190, 153, 153), RGB(0, 80, 100), RGB(0, 160, 255)]
        var lut = [UInt8](repeating: 255, count: 256)
        for (coarse, ids) in cocoStuffFineIds.enumerated() {
            for id in ids { lut[id] = UInt8(coarse) }
        }
        return LabelProtocol(name: "cocostuff27", classNames: names, palette: palette, rawToClass: lut)
    }()

    // MARK: potsdam3

    /// ISPRS Potsdam 6 -> 3 classes: {0 road, 4 car} -> 0, {1 building, 5 clutter} -> 1,
    /// {2 low vegetation, 3 tree} -> 2, anything else ignore.
    public static let potsdam3: LabelProtocol = {
        var lut = [UInt8](repeating: 255, count: 256)
        lut[0] = 0; lut[4] = 0
        lut[1] = 1; lut[5] = 1
        lut[2] = 2; lut[3] = 2
        return LabelProtocol(name: "potsdam3", classNames: ["road/car", "building/clutter", "vegetation"],
                             palette: [RGB(128, 128, 128), RGB(0, 0, 255), RGB(0, 200, 0)], rawToClass: lut)
    }()
}
