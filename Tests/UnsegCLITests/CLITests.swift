import Foundation
import Testing
import UnsegTestSupport
import UnsegImaging

/// End-to-end tests of the built `unseg` binary: output, files and exit codes.
@Suite struct CLITests {
    @Test func helpListsSubcommandsWithDescriptions() throws {
        let r = try runUnseg(["--help"])
        #expect(r.status == 0)
        for sub in ["synth", "inspect", "demo"] {
            #expect(r.stdout.contains("  \(sub) "), "--help lists \(sub):\n\(r.stdout)")
        }
        let s = try runUnseg(["synth", "--help"])
        #expect(s.status == 0 && s.stdout.contains("--seed") && s.stdout.contains("--channels"))
    }

    /// Each bad input: exit code 1, one paragraph on stderr that names the file, no trap or stack dump.
    @Test func inspectBadInputGivesOneParagraphAndExitCode1() throws {
        let dir = scratchDir("bad")
        let text = dir + "/notes.h5"
        try "not hdf5".write(toFile: text, atomically: true, encoding: .utf8)
        let nofeat = dir + "/nofeatures.h5"
        _ = try runPython("import sys, h5py\nwith h5py.File(sys.argv[1], 'w') as f:\n    f.attrs['patch_size'] = 8\n    f['labels'] = [[[0]]]\n", args: [nofeat])
        let full = dir + "/full.h5"
        _ = try runPython("""
        import sys, h5py, numpy as np
        with h5py.File(sys.argv[1], 'w') as f:
            f.attrs['patch_size'] = 8
            f['features'] = np.random.default_rng(0).standard_normal((8, 16, 16, 64)).astype(np.float32)
        """, args: [full])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: full))
        let cut = dir + "/truncated.h5"
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: cut))
        let cases: [(String, String)] = [
            (dir + "/missing.h5", "no such file"),
            (text, "not an HDF5 file"),
            (cut, "truncated"),
            (nofeat, "/features"),
        ]
        for (path, needle) in cases {
            let r = try runUnseg(["inspect", path])
            #expect(r.status == 1, "\(path): exit \(r.status)")
            let msg = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(msg.hasPrefix("error: ") && msg.contains(path) && msg.contains(needle), "\(path): \(msg)")
            #expect(!msg.contains("\n\n") && !msg.contains("Fatal error") && !msg.contains("Stack dump"), "one paragraph: \(msg)")
        }
    }

    @Test func inspectReadsAStoreWrittenByH5py() throws {
        let path = scratchDir("h5py") + "/store.h5"
        _ = try runPython("""
        import sys, h5py, numpy as np
        rng = np.random.default_rng(1)
        with h5py.File(sys.argv[1], 'w') as f:
            f.attrs['format'] = 'unseg.feature-store'
            f.attrs['version'] = 1
            f.attrs['patch_size'] = 8
            f.attrs['backbone'] = 'dino_vits8'
            f.create_dataset('features', data=rng.standard_normal((3, 4, 5, 32)).astype(np.float16),
                             chunks=(1, 4, 5, 32), compression='gzip', shuffle=True)
            f.create_dataset('labels', data=np.zeros((3, 32, 40), np.uint8), chunks=(1, 32, 40))
            f.create_dataset('names', data=['a', 'b', 'c'], dtype=h5py.string_dtype())
        """, args: [path])
        let r = try runUnseg(["inspect", path])
        #expect(r.status == 0, "\(r.stderr)")
        for needle in ["dino_vits8", "/features", "float16", "[3, 4, 5, 32]", "chunks [1, 4, 5, 32]", "shuffle+deflate(4)",
                       "/names", "string (variable length)", "3 images, 4x5 cells x 32 channels", "feature norms"] {
            #expect(r.stdout.contains(needle), "'\(needle)' in:\n\(r.stdout)")
        }
    }

    @Test func synthIsDeterministicAndReadableByH5py() throws {
        let dir = scratchDir("synth")
        let a = dir + "/a.h5", b = dir + "/b.h5", c = dir + "/c.h5"
        let common = ["--images", "6", "--size", "64", "--patch", "8", "--channels", "32", "--classes", "5"]
        let r1 = try runUnseg(["synth", "--out", a, "--seed", "3", "--threads", "1"] + common)
        // HDF5 stamps objects with their creation second unless told not to: a second apart,
        // the files are still byte-identical.
        Thread.sleep(forTimeInterval: 1.1)
        let r2 = try runUnseg(["synth", "--out", b, "--seed", "3", "--threads", "2"] + common)
        let r3 = try runUnseg(["synth", "--out", c, "--seed", "4"] + common)
        #expect(r1.status == 0 && r2.status == 0 && r3.status == 0, "\(r1.stderr)\(r2.stderr)\(r3.stderr)")
        // Same seed -> same data whatever the thread count. Whole-file bytes can differ only in HDF5
        // bookkeeping, so compare every dataset and attribute with h5py.
        let out = try runPython("""
        import sys, h5py, numpy as np
        def load(p):
            with h5py.File(p, 'r') as f:
                return {k: f[k][()] for k in f}, dict(f.attrs)
        (da, aa), (db, ab), (dc, ac) = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
        assert set(da) == {'features', 'images', 'labels', 'names'}, set(da)
        assert da['features'].shape == (6, 8, 8, 32) and da['features'].dtype == np.float16
        assert da['images'].shape == (6, 64, 64, 3) and da['labels'].shape == (6, 64, 64)
        assert aa['format'] == 'unseg.feature-store' and int(aa['version']) == 1 and int(aa['patch_size']) == 8
        assert aa['dataset'] == 'synthetic' and aa['split'] == 'train' and len(aa['class_names']) == 5
        for k in da: assert np.array_equal(da[k], db[k]), k
        assert not np.array_equal(da['features'], dc['features'])
        print('ok')
        """, args: [a, b, c])
        #expect(out.contains("ok"))
        let bytesA = try Data(contentsOf: URL(fileURLWithPath: a)), bytesB = try Data(contentsOf: URL(fileURLWithPath: b))
        #expect(bytesA == bytesB, "same seed, same bytes")
    }

    @Test func synthRejectsBadArguments() throws {
        let r = try runUnseg(["synth", "--out", scratchDir("x") + "/x.h5", "--images", "0"])
        #expect(r.status != 0 && r.stderr.contains("--images"))
        let d = try runUnseg(["synth", "--out", "/nonexistent/dir/x.h5", "--images", "1", "--size", "32", "--channels", "8", "--classes", "3"])
        #expect(d.status == 1 && d.stderr.contains("/nonexistent/dir"), "\(d.stderr)")
    }
}

