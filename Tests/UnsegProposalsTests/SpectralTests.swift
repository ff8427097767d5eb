import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegProposals
import UnsegFixtures

@Suite struct SpectralTests {
    // Same planted data as the PriMaPs test (C = 64). k-means with as many segments as regions;
    // the surround (region 0) touches the border most and becomes background. IoU 0.9 allows a
    // few boundary cells to be absorbed by a neighbour.
    @Test(arguments: [UInt64(1), 2, 3])
    func plantedRegionsAreRecovered(seed: UInt64) throws {
        let (f, map) = PlantedFeatures.make(height: 16, width: 16, channels: 64, regions: 4, seed: seed)
        let p = try Spectral.propose(features: f, height: 16, width: 16,
                                     config: SpectralConfig(mode: .segments(count: 4), eigenvectors: 3, seed: 1))
        for r in 0..<4 {
            let (iou, label) = bestIoU(region: r, regionMap: map, labels: p.labels)
            #expect(iou >= 0.9, "seed \(seed): region \(r) best IoU \(iou) with label \(label)")
        }
        #expect(bestIoU(region: 0, regionMap: map, labels: p.labels).label == 0, "seed \(seed): surround should be background")
        #expect(p.maskCount == 3)
        // segments are numbered by first appearance in row-major order
        var order: [UInt8] = []
        for l in p.labels where l != 0 && !order.contains(l) { order.append(l) }
        #expect(order == [1, 2, 3], "seed \(seed)")
    }

    @Test(arguments: [UInt64(4), 5])
    func fiedlerForeground(seed: UInt64) throws {
        let (f, map) = PlantedFeatures.make(height: 14, width: 14, channels: 64, regions: 2, seed: seed)
        let p = try Spectral.propose(features: f, height: 14, width: 14, config: SpectralConfig(mode: .foreground))
        #expect(p.maskCount == 1)
        let (iou, label) = bestIoU(region: 1, regionMap: map, labels: p.labels)
        #expect(iou >= 0.9 && label == 1, "seed \(seed): rectangle IoU \(iou) with label \(label)")
    }

    /// v_0 is constant, the v are D-orthonormal ((D - W) v = lambda D v generalised problem), and the
    /// sign rule holds. Float eigenvectors of a 144x144 matrix: 1e-3 absolute is generous.
    @Test func eigenvectorProperties() throws {
        let (f, _) = PlantedFeatures.make(height: 12, width: 12, channels: 32, regions: 3, seed: 8)
        let n = 144, k = 5
        let v = try #require(try Spectral.eigenvectors(features: f, count: k))
        let fn = f.rowNormalized()
        var w = BLAS.matmul(fn, fn, transB: true)
        let mx = w.data.max()!
        w.data = w.data.map { max($0, 0) / mx }
        let d = (0..<n).map { i in (0..<n).reduce(Float(0)) { $0 + w[i, $1] } }
        let v0 = v.row(0)
        #expect(v0.max()! - v0.min()! < 1e-3 * abs(v0[0]), "seed 8: v0 not constant")
        for a in 0...k {
            for b in 0...k {
                var dot: Float = 0
                for i in 0..<n { dot += v[a, i] * d[i] * v[b, i] }
                expectClose(Double(dot), Double((a == b ? 1 : 0)), abs: 1e-3, "seed 8: v\(a)^T D v\(b) = \(dot)")
            }
            let frac = Double(v.row(a).filter { $0 > 0 }.count) / Double(n)
            #expect(frac <= 0.5 || frac == 1, "seed 8: v\(a) positive fraction \(frac)")
        }
    }

    @Test func numberingByHand() {
        // 3x4 grid; cluster 7 holds most border cells -> background; others by first appearance.
        let assign = [7, 7, 7, 7,
                      7, 2, 0, 7,
                      7, 2, 0, 7].map { $0 == 7 ? 3 : $0 }
        let (labels, k) = Spectral.numberSegments(assign, height: 3, width: 4)
        #expect(k == 2)
        #expect(labels == [0, 0, 0, 0, 0, 1, 2, 0, 0, 1, 2, 0])
    }

    @Test func edgeCasesAndDeterminism() throws {
        let zero = try Spectral.propose(features: Matrix(rows: 16, cols: 4), height: 4, width: 4)
        #expect(zero.maskCount == 0 && zero.labels.allSatisfy { $0 == 0 })
        let one = try Spectral.propose(features: Matrix([[1, 2]]), height: 1, width: 1,
                                       config: SpectralConfig(mode: .segments(count: 1)))
        #expect(one.maskCount == 0 && one.labels == [0])
        #expect(throws: ProposalError.self) {
            try Spectral.propose(features: Matrix(rows: 4, cols: 3, repeating: 1), height: 2, width: 2,
                                 config: SpectralConfig(mode: .segments(count: 5)))
        }
        let (f, _) = PlantedFeatures.make(height: 12, width: 12, channels: 16, regions: 5, seed: 9)
        let cfg = SpectralConfig(mode: .segments(count: 6), eigenvectors: 8, seed: 3)
        let a = try Spectral.propose(features: f, height: 12, width: 12, config: cfg)
        let b = try Spectral.propose(features: f, height: 12, width: 12, config: cfg)
        #expect(a == b, "seed 9 / k-means seed 3")
        // one-hot channels
        for i in 0..<144 { #expect((0..<a.channels.rows).reduce(Float(0)) { $0 + a.channels[$1, i] } == 1) }
    }
}
