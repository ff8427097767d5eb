import Foundation
import Testing
import UnsegClustering
import UnsegLinAlg
import UnsegPipeline
import UnsegStore
import UnsegTestSupport

/// `unseg test` (the reference test script's table) and `predict --tta flip`, through the binary.
@Suite struct TestCommandCLITests {
    @Test func tableRowsFlipAveragingAndAgreementWithPredictEvaluate() throws {
        let dir = scratchDir("test-command")
        let store = dir + "/s.h5", ck = dir + "/ck.h5", recipe = dir + "/r.yaml"
        try writePlantedStore(store, n: 8, seed: 12)
        // Flipped features: any other features serve to check the averaging.
        _ = try runPython("""
        import h5py, sys, numpy as np
        with h5py.File(sys.argv[1], 'a') as f:
            x = f['features'][...]
            f.create_dataset('features_flipped', data=(x[:, :, ::-1, :] * 0.5 + 0.25).astype(x.dtype), chunks=(1,) + x.shape[1:])
        """, args: [store])
        try """
        name: "t"
        classes: 4
        batch_size: 4
        seed: 3
        pca-init:
          sample_images: 8
        cosine-kmeans:
          epochs: 1
        primaps-em:
          epochs: 2
          momentum_every: 1
        """.write(toFile: recipe, atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: ck)
        let fit = try runUnseg(["fit", "--recipe", recipe, "--store", store, "--checkpoint", ck, "--threads", "1"])
        #expect(fit.status == 0, "\(fit.stderr)")

        let json = dir + "/t.json"
        let t = try runUnseg(["test", "--checkpoint", ck, "--store", store, "--json", json, "--report", dir + "/rep"])
        #expect(t.status == 0, "\(t.stderr)")
        for row in ["momentum (theta_m)", "momentum (theta_m) + CRF", "running (theta_r) + CRF + flip"] {
            #expect(t.stdout.contains(row), "\(row) missing:\n\(t.stdout)")
        }
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let rows = try #require(obj["rows"] as? [[String: Any]])
        #expect(rows.count == 8, "momentum / running x CRF x flip")
        #expect(FileManager.default.fileExists(atPath: dir + "/rep/momentum-crf-flip/report.md"))

        // The plain momentum row equals predict + evaluate.
        let pred = dir + "/p.h5", ej = dir + "/e.json"
        #expect(try runUnseg(["predict", "--checkpoint", ck, "--store", store, "--out", pred]).status == 0)
        #expect(try runUnseg(["evaluate", "--store", store, "--predictions", pred, "--json", ej]).status == 0)
        let ev = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ej))) as? [String: Any])
        let plain = try #require(rows.first { ($0["prototypes"] as? String) == "momentum" && ($0["crf"] as? Bool) == false && ($0["flip"] as? Bool) == false })
        #expect((plain["miou"] as? Double) == (ev["miou"] as? Double) && (plain["accuracy"] as? Double) == (ev["accuracy"] as? Double))

        // predict --tta flip: the argmax of the model on the mean of both feature sets.
        let tta = dir + "/tta.h5"
        let p = try runUnseg(["predict", "--checkpoint", ck, "--store", store, "--out", tta, "--tta", "flip"])
        #expect(p.status == 0, "\(p.stderr)")
        let s = try FeatureStore(path: store)
        let model = try FitCheckpoint.load(path: ck).momentum
        let file = try PredictionsFile(path: tta, store: s)
        let l = s.layout
        var differs = false
        for i in 0..<s.count {
            var f = try s.features(i)
            let g = try s.features(i, source: .flipped)
            for j in 0..<f.count { f.data[j] = (f.data[j] + g.data[j]) * 0.5 }
            let want = model.predict(features: f, h: l.gridHeight, w: l.gridWidth, H: l.imageHeight, W: l.imageWidth)
            #expect(try file.read(i) == want, "image \(i)")
            let plainPred = model.predict(features: try s.features(i), h: l.gridHeight, w: l.gridWidth, H: l.imageHeight, W: l.imageWidth)
            differs = differs || want != plainPred
        }
        #expect(differs, "the flipped features change some predictions (otherwise the check shows nothing)")

        // Without flipped features, --tta flip names the dataset and what to do.
        let noFlip = dir + "/plain.h5"
        try writePlantedStore(noFlip, n: 8, seed: 12)
        let bad = try runUnseg(["predict", "--checkpoint", ck, "--store", noFlip, "--out", dir + "/x.h5", "--tta", "flip"])
        #expect(bad.status == 1 && bad.stderr.contains("/features_flipped") && bad.stderr.contains("--flip"), "\(bad.stderr)")
    }
}
