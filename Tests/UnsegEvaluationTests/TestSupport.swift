import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegEvaluation


/// A fresh temporary directory (removed by the caller).
func makeTempDirectory() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unseg-eval-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Best total over all injective maps of the smaller dimension into the larger one
/// (exhaustive; fine up to 7x7 = 5040 permutations).
func bruteForceOptimum(_ cost: [Double], rows: Int, cols: Int, maximize: Bool) -> Double {
    let transpose = rows > cols
    let nr = transpose ? cols : rows, nc = transpose ? rows : cols
    func at(_ i: Int, _ j: Int) -> Double { transpose ? cost[j * cols + i] : cost[i * cols + j] }
    var used = [Bool](repeating: false, count: nc)
    var best = maximize ? -Double.infinity : Double.infinity
    func go(_ i: Int, _ acc: Double) {
        if i == nr {
            best = maximize ? max(best, acc) : min(best, acc)
            return
        }
        for j in 0..<nc where !used[j] {
            used[j] = true
            go(i + 1, acc + at(i, j))
            used[j] = false
        }
    }
    go(0, 0)
    return best
}

/// Checks that `a` is a valid assignment for a rows x cols problem: min(rows, cols)
/// pairs, each row and column used at most once, the two maps consistent, `total` right.
func checkValid(_ a: Assignment, _ cost: [Double], rows: Int, cols: Int, context: String) {
    let m = min(rows, cols)
    #expect(a.rowIndices.count == m && a.colIndices.count == m, "pair count, \(context)")
    #expect(Set(a.rowIndices).count == m && Set(a.colIndices).count == m, "injective, \(context)")
    #expect(a.rowIndices == a.rowIndices.sorted(), "rows ascending, \(context)")
    #expect(a.columnForRow.count == rows && a.rowForColumn.count == cols, "map sizes, \(context)")
    var total = 0.0
    for (i, j) in zip(a.rowIndices, a.colIndices) {
        #expect(i >= 0 && i < rows && j >= 0 && j < cols, "index range, \(context)")
        #expect(a.columnForRow[i] == j && a.rowForColumn[j] == i, "maps consistent, \(context)")
        total += cost[i * cols + j]
    }
    #expect(a.columnForRow.filter { $0 >= 0 }.count == m, "columnForRow count, \(context)")
    #expect(total == a.total, "total, \(context)")
}

/// Seeded synthetic segmentation: `imageCount` images of `pixels` pixels with labels
/// in `0..<n` (plus some ignore) and predictions that follow `labelToCluster` with
/// probability `pCorrect`, else a random cluster in `0..<k`.
func syntheticImages(seed: UInt64, imageCount: Int, pixels: Int, k: Int, n: Int,
                     pCorrect: Double, ignoreRate: Double) -> (pred: [UInt8], lab: [UInt8]) {
    var rng = SeededRandom(seed: seed)
    let mapping = (0..<n).map { _ in rng.int(below: k) }
    var pred = [UInt8](repeating: 0, count: imageCount * pixels)
    var lab = [UInt8](repeating: 0, count: imageCount * pixels)
    for t in 0..<(imageCount * pixels) {
        // Class frequencies skewed so classes differ in size.
        let c = min(n - 1, Int(Double(n) * rng.double() * rng.double() * 1.999))
        lab[t] = rng.bernoulli(ignoreRate) ? 255 : UInt8(c)
        pred[t] = rng.bernoulli(pCorrect) ? UInt8(mapping[c]) : UInt8(rng.int(below: k))
    }
    return (pred, lab)
}
