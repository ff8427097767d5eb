import Foundation
@testable import UnsegImaging

/// SplitMix64: a tiny seeded generator for test inputs (the test target depends only on
/// UnsegImaging, so it cannot use UnsegLinAlg's SeededRandom).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next() >> 56) }
    mutating func int(below n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func double() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// A fresh empty temporary directory for one test.
func makeTempDir(_ tag: String) throws -> String {
    let dir = NSTemporaryDirectory() + "unseg-imaging-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func removeDir(_ dir: String) { try? FileManager.default.removeItem(atPath: dir) }

/// Cityscapes' 27 classes of the unsupervised segmentation protocol.
let cityscapes27Names = [
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail",
    "bridge", "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train",
    "motorcycle", "bicycle",
]

let cityscapes19Names = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]

/// A synthetic street scene (sky, buildings, road, sidewalk, a car, a pole) and its labels in
/// Cityscapes trainIds. Deterministic.
func syntheticStreet(width: Int = 320, height: Int = 200) -> (RGBImage, LabelMap) {
    var img = RGBImage(width: width, height: height)
    var lab = GrayImage(width: width, height: height, fill: 10)  // sky
    var rng = TestRNG(seed: 7)
    for y in 0..<height {
        for x in 0..<width {
            let noise = Int(rng.byte() % 16) - 8
            func c(_ v: Int) -> UInt8 { UInt8(min(max(v + noise, 0), 255)) }
            let horizon = height * 55 / 100
            var color: (Int, Int, Int)
            var id: UInt8
            if y >= horizon {
                let sidewalkEdge = horizon + (y - horizon) / 3
                if x < width / 6 - (y - horizon) / 2 || y < sidewalkEdge && x < width / 4 {
                    color = (170, 160, 150); id = 1
                } else { color = (85, 85, 90); id = 0 }
            } else if (x / 40) % 3 != 2 && y > height / 8 + (x / 40 % 2) * 20 {
                color = (120, 100, 90 + (x / 40) * 5); id = 2
            } else if (x / 40) % 3 == 2 && y > height / 3 {
                color = (60, 120, 50); id = 8
            } else {
                color = (120, 170, 230 - y / 2); id = 10
            }
            img[x, y] = RGB(c(color.0), c(color.1), c(color.2))
            lab[x, y] = id
        }
    }
    // A car and a pole.
    let cx = width / 2, cy = height * 70 / 100
    for y in cy..<(cy + height / 8) { for x in cx..<(cx + width / 5) { img[x, y] = RGB(30, 40, 140); lab[x, y] = 13 } }
    for y in (height / 4)..<(height * 80 / 100) { for x in (width * 80 / 100)..<(width * 80 / 100 + 4) {
        img[x, y] = RGB(150, 150, 150); lab[x, y] = 5 } }
    // An ignore region at the bottom (the ego vehicle).
    for y in (height - 12)..<height { for x in 0..<width { lab[x, y] = 255 } }
    return (img, lab)
}

/// A plausible row-stochastic-ish confusion matrix in counts: strong diagonal, confusions
/// between neighbouring classes, a few classes never predicted. Seeded.
func syntheticConfusion(classes n: Int, seed: UInt64) -> [[Double]] {
    var rng = TestRNG(seed: seed)
    var m = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
    for i in 0..<n {
        let total = 1000.0 + Double(rng.int(below: 9000))
        let acc = 0.3 + 0.65 * rng.double()
        m[i][i] = (total * acc).rounded()
        let rest = total - m[i][i]
        for _ in 0..<3 {
            let j = (i + 1 + rng.int(below: max(1, n - 1))) % n
            m[i][j] += (rest / 3).rounded()
        }
    }
    return m
}
