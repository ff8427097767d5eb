import Foundation
import Testing
import UnsegClustering
import UnsegCore
import UnsegLinAlg
@testable import UnsegPipeline
@testable import UnsegStore
import UnsegSynthetic

/// A peer's store (`unseg-extract --head`; here `Synthesize.writePeerStandInStore`, the stand-in):
/// the code in /features, the backbone's features in /features_backbone, the cluster probe in
/// /peer_clusters. Masks come from the backbone; PriMaPs-EM starts from the probe with gains 1.
@Suite struct PeerStoreTests {
    static let config = SyntheticConfig(imageCount: 6, imageSize: 64, patchSize: 8, channels: 32, classes: 4, seed: 5, split: "train")
    static let dim = 8

    /// A stand-in peer store and the plain store of the same corpus (its /features = the peer's backbone).
    static func stores(_ tag: String, threads: Int = 2) throws -> (peer: String, plain: String) {
        let peer = scratch("peer-\(tag).h5"), plain = scratch("peer-plain-\(tag).h5")
        for p in [peer, plain] { try? FileManager.default.removeItem(atPath: p) }
        try Synthesize.writePeerStandInStore(config: config, dim: dim, path: peer, threads: threads)
        try Synthesize.writeStore(config: config, path: plain, threads: threads)
        return (peer, plain)
    }