/// The evaluate command end to end on the real VOC fixture.
@Suite struct EvaluateCLITests {
    static var fixture: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/voc-effnet.h5").path
    }

    /// Predictions that are a relabelling of the ground truth, written by h5py as a user's script would.
    func writePredictions(_ path: String, shift: Int) throws {
        _ = try runPython("""
        import sys, h5py, numpy as np
        y = h5py.File(sys.argv[1], 'r')['labels'][()]
        p = np.where(y == 255, 0, (y.astype(np.int32) + int(sys.argv[3])) % 21).astype(np.uint8)
        with h5py.File(sys.argv[2], 'w') as f:
            f.attrs['format'] = 'unseg.predictions'
            f.attrs['version'] = 1
            f.attrs['ids'] = 'clusters'
            f.attrs['count'] = 21
            f.create_dataset('predictions', data=p, chunks=(1,) + p.shape[1:])
        """, args: [Self.fixture, path, "\(shift)"])
    }

    @Test func perfectRelabelledPredictionScores100WithJsonAndReport() throws {
        let dir = scratchDir("eval-cli")
        let preds = dir + "/preds.h5"
        try writePredictions(preds, shift: 5)
        let r = try runUnseg(["evaluate", "--store", Self.fixture, "--predictions", preds, "--classes", "21",
                              "--json", dir + "/m.json", "--report", dir + "/report"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("mIoU") && r.stdout.contains("100.0"), "\(r.stdout)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/m.json"))) as! [String: Any]
        #expect((json["miou"] as? Double) == 100 && (json["accuracy"] as? Double) == 100)
        #expect((json["class_names"] as? [String])?.count == 21)
        // 5 classes occur in the photo; the other 16 are skipped and reported.
        #expect((json["skipped_classes"] as? [Int])?.count == 16)
        for f in ["report.md", "confusion.png", "per_class_iou.png", "iou_by_size.png"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/report/" + f), "\(f)")
        }
        // With --report the IoU by object size is computed: a perfect prediction scores 100 on every segment.
        #expect(r.stdout.contains("IoU by object size"), "\(r.stdout)")
        let sizes = try #require(json["iou_by_size"] as? [String: Any])
        let means = try #require(sizes["mean_iou"] as? [Any])
        let counts = try #require(sizes["segments"] as? [Int])
        #expect(counts.reduce(0, +) > 0 && means.count == 5)
        for (m, n) in zip(means, counts) where n > 0 { #expect((m as? Double) == 100, "\(sizes)") }
        let md = try String(contentsOfFile: dir + "/report/report.md", encoding: .utf8)
        #expect(md.contains("## IoU by object size") && md.contains("iou_by_size.png"))
        let chart = try PNG.readRGB(dir + "/report/iou_by_size.png")
        #expect(chart.width > 200 && chart.height > 100)
    }

    @Test func evaluateErrorsAreOneParagraph() throws {
        let dir = scratchDir("eval-cli-bad")
        let preds = dir + "/preds.h5"
        try writePredictions(preds, shift: 0)
        let noClasses = try runUnseg(["evaluate", "--store", Self.fixture, "--predictions", preds])
        #expect(noClasses.status == 1 && noClasses.stderr.contains("voc21") && noClasses.stderr.contains("--classes"), "\(noClasses.stderr)")
        let wrongFile = try runUnseg(["evaluate", "--store", Self.fixture, "--predictions", Self.fixture, "--classes", "21"])
        #expect(wrongFile.status == 1 && wrongFile.stderr.contains("not 'unseg.predictions'"), "\(wrongFile.stderr)")
        let badMatching = try runUnseg(["evaluate", "--store", Self.fixture, "--predictions", preds, "--matching", "best"])
        #expect(badMatching.status != 0 && badMatching.stderr.contains("hungarian-iou"), "\(badMatching.stderr)")
    }
}

extension CLITests {
    @Test func synthRejectsAnInvalidConfigurationWithTheFieldNamed() throws {
        let r = try runUnseg(["synth", "--out", scratchDir("cfg") + "/x.h5", "--images", "1", "--size", "16", "--channels", "8", "--classes", "3"])
        #expect(r.status == 64 && r.stderr.contains("--size=16"), "\(r.stderr)")
    }
}

extension CLITests {
    @Test func demoAndInspectValidateTheirOptions() throws {
        let small = try runUnseg(["demo", "--train-images", "4"])
        #expect(small.status != 0 && small.stderr.contains("--train-images must be >= 16, got 4"), "\(small.stderr)")
        let refine = try runUnseg(["demo", "--refine", "bilateral"])
        #expect(refine.status != 0 && refine.stderr.contains("--refine") && refine.stderr.contains("'none', 'guided'") && refine.stderr.contains("'crf'"), "\(refine.stderr)")
        let images = try runUnseg(["inspect", "x.h5", "--images=-1"])
        #expect(images.status != 0 && images.stderr.contains("--images must be >= 0"), "\(images.stderr)")
    }
}
