import Foundation
import Testing
import UnsegTestSupport
import UnsegImaging
import UnsegLinAlg
import UnsegProposals
import UnsegStore
import UnsegFixtures

/// A store of `n` images of 8x8 planted feature cells (patch 4, 32x32 RGB images coloured by region).
private func writeSmallStore(_ path: String, n: Int = 3, images: Bool = true) throws {
    let meta = StoreMetadata(backbone: "test", patchSize: 4, dataset: "planted", split: "val")
    let w = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: 8, gridWidth: 8, channels: 16,
                                   options: StoreWriteOptions(featureType: .float16, writeImages: images, writeLabels: false))
    for i in 0..<n {
        let (f, map) = PlantedFeatures.make(height: 8, width: 8, channels: 16, regions: 3, noise: 0.3, seed: 70 + UInt64(i))
        var img = [UInt8](repeating: 0, count: 32 * 32 * 3)
        for p in 0..<(32 * 32) {
            let r = map[((p / 32) / 4) * 8 + (p % 32) / 4]
            img[3 * p] = UInt8(60 + 70 * r); img[3 * p + 1] = UInt8(200 - 60 * r); img[3 * p + 2] = 90
        }
        try w.write(i, features: f, image: images ? img : nil, labels: nil, name: "photo \(i)")
    }
    try w.commit()
}

@Suite struct ProposeCLITests {
    @Test func proposeWritesProposalsAndOverlays() throws {
        let dir = scratchDir("propose")
        let store = dir + "/store.h5", out = dir + "/props.h5", ov = dir + "/overlays"
        try writeSmallStore(store)
        let r = try runUnseg(["propose", "--store", store, "--out", out, "--refine", "crf", "--threads", "2",
                              "--overlays", ov, "--overlay-count", "2"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("3 images") && r.stdout.contains("wrote 2 overlays"), "\(r.stdout)")
        let check = try runPython("""
        import sys, h5py
        f = h5py.File(sys.argv[1], 'r')
        print(f.attrs['format'], f.attrs['method'], f.attrs['refine'], f['masks'].shape, f['masks'].dtype, f['refined'].shape)
        """, args: [out])
        #expect(check.contains("unseg.proposals primaps crf (3, 8, 8) uint8 (3, 32, 32)"), "\(check)")
        let files = try FileManager.default.contentsOfDirectory(atPath: ov).filter { !$0.hasPrefix(".") }.sorted()
        #expect(files == ["photo 0.png", "photo 1.png"], "\(files)")
        let png = try PNG.readRGB(ov + "/photo 0.png")
        #expect(png.width > 3 * 32 && png.height > 32, "three panels side by side: \(png.width)x\(png.height)")
    }

    /// Each bad input: a non-zero exit, an error on stderr naming the problem, no output file.
    /// Bad option values are usage errors (exit 64 with the usage, like every command); bad files exit 1.
    @Test func proposeBadInputGivesOneParagraphAndExitCode1() throws {
        let dir = scratchDir("propose-bad")
        let noImages = dir + "/noimages.h5"
        try writeSmallStore(noImages, images: false)
        let out = dir + "/out.h5"
        let cases: [([String], [String])] = [
            (["--store", dir + "/missing.h5", "--out", out], [dir + "/missing.h5", "no such file"]),
            (["--store", noImages, "--out", out, "--refine", "crf"], [noImages, "/images", "--refine crf"]),
            (["--store", noImages, "--out", out, "--method", "kmeans"], ["--method", "'primaps', 'spectral'", "kmeans"]),
            (["--store", noImages, "--out", out, "--threshold", "1.5"], ["--threshold"]),
        ]
        for (args, needles) in cases {
            let r = try runUnseg(["propose"] + args)
            #expect(r.status != 0, "\(args): exit \(r.status)")
            let msg = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(msg.lowercased().hasPrefix("error: "), "\(args): \(msg)")
            for n in needles { #expect(msg.contains(n), "\(args): '\(n)' missing in: \(msg)") }
            #expect(!msg.contains("Fatal error") && !msg.contains("Stack dump"), "\(args): \(msg)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(args): no output file")
        }
        // Bad option values: exit 64 (EX_USAGE), as for the other commands.
        for args in [["--store", noImages, "--out", out, "--method", "kmeans"], ["--store", noImages, "--out", out, "--threads", "0"]] {
            let r = try runUnseg(["propose"] + args)
            #expect(r.status == 64 && r.stderr.contains("Usage: unseg propose"), "\(args): exit \(r.status) \(r.stderr)")
        }
        // Errors from run() (files) exit with 1 and one paragraph.
        for args in [["--store", dir + "/missing.h5", "--out", out], ["--store", noImages, "--out", out, "--refine", "guided"]] {
            let r = try runUnseg(["propose"] + args)
            #expect(r.status == 1 && !r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).contains("\n\n"), "\(args): \(r.stderr)")
        }
    }
}
