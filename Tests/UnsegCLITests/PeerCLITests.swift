import Foundation
import Testing

/// The documented stand-in peer run (Docs/fitting.md, "Offline, with a stand-in peer") through the
/// binary, on a smaller corpus: `synth --stand-in-head`, `fit --init-from-peer`, `test`.
@Suite struct PeerCLITests {
    static func repoRoot() -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// (Acc, mIoU) of the row named `name` in `unseg test`'s JSON.
    static func row(_ json: String, _ name: String) throws -> (Double, Double) {
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        let rows = obj?["rows"] as? [[String: Any]] ?? []
        let r = try #require(rows.first { ($0["name"] as? String) == name }, "no row '\(name)' in \(rows.map { $0["name"] ?? "?" })")
        return (r["accuracy"] as? Double ?? -1, r["miou"] as? Double ?? -1)
    }

    @Test func standInPeerThenPriMaPsEMImprovesOnItsClusterProbe() throws {
        let dir = scratchDir("peer-stand-in")
        let train = dir + "/train.h5", val = dir + "/val.h5", ck = dir + "/ck.h5", json = dir + "/t.json"
        for p in [train, val, ck, json] { try? FileManager.default.removeItem(atPath: p) }
        for (out, n, split) in [(train, "64", "train"), (val, "24", "val")] {
            let r = try runUnseg(["synth", "--out", out, "--images", n, "--size", "160", "--split", split, "--stand-in-head", "64"])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let inspect = try runUnseg(["inspect", val])
        #expect(inspect.stdout.contains("/features_backbone") && inspect.stdout.contains("unseg fit --init-from-peer"), "\(inspect.stdout)")
        let fit = try runUnseg(["fit", "--recipe", Self.repoRoot() + "/Recipes/demo-peer.yaml", "--store", train,
                                "--init-from-peer", train, "--checkpoint", ck, "--threads", "2"])
        #expect(fit.status == 0, "\(fit.stderr)")
        #expect(fit.stderr.contains("/peer_clusters") && fit.stderr.contains("/features_backbone"), "the log says where the prototypes and the masks come from:\n\(fit.stderr)")
        let t = try runUnseg(["test", "--checkpoint", ck, "--store", val, "--threads", "2", "--json", json])
        #expect(t.status == 0, "\(t.stderr)")
        #expect(t.stdout.contains("peer's cluster probe"), "\(t.stdout)")
        let (peerAcc, peerIoU) = try Self.row(json, "peer's cluster probe")
        let (emAcc, emIoU) = try Self.row(json, "momentum (theta_m)")
        // Measured (seed 0): 41.8 / 22.6 -> 69.2 / 25.2; seed 1: 41.3 / 23.7 -> 75.7 / 29.5.
        #expect(emAcc > peerAcc + 10 && emIoU > peerIoU + 1, "PriMaPs-EM on the stand-in: \(peerAcc) / \(peerIoU) -> \(emAcc) / \(emIoU)\n\(t.stdout)")
    }
}
