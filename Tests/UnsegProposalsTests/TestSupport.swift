import UnsegLinAlg
@testable import UnsegProposals

/// IoU of planted region `r` with the label value (any of 0...max) that overlaps it best.
func bestIoU(region r: Int, regionMap: [Int], labels: [UInt8]) -> (iou: Double, label: Int) {
    let maxLabel = Int(labels.max() ?? 0)
    var best = (0.0, -1)
    for l in 0...maxLabel {
        var inter = 0, uni = 0
        for i in 0..<labels.count {
            let a = regionMap[i] == r, b = Int(labels[i]) == l
            if a && b { inter += 1 }
            if a || b { uni += 1 }
        }
        let iou = uni > 0 ? Double(inter) / Double(uni) : 0
        if iou > best.0 { best = (iou, l) }
    }
    return best
}

/// Random matrix with N(0, 1) entries.
func gaussianMatrix(rows: Int, cols: Int, seed: UInt64) -> Matrix {
    var rng = SeededRandom(seed: seed)
    return Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in rng.gaussian() })
}