    @Test func theMasksViewServesTheBackboneAndBothViewsShareTheFingerprint() throws {
        let (peer, plain) = try Self.stores("views")
        let code = try FeatureStore(path: peer), masks = try FeatureStore(path: peer, view: .masks), base = try FeatureStore(path: plain)
        #expect(code.layout.channels == Self.dim && code.layout.backboneChannels == 32 && code.featuresName == "/features")
        #expect(masks.layout.channels == 32 && masks.featuresName == "/features_backbone")
        #expect(try code.fingerprint == masks.fingerprint, "outputs made from either view belong to the same store")
        for i in 0..<Self.config.imageCount { #expect(try masks.features(i) == base.features(i), "image \(i): /features_backbone is the corpus' features") }
        let clusters = try #require(try code.peerClusters())
        #expect(clusters.rows == 4 && clusters.cols == Self.dim)
        #expect(try base.peerClusters() == nil)
        // The same seed gives the same bytes, whatever the thread count.
        let one = try Self.stores("views-1", threads: 1).peer
        #expect(FileManager.default.contents(atPath: one) == FileManager.default.contents(atPath: peer))
    }

    @Test func proposalsOfAPeerStoreComeFromTheBackbone() throws {
        let (peer, plain) = try Self.stores("propose")
        let a = scratch("peer-props.h5"), b = scratch("peer-plain-props.h5")
        for p in [a, b] { try? FileManager.default.removeItem(atPath: p) }
        let s = try ProposeJob.run(storePath: peer, outputPath: a, options: ProposeOptions(threads: 2))
        _ = try ProposeJob.run(storePath: plain, outputPath: b, options: ProposeOptions(threads: 2))
        #expect(s.featuresDataset == "/features_backbone")
        let store = try FeatureStore(path: peer)
        let pa = try ProposalsFile(path: a, store: store), pb = try ProposalsFile(path: b, store: try FeatureStore(path: plain))
        for i in 0..<Self.config.imageCount { #expect(try pa.masks(i) == pb.masks(i), "image \(i)") }
        // The fit's on-the-fly masks too.
        var r = smallRecipe(classes: 4, epochs: 1)
        r.stages = [.primapsEM]
        r.proposals = .primapsUnrefined
        r.masks.primapsThreshold = 0.4   // propose's default, as the file above
        let provider = try ProposalProvider(options: FitOptions(recipe: r, storePath: peer, checkpointPath: scratch("peer-unused.h5"), threads: 2), store: store)
        let items = try StoreStream(store: store, prefetch: 0).nextBatch(Self.config.imageCount)
        #expect(items[0].features.cols == Self.dim, "the fit streams the code")
        let fly = try provider.featureMasks(for: items)
        for i in 0..<Self.config.imageCount { #expect(fly[i] == (try pa.masks(i)), "image \(i): on-the-fly masks from the backbone") }
    }

    /// Zero EM epochs from the peer's probe: `unseg test`'s momentum row predicts what the peer's
    /// cluster probe does by hand (bilinear upsampling of the code, half-pixel centres as
    /// torch's align_corners=False, cosine to each centroid, argmax), and equals the peer row.
    @Test func zeroEpochsFromThePeerAreThePeersClusterProbe() throws {
        let (peer, _) = try Self.stores("zero")
        let ck = scratch("peer-zero-ck.h5")
        try? FileManager.default.removeItem(atPath: ck)
        var r = smallRecipe(classes: 4, epochs: 0)
        r.stages = [.primapsEM]
        var o = FitOptions(recipe: r, storePath: peer, checkpointPath: ck, threads: 2)
        o.initFromPeerPath = peer
        let fit = try FitJob.run(o)
        let store = try FeatureStore(path: peer)
        let clusters = try #require(try store.peerClusters())
        #expect(fit.prototypes.directions == clusters && fit.prototypes.gains == [1, 1, 1, 1])
        #expect(fit.checkpoint.initFrom == peer + ":/peer_clusters")

        let l = store.layout
        let (h, w, H, W, c, k) = (l.gridHeight, l.gridWidth, l.imageHeight, l.imageWidth, l.channels, clusters.rows)
        func axis(_ o: Int, _ n: Int, _ big: Int) -> (Int, Int, Double) {
            let s = max(0, (Double(o) + 0.5) * Double(n) / Double(big) - 0.5)
            let i0 = min(Int(s.rounded(.down)), n - 1)
            return (i0, min(i0 + 1, n - 1), s - Double(i0))
        }
        let unit = (0..<k).map { j -> [Double] in
            let v = clusters.row(j).map(Double.init), n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return v.map { $0 / n }
        }
        var nearTies = 0, pixels = 0
        for i in 0..<l.imageCount {
            let f = try store.features(i)
            let predicted = try PredictJob.predict(model: fit.prototypes, features: f, h: h, w: w, H: H, W: W, image: nil, refine: .none)
            for y in 0..<H {
                let (y0, y1, wy) = axis(y, h, H)
                for x in 0..<W {
                    let (x0, x1, wx) = axis(x, w, W)
                    var v = [Double](repeating: 0, count: c)
                    for (cell, wt) in [(y0 * w + x0, (1 - wy) * (1 - wx)), (y0 * w + x1, (1 - wy) * wx), (y1 * w + x0, wy * (1 - wx)), (y1 * w + x1, wy * wx)] {
                        for ch in 0..<c { v[ch] += wt * Double(f[cell, ch]) }
                    }
                    let norm = max(v.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                    let cos = unit.map { u in zip(u, v).reduce(0) { $0 + $1.0 * $1.1 } / norm }
                    let best = cos.indices.max { cos[$0] < cos[$1] }!
                    let got = Int(predicted[y * W + x])
                    pixels += 1
                    if got != best {
                        // Only a tie at float precision may go either way.
                        #expect(abs(cos[got] - cos[best]) < 1e-5, "image \(i) pixel (\(y), \(x)): class \(got), the probe says \(best)")
                        nearTies += 1
                    }
                }
            }
        }
        #expect(nearTies * 1000 <= pixels, "\(nearTies) near-ties of \(pixels) pixels")

        let rows = try TestJob.run(TestJob.Options(checkpointPath: ck, storePath: peer, threads: 2))
        let peerRow = try #require(rows.first { $0.peer && !$0.crf })
        let momentum = try #require(rows.first { !$0.peer && $0.copy == .momentum && !$0.crf })
        #expect(peerRow.report.confusion == momentum.report.confusion, "the peer row is the probe, as are zero EM epochs")
        #expect(TestJob.table(rows).contains("peer's cluster probe"))
    }

    @Test func emFromThePeerMovesThePrototypesDeterministically() throws {
        let (peer, _) = try Self.stores("em")
        var r = smallRecipe(classes: 4, epochs: 2, batch: 3)
        r.stages = [.primapsEM]
        var results: [PrototypeModel] = []
        for threads in [1, 2] {
            let ck = scratch("peer-em-\(threads).h5")
            try? FileManager.default.removeItem(atPath: ck)
            var o = FitOptions(recipe: r, storePath: peer, checkpointPath: ck, threads: threads)
            o.initFromPeerPath = peer
            results.append(try FitJob.run(o).prototypes)
        }
        let clusters = try #require(try FeatureStore(path: peer).peerClusters())
        #expect(results[0] == results[1], "same prototypes on 1 and 2 threads")
        #expect(results[0].directions != clusters, "EM moved the prototypes")
    }
}
