import Testing
import UnsegFixtures
import UnsegLinAlg
@testable import UnsegProposals

/// Deep Spectral Methods' adaptive segment count: the largest eigengap.
@Suite struct EigengapTests {
    @Test func countIsTheIndexAfterTheLargestGap() {
        #expect(Spectral.eigengapCount([0, 0.01, 0.02, 0.5, 0.55]) == 3)
        #expect(Spectral.eigengapCount([0, 0.3, 0.31, 0.32]) == 2, "the gap l1 - l0 is not considered: one segment is no segmentation")
        #expect(Spectral.eigengapCount([0, 0.25, 0.5, 0.75, 1]) == 2, "ties: the first")
        #expect(Spectral.eigengapCount([0, 0.5]) == 2)
    }

    /// On planted features with R well separated regions the adaptive count finds R segments (2, 3
    /// and 4 regions on a 16x16 grid; at 5 the planted rectangles get too small for a clear gap).
    @Test(arguments: [2, 3, 4])
    func plantedRegionsGiveTheirCount(regions: Int) throws {
        let (f, _) = PlantedFeatures.make(height: 16, width: 16, channels: 32, regions: regions, noise: 0.2, seed: 40 + UInt64(regions))
        let pairs = try #require(try Spectral.eigenpairs(features: f, count: 10, solver: .dense))
        #expect(Spectral.eigengapCount(pairs.values) == regions, "eigenvalues \(pairs.values)")
        let p = try Spectral.propose(features: f, height: 16, width: 16, config: SpectralConfig(mode: .adaptiveSegments, eigenvectors: 10))
        #expect(p.maskCount == regions - 1, "one of the \(regions) segments is background")
    }
}
