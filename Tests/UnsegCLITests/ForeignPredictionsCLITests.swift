import Foundation
import Testing
import UnsegCore
import UnsegLinAlg
import UnsegStore
import UnsegTestSupport

/// `unseg evaluate` scores maps other tools wrote (PNG folders, plain HDF5 datasets) exactly as
/// it scores unseg's own files: the same maps in every container give the same metrics.
@Suite struct ForeignPredictionsCLITests {
    static func json(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// The metrics of a report: everything but where the maps came from.
    static func metrics(_ path: String) throws -> NSDictionary {
        var o = try json(path)
        o.removeValue(forKey: "store")
        o.removeValue(forKey: "predictions")
        return NSDictionary(dictionary: o)
    }

    @Test func labelMapsInEveryContainerScoreAlike() throws {
        let dir = scratchDir("foreign-classes")
        let store = dir + "/s.h5"
        #expect(try runUnseg(["synth", "--out", store, "--images", "6", "--size", "32", "--patch", "4", "--channels", "16",
                              "--classes", "4", "--seed", "3"]).status == 0)
        // unseg's own predictions: the truth relabelled, with noise and some pixels without a prediction.
        let s = try FeatureStore(path: store)
        let own = dir + "/own.h5"
        try? FileManager.default.removeItem(atPath: own)
        let w = try LabelMapsWriter.predictions(path: own, store: s, ids: .clusters, count: 4)
        var rng = SeededRandom(seed: 9)
        for i in 0..<6 {
            let p = try s.labels(i).map { c -> UInt8 in
                if rng.bernoulli(0.05) { return 255 }
                if rng.bernoulli(0.2) { return UInt8(rng.int(below: 4)) }
                return c == 255 ? UInt8(rng.int(below: 4)) : UInt8((Int(c) + 1) % 4)
            }
            try w.write("predictions", index: i, p)
        }
        try w.commit()
        let ownJSON = dir + "/own.json"
        let r0 = try runUnseg(["evaluate", "--store", store, "--predictions", own, "--json", ownJSON])
        #expect(r0.status == 0, "\(r0.stderr)")
        let want = try Self.metrics(ownJSON)
        #expect((want["miou"] as? Double ?? 0) > 10, "\(want)")
        #expect((try Self.json(ownJSON)["predictions"] as? [String: Any])?["foreign"] as? Bool == false)

        // The same ids as other tools write them.
        _ = try runPython("""
        import h5py, sys, os, numpy as np
        from PIL import Image
        d = sys.argv[2]
        p = h5py.File(sys.argv[1], 'r')['predictions'][...]
        names = [n.decode() for n in h5py.File(sys.argv[3], 'r')['names'][...]]
        def save(img, path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            img.save(path)
        for i, n in enumerate(names):
            a = p[i]
            save(Image.fromarray(a, mode='L'), f'{d}/grey/{n}.png')
            # 16-bit grey in Cityscapes' city/ layout with its suffix; 65535 = no prediction.
            b = a.astype(np.uint16); b[a == 255] = 65535
            save(Image.fromarray(b), f'{d}/grey16/city{i % 2}/{n}_leftImg8bit.png')
            q = Image.fromarray(a, mode='P'); q.putpalette([v for k in range(256) for v in (k * 40 % 256, k * 90 % 256, k * 7 % 256)])
            save(q, f'{d}/palette/{n}_pred.png')
            save(Image.fromarray(np.repeat(np.repeat(a, 2, 0), 2, 1), mode='L'), f'{d}/big/{n}.png')
            save(Image.fromarray(a, mode='L'), f'{d}/custom/{n}_mymethod.png')
        with h5py.File(d + '/plain.h5', 'w') as f:
            f['pred64'] = p.astype(np.int64)
            f['pred8'] = p
            g = f.create_group('nested'); g['pred16'] = p.astype(np.uint16)
        """, args: [own, dir, store])
        let g16 = try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/grey16", "--json", dir + "/grey16.json"])
        #expect(g16.status == 0 && g16.stdout.contains("predictions: PNG folder") && g16.stdout.contains("16-bit grey"), "\(g16.stdout)\(g16.stderr)")
        let foreign = try Self.json(dir + "/grey16.json")["predictions"] as? [String: Any]
        #expect(foreign?["foreign"] as? Bool == true && foreign?["kind"] as? String == "png-folder", "\(String(describing: foreign))")
        #expect(try Self.metrics(dir + "/grey16.json") == want)
        for (name, extra) in [("grey", [String]()), ("palette", []), ("big", ["--resize", "nearest"]),
                              ("custom", ["--suffix", "_mymethod"])] {
            let j = dir + "/\(name).json"
            let r = try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/" + name, "--json", j] + extra)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            #expect(try Self.metrics(j) == want, "\(name)")
        }
        for ds in ["pred64", "pred8", "/nested/pred16"] {
            let j = dir + "/h5-\(ds.replacingOccurrences(of: "/", with: "_")).json"
            let r = try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/plain.h5", "--dataset", ds, "--json", j])
            #expect(r.status == 0 && r.stdout.contains("plain HDF5 dataset"), "\(ds): \(r.stdout)\(r.stderr)")
            #expect(try Self.metrics(j) == want, "\(ds)")
            #expect((try Self.json(j)["predictions"] as? [String: Any])?["kind"] as? String == "hdf5-dataset")
        }
        // More ids than used: the same matching, --clusters says how many there are.
        let c6 = try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/grey", "--clusters", "6", "--json", dir + "/c6.json"])
        #expect(c6.status == 0, "\(c6.stderr)")
        #expect(try Self.json(dir + "/c6.json")["miou"] as? Double == want["miou"] as? Double)
        // Without --resize another size is an error naming the files and the option.
        let big = try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/big"])
        #expect(big.status == 1 && big.stderr.contains("6 of 6 PNGs are not the store's label size 32x32") && big.stderr.contains("--resize nearest"),
                "\(big.stderr)")

        // export -> evaluate round-trips: the export folder itself, its labels/, its color/.
        let ex = dir + "/export"
        try? FileManager.default.removeItem(atPath: ex)
        let x = try runUnseg(["export", "--predictions", own, "--store", store, "--out", ex, "--sample", "0"])
        #expect(x.status == 0, "\(x.stderr)")
        let manifest = try Self.json(ex + "/manifest.json")
        #expect(manifest["protocol"] as? String == "generic4" && manifest["matching"] is NSNull && manifest["layout"] is String, "\(manifest)")
        for (name, folder) in [("export", ex), ("labels", ex + "/labels"), ("color", ex + "/color")] {
            let j = dir + "/rt-\(name).json"
            let r = try runUnseg(["evaluate", "--store", store, "--predictions", folder, "--json", j])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            #expect(try Self.metrics(j) == want, "round trip through \(name)")
        }
        // With --matching-from the export holds class ids: evaluating them matches each id to itself.
        let exm = dir + "/export-matched"
        try? FileManager.default.removeItem(atPath: exm)
        let xm = try runUnseg(["export", "--predictions", own, "--store", store, "--out", exm, "--sample", "0", "--matching-from", ownJSON])
        #expect(xm.status == 0, "\(xm.stderr)")
        let mm = try Self.json(exm + "/manifest.json")
        #expect((mm["matching"] as? [Any])?.count == 4 && mm["ids"] as? String == "classes", "\(mm)")
        let rm = try runUnseg(["evaluate", "--store", store, "--predictions", exm, "--json", dir + "/rt-matched.json"])
        #expect(rm.status == 0, "\(rm.stderr)")
        let matched = try Self.json(dir + "/rt-matched.json")
        #expect(matched["miou"] as? Double == want["miou"] as? Double && matched["accuracy"] as? Double == want["accuracy"] as? Double,
                "\(matched)")
        #expect((matched["matching"] as? [Int]) == [0, 1, 2, 3], "\(matched)")
        // The same bytes on 1 and 2 threads for a folder.
        let t1 = dir + "/t1.json", t2 = dir + "/t2.json"
        #expect(try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/palette", "--json", t1, "--threads", "1"]).status == 0)
        #expect(try runUnseg(["evaluate", "--store", store, "--predictions", dir + "/palette", "--json", t2, "--threads", "2"]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: t1)) == Data(contentsOf: URL(fileURLWithPath: t2)))
    }

    @Test func softMapsInEveryContainerScoreAlike() throws {
        let dir = scratchDir("foreign-soft")
        let store = try makeForegroundStore(dir + "/s.h5", images: 5, seed: 4)
        let props = dir + "/fg.h5"
        try? FileManager.default.removeItem(atPath: props)
        let p = try runUnseg(["propose", "--store", store, "--out", props, "--method", "fiedler"])
        #expect(p.status == 0, "\(p.stderr)")
        _ = try runPython("""
        import h5py, sys, os, numpy as np
        from PIL import Image
        d = sys.argv[2]
        fg = h5py.File(sys.argv[1], 'r')['foreground'][...]
        names = [n.decode() for n in h5py.File(sys.argv[3], 'r')['names'][...]]
        for sub in ['grey', 'rgb', 'big', 'mask01', 'mask255']: os.makedirs(f'{d}/{sub}', exist_ok=True)
        for i, n in enumerate(names):
            a = fg[i]
            Image.fromarray(a, mode='L').save(f'{d}/grey/{n}_saliency.png')
            Image.fromarray(np.stack([a, a, a], -1), mode='RGB').save(f'{d}/rgb/{n}.png')
            Image.fromarray(np.repeat(np.repeat(a, 2, 0), 2, 1), mode='L').save(f'{d}/big/{n}.png')
            m = (a >= 128).astype(np.uint8)
            Image.fromarray(m, mode='L').save(f'{d}/mask01/{n}_mask.png')
            Image.fromarray(m * 255, mode='L').save(f'{d}/mask255/{n}.png')
        with h5py.File(d + '/plain.h5', 'w') as f:
            f['soft_f32'] = (fg.astype(np.float64) / 255).astype(np.float32)
            f['soft_u8'] = fg
            f['mask_u8'] = (fg >= 128).astype(np.uint8)
        """, args: [props, dir, store])
        for task in ["saliency", "corloc"] {
            let ownJSON = dir + "/own-\(task).json"
            let r0 = try runUnseg(["evaluate", "--task", task, "--store", store, "--predictions", props, "--json", ownJSON])
            #expect(r0.status == 0, "\(r0.stderr)")
            let want = try Self.metrics(ownJSON)
            #expect(want[task == "saliency" ? "max_fbeta" : "correct"] != nil, "\(want)")
            let runs: [(String, [String])] = [
                ("grey", [dir + "/grey"]), ("rgb", [dir + "/rgb"]),
                ("big-nearest", [dir + "/big", "--resize", "nearest"]), ("big-bilinear", [dir + "/big", "--resize", "bilinear"]),
                ("f32", [dir + "/plain.h5", "--dataset", "soft_f32"]), ("u8", [dir + "/plain.h5", "--dataset", "soft_u8"]),
            ]
            for (name, args) in runs {
                let j = dir + "/\(task)-\(name).json"
                let r = try runUnseg(["evaluate", "--task", task, "--store", store, "--predictions"] + args + ["--json", j])
                #expect(r.status == 0, "\(task) \(name): \(r.stderr)")
                #expect(try Self.metrics(j) == want, "\(task) \(name)")
            }
            // A 0/1 mask, as PNG or HDF5, scores like the same mask at 0/255.
            var masks: [NSDictionary] = []
            for (name, args) in [("mask01", [dir + "/mask01"]), ("mask255", [dir + "/mask255"]),
                                 ("mask-h5", [dir + "/plain.h5", "--dataset", "mask_u8"])] {
                let j = dir + "/\(task)-\(name).json"
                let r = try runUnseg(["evaluate", "--task", task, "--store", store, "--predictions"] + args + ["--json", j])
                #expect(r.status == 0, "\(task) \(name): \(r.stderr)")
                masks.append(try Self.metrics(j))
            }
            #expect(masks[0] == masks[1] && masks[1] == masks[2], "\(task): \(masks)")
        }
    }

    @Test func helpEvaluateWrapsAtWords() throws {
        let r = try runUnseg(["help", "evaluate"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for line in lines where !line.hasPrefix("USAGE:") {
            #expect(line.count <= 80, "\(line.count) columns: \(line)")
        }
        // Words are whole: the text read as one line holds the discussion's phrases intact.
        let flat = lines.map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        for phrase in ["a suffix such as _leftImg8bit, _pred or _mask", "--dataset NAME: [N, H, W]",
                       "unless --resize nearest (label maps) or bilinear (soft maps)", "8- or 16-bit grey"] {
            #expect(flat.contains(phrase), "\(phrase)")
        }
    }
}
