import Foundation
import Testing
import UnsegLinAlg
@testable import UnsegPipeline
import UnsegProposals
import UnsegStore
import UnsegCore
import UnsegFixtures

/// A store of `n` images with planted feature regions (`PlantedFeatures`, 16 channels) on a
/// `grid x grid` feature grid, patch 4, RGB images coloured by region (plus noise) and labels = region.
@discardableResult
func writeRegionStore(_ path: String, n: Int = 5, grid: Int = 8, regions: Int = 4, images: Bool = true,
                       seed: UInt64 = 10) throws -> [[Int]] {
    let patch = 4, size = grid * patch
    let meta = StoreMetadata(backbone: "test", patchSize: patch, dataset: "planted", split: "val")
    let w = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: grid, gridWidth: grid, channels: 16,
                                   options: StoreWriteOptions(featureType: .float32, writeImages: images, writeLabels: true))
    var maps: [[Int]] = []
    var rng = SeededRandom(seed: seed)
    let colours: [[Int]] = [[40, 40, 40], [220, 60, 60], [60, 200, 60], [60, 60, 220], [220, 220, 60], [200, 60, 200]]
    for i in 0..<n {
        let (f, map) = PlantedFeatures.make(height: grid, width: grid, channels: 16, regions: regions, noise: 0.3, seed: seed + UInt64(i))
        maps.append(map)
        var img = [UInt8](repeating: 0, count: size * size * 3), lab = [UInt8](repeating: 0, count: size * size)
        for y in 0..<size { for x in 0..<size {
            let r = map[(y / patch) * grid + x / patch]
            lab[y * size + x] = UInt8(r)
            for c in 0..<3 { img[(y * size + x) * 3 + c] = UInt8(max(0, min(255, colours[r % colours.count][c] + Int(8 * rng.gaussian())))) }
        } }
        try w.write(i, features: f, image: images ? img : nil, labels: lab, name: "img/\(i)")
    }
    try w.commit()
    return maps
}

/// All `/masks` (and `/refined`) bytes of a proposals file, image by image.
func proposalBytes(_ path: String, store: String) throws -> ([[UInt8]], [[UInt8]?]) {
    let s = try FeatureStore(path: store)
    let p = try ProposalsFile(path: path, store: s)
    return (try (0..<p.count).map { try p.masks($0) }, try (0..<p.count).map { try p.refined($0) })
}

/// Majority-label purity of masks over labelled pixels: for each mask id (background 0 excluded),
/// the share of its pixels carrying its most frequent label, pooled over masks (pixel-weighted).
/// Labels 255 are left out. Returns (purity, masked pixels counted).
func majorityPurity(masks: [[UInt8]], labels: [[UInt8]]) -> (Double, Int) {
    var pure = 0, total = 0
    for (m, y) in zip(masks, labels) {
        var counts: [Int: [Int]] = [:]
        for (a, b) in zip(m, y) where a != 0 && b != 255 {
            counts[Int(a), default: [Int](repeating: 0, count: 256)][Int(b)] += 1
        }
        for c in counts.values { pure += c.max()!; total += c.reduce(0, +) }
    }
    return (total == 0 ? 0 : Double(pure) / Double(total), total)
}

@Suite struct ProposeJobTests {
    @Test func writesMasksWithAttributesAndIsDeterministicAcrossThreadsAndBlocks() throws {
        let store = scratch("pj-store.h5")
        try writeRegionStore(store)
        let a = scratch("pj-a.h5"), b = scratch("pj-b.h5"), c = scratch("pj-c.h5")
        let s1 = try ProposeJob.run(storePath: store, outputPath: a, options: ProposeOptions(threads: 1))
        _ = try ProposeJob.run(storePath: store, outputPath: b, options: ProposeOptions(threads: 2))
        _ = try ProposeJob.run(storePath: store, outputPath: c, options: ProposeOptions(threads: 2, blockSize: 3))
        let (ma, ra) = try proposalBytes(a, store: store)
        #expect(ra.allSatisfy { $0 == nil }, "no /refined without refinement")
        #expect(try proposalBytes(b, store: store).0 == ma, "seed 10: 1 vs 2 threads differ")
        #expect(try proposalBytes(c, store: store).0 == ma, "seed 10: block size 3 differs")
        #expect(ma.count == 5 && ma.allSatisfy { $0.count == 64 })
        for (i, m) in ma.enumerated() {
            let k = s1.maskCounts[i]
            #expect(m.allSatisfy { Int($0) <= k }, "image \(i): mask values must be in 0...\(k)")
            #expect(k >= 1)
        }
        let f = try LabelMapsFile(path: a, expect: .proposals).attributes
        #expect(try f.string("format") == "unseg.proposals")
        #expect(try f.string("method") == "primaps" && f.string("refine") == "none")
        #expect(try f.double("threshold") == 0.4 && f.double("coverage") == 0.95)
        #expect(try f.string("solver") == "lanczos" && f.string("store") == store)
        #expect(try f.int("mask_count_max") == s1.maskCounts.max()!)
        #expect(try f.int("mask_count_total") == s1.maskCounts.reduce(0, +))
        #expect(try f.int("images") == 5)
    }

