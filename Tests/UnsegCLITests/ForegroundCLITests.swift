import Foundation
import Testing
import UnsegEvaluation
import UnsegStore
import UnsegTestSupport

/// A synth store (32x32, patch 4) made object-centric for the foreground tasks: binary labels
/// (class 1 is the foreground, no protocol) and one box per image, [i, 4, 4, 20, 24].
func makeForegroundStore(_ store: String, images: Int, seed: Int) throws -> String {
    let r = try runUnseg(["synth", "--out", store, "--images", String(images), "--size", "32", "--patch", "4",
                          "--channels", "16", "--classes", "4", "--seed", String(seed)])
    try #require(r.status == 0, "unseg synth: \(r.stderr)")
    _ = try runPython("""
    import h5py, sys, numpy as np
    with h5py.File(sys.argv[1], 'a') as f:
        y = f['labels'][...]
        f['labels'][...] = np.where(y == 255, 255, (y == 1).astype(np.uint8))
        del f.attrs['protocol']
        n = f['labels'].shape[0]
        f.create_dataset('boxes', data=np.array([[i, 4, 4, 20, 24] for i in range(n)], dtype=np.float32))
    """, args: [store])
    return store
}

/// `propose --method fiedler` writes soft foreground maps; `evaluate --task saliency|corloc` scores them.
@Suite struct ForegroundCLITests {
    @Test func fiedlerForegroundSaliencyAndCorLoc() throws {
        let dir = scratchDir("foreground")
        let store = try makeForegroundStore(dir + "/s.h5", images: 4, seed: 2)
        let props = dir + "/fg.h5", guided = dir + "/fg-guided.h5"
        let p = try runUnseg(["propose", "--store", store, "--out", props, "--method", "fiedler"])
        #expect(p.status == 0, "\(p.stderr)")
        let g = try runUnseg(["propose", "--store", store, "--out", guided, "--method", "fiedler", "--refine", "guided"])
        #expect(g.status == 0, "\(g.stderr)")
        let crf = try runUnseg(["propose", "--store", store, "--out", dir + "/x.h5", "--method", "fiedler", "--refine", "crf"])
        #expect(crf.status != 0 && crf.stderr.contains("guided"), "\(crf.stderr)")
        let s = try FeatureStore(path: store)
        let f = try ProposalsFile(path: props, store: s)
        let fg0 = try f.foreground(0)
        #expect(f.hasForeground && fg0.count == 32 * 32)

        for (file, name) in [(props, "plain"), (guided, "guided")] {
            let json = dir + "/\(name).json"
            let r = try runUnseg(["evaluate", "--task", "saliency", "--store", store, "--predictions", file, "--json", json,
                                  "--report", dir + "/rep-\(name)"])
            #expect(r.status == 0 && r.stdout.contains("max F-beta"), "\(r.stdout)\(r.stderr)")
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
            var acc = Saliency.Accumulator()
            let pf = try ProposalsFile(path: file, store: s)
            for i in 0..<4 { try acc.add(soft: try pf.foreground(i), labels: try s.labels(i)) }
            let want = try acc.result()
            expectClose(obj["max_fbeta"] as? Double ?? -1, want.maxFBeta, abs: 1e-9, "max F-beta")
            expectClose(obj["iou"] as? Double ?? -1, want.iou, abs: 1e-9, "IoU")
            #expect(FileManager.default.fileExists(atPath: dir + "/rep-\(name)/precision_recall.png"))
        }
        let cj = dir + "/corloc.json"
        let c = try runUnseg(["evaluate", "--task", "corloc", "--store", store, "--predictions", props, "--json", cj])
        #expect(c.status == 0 && c.stdout.contains("CorLoc"), "\(c.stdout)\(c.stderr)")
        let co = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cj))) as? [String: Any])
        var correct = 0
        for i in 0..<4 {
            let box = CorLoc.predictedBox(soft: try f.foreground(i), height: 32, width: 32)
            if CorLoc.isCorrect(predicted: box, truth: [CorLoc.Box(x0: 4, y0: 4, x1: 20, y1: 24)]) { correct += 1 }
        }
        #expect((co["correct"] as? Int) == correct && (co["images"] as? Int) == 4)
        // The same bytes on 1 and 2 threads.
        let j1 = dir + "/t1.json", j2 = dir + "/t2.json"
        #expect(try runUnseg(["evaluate", "--task", "saliency", "--store", store, "--predictions", guided, "--json", j1, "--threads", "1"]).status == 0)
        #expect(try runUnseg(["evaluate", "--task", "saliency", "--store", store, "--predictions", guided, "--json", j2, "--threads", "2"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: j1)) == Data(contentsOf: URL(fileURLWithPath: j2)))
        // Damaged boxes: a huge image index is an error naming /boxes; huge coordinates are drawn
        // clipped in the report, not a trap.
        let badIndex = dir + "/bad-index.h5", hugeBox = dir + "/huge-box.h5"
        try FileManager.default.copyItem(atPath: store, toPath: badIndex)
        try FileManager.default.copyItem(atPath: store, toPath: hugeBox)
        _ = try runPython("""
        import h5py, sys
        with h5py.File(sys.argv[1], 'a') as f: f['boxes'][0, 0] = 1e20
        with h5py.File(sys.argv[2], 'a') as f: f['boxes'][0, 3] = 1e20
        """, args: [badIndex, hugeBox])
        let bi = try runUnseg(["evaluate", "--task", "corloc", "--store", badIndex, "--predictions", props])
        #expect(bi.status == 1 && bi.stderr.contains("/boxes"), "\(bi.stderr)")
        let hb = try runUnseg(["evaluate", "--task", "corloc", "--store", hugeBox, "--predictions", props, "--report", dir + "/huge-rep"])
        #expect(hb.status == 0 && FileManager.default.fileExists(atPath: dir + "/huge-rep/report.md"), "\(hb.stderr)")
        // A predictions file without /foreground names what to do.
        let bad = try runUnseg(["evaluate", "--task", "saliency", "--store", store, "--predictions", dir + "/none.h5"])
        #expect(bad.status == 1)
    }
}