    @Test(arguments: [RefinementMethod.guided, .crf])
    func refinementWritesImageResolutionMaps(_ method: RefinementMethod) throws {
        let store = scratch("pj-ref-store-\(method).h5"), out = scratch("pj-ref-\(method).h5")
        let regions = try writeRegionStore(store, n: 3)
        _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(refine: method, threads: 2))
        let s = try FeatureStore(path: store)
        let p = try ProposalsFile(path: out, store: s)
        #expect(p.hasRefined && p.refine == method.rawValue && p.method == "primaps")
        let f = try LabelMapsFile(path: out, expect: .proposals).attributes
        if method == .crf { #expect(try f.int("crf_iterations") == 10 && f.double("crf_bilateral_srgb") == 3) }
        if method == .guided { #expect(try f.int("guided_radius") == 9 && f.double("guided_eps") == 0.001) }
        for i in 0..<3 {
            let r = try #require(try p.refined(i))
            #expect(r.count == 32 * 32)
            #expect(try p.labelResolutionMasks(i, store: s) == r)
            let k = Int(try p.masks(i).max()!)
            #expect(r.allSatisfy { Int($0) <= max(k, Int(try! f.int("mask_count_max"))) })
            // Refinement follows the coloured regions: the refined map is pure w.r.t. the planted
            // regions on nearly all masked pixels (colours differ by > 100 per channel, noise 8).
            let labels = try s.labels(i)
            let (purity, _) = majorityPurity(masks: [r], labels: [labels])
            let up = NearestResampler.resample(try p.masks(i), height: 8, width: 8, toHeight: 32, toWidth: 32)
            let (coarse, _) = majorityPurity(masks: [up], labels: [labels])
            // Measured (seeds 10-12): feature-resolution purity 0.83-0.87 (8x8 grids, the median
            // filter blurs small rectangles), refined 0.83-0.96 (guided) / 0.86-0.94 (crf). The
            // refinement must not make the masks less faithful to the regions by more than 0.05
            // and stays above 0.75.
            #expect(purity > 0.75 && purity >= coarse - 0.05,
                    "seed \(10 + i) \(method): refined purity \(purity) vs unrefined \(coarse), regions \(Set(regions[i]))")
        }
    }

    @Test func labelResolutionMasksUpsampleByNearestWithoutRefinement() throws {
        let store = scratch("pj-up-store.h5"), out = scratch("pj-up.h5")
        try writeRegionStore(store, n: 2)
        _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(threads: 1))
        let s = try FeatureStore(path: store)
        let p = try ProposalsFile(path: out, store: s)
        for i in 0..<2 {
            let m = try p.masks(i), up = try p.labelResolutionMasks(i, store: s)
            #expect(up.count == 32 * 32)
            for y in 0..<32 { for x in 0..<32 { #expect(up[y * 32 + x] == m[(y / 4) * 8 + x / 4]) } }
        }
        #expect(NearestResampler.resample([1, 2, 3, 4], height: 2, width: 2, toHeight: 4, toWidth: 4)
                == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    }

    @Test func refinementWithoutImagesFailsBeforeWritingAnything() throws {
        let store = scratch("pj-noimg-store.h5"), out = scratch("pj-noimg.h5")
        try writeRegionStore(store, n: 2, images: false)
        for method in [RefinementMethod.crf, .guided] {
            let e = #expect(throws: StoreError.self) {
                _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(refine: method))
            }
            let msg = e?.description ?? ""
            #expect(msg.contains(store) && msg.contains("/images") && msg.contains("--refine \(method.rawValue)"), "\(msg)")
            #expect(!FileManager.default.fileExists(atPath: out), "no output file after the error")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
                .filter { $0.hasPrefix("pj-noimg.h5") }
            #expect(leftovers.isEmpty, "no temporary file left: \(leftovers)")
        }
    }

    @Test func proposalsFileNamesTheMismatch() throws {
        let store = scratch("pj-mm-store.h5"), other = scratch("pj-mm-other.h5"), small = scratch("pj-mm-small.h5")
        try writeRegionStore(store, n: 3)
        try writeRegionStore(other, n: 2)
        try writeRegionStore(small, n: 3, grid: 6)
        let out = scratch("pj-mm.h5")
        _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(threads: 1))
        let e1 = #expect(throws: StoreError.self) { _ = try ProposalsFile(path: out, store: FeatureStore(path: other)) }
        #expect(e1?.description.contains("\(out):/masks: has 3 images but the store \(other) has 2") == true, "\(String(describing: e1))")
        let e2 = #expect(throws: StoreError.self) { _ = try ProposalsFile(path: out, store: FeatureStore(path: small)) }
        #expect(e2?.description.contains("maps are 8x8 but the store \(small) needs 6x6") == true, "\(String(describing: e2))")
        let e3 = #expect(throws: StoreError.self) { _ = try ProposalsFile(path: store, store: FeatureStore(path: store)) }
        #expect(e3?.description.contains("not 'unseg.proposals'") == true, "\(String(describing: e3))")
        let p = try ProposalsFile(path: out, store: FeatureStore(path: store))
        let e4 = #expect(throws: StoreError.self) { _ = try p.labelResolutionMasks(0, store: FeatureStore(path: small)) }
        #expect(e4?.description.contains("use the proposals made from this store") == true)
        #expect(throws: StoreError.self) { _ = try p.masks(3) }
    }

    @Test func spectralMethodAndBadOptions() throws {
        let store = scratch("pj-sp-store.h5"), out = scratch("pj-sp.h5")
        try writeRegionStore(store, n: 2)
        var o = ProposeOptions(method: .spectral, threads: 2)
        o.spectral.mode = .segments(count: 4)
        let s = try ProposeJob.run(storePath: store, outputPath: out, options: o)
        #expect(s.maskCounts.allSatisfy { $0 <= 3 })
        let f = try LabelMapsFile(path: out, expect: .proposals).attributes
        #expect(try f.string("method") == "spectral" && f.int("segments") == 4)
        o.spectral.mode = .segments(count: 100)
        let e = #expect(throws: StoreError.self) { _ = try ProposeJob.run(storePath: store, outputPath: scratch("pj-sp2.h5"), options: o) }
        #expect(e?.description.contains("64 cells") == true, "\(String(describing: e))")
        #expect(throws: ProposeOptionError.self) { _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(threads: 0)) }
        #expect(throws: (any Error).self) {
            _ = try ProposeJob.run(storePath: store, outputPath: out, options: ProposeOptions(primaps: PriMaPsConfig(threshold: 2)))
        }
    }

    /// Real data: one VOC photo with EfficientNet-Lite0 hypercolumn features (Tests/Fixtures).
    @Test func vocFixtureMasksAreReasonablyPure() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/voc-effnet.h5").path
        let out = scratch("pj-voc.h5")
        let summary = try ProposeJob.run(storePath: fixture, outputPath: out, options: ProposeOptions(threads: 2))
        let s = try FeatureStore(path: fixture)
        let p = try ProposalsFile(path: out, store: s)
        let masks = try p.labelResolutionMasks(0, store: s), labels = try s.labels(0)
        let (purity, counted) = majorityPurity(masks: [masks], labels: [labels])
        // Chance level: the share of the most frequent class among the labelled pixels.
        var hist = [Int](repeating: 0, count: 256)
        for y in labels where y != 255 { hist[Int(y)] += 1 }
        let chance = Double(hist.max()!) / Double(hist.reduce(0, +))
        print("VOC fixture: \(summary.maskCounts[0]) masks, majority purity \(purity) over \(counted) masked px, chance \(chance)")
        // Measured (release, lanczos): 88 masks, purity 0.784 over 51,520 masked pixels (50.3% of
        // the labelled pixels; the rest is background after the median filter), chance 0.347.
        // 0.70 leaves room for masks shifting with BLAS rounding on other machines and is still
        // twice chance: the masks follow the objects of the photo.
        #expect(purity >= 0.70 && purity > 2 * chance, "VOC fixture: purity \(purity), chance \(chance)")
        #expect(Double(counted) > 0.4 * Double(labels.filter { $0 != 255 }.count), "masks cover \(counted) labelled px")
    }
}
