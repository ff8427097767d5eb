import Foundation
import Testing
@testable import UnsegPipeline
import UnsegStore

/// Matching a foreign folder's PNGs to a store's `/names`, and the value rules for foreign maps.
@Suite struct PredictionNamesTests {
    func match(_ names: [String], _ files: [String], suffixes: [String] = []) throws -> [String] {
        try PredictionNames.match(storeNames: names, files: files, suffixes: suffixes, folder: "/preds", storePath: "s.h5")
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test func stemsExtensionsSuffixesAndFolders() throws {
        let names = ["frankfurt/frankfurt_000000_000294_leftImg8bit.png", "lindau/lindau_000001_000019_leftImg8bit.png", "a.jpg"]
        // What `unseg export` writes: the exported stems.
        #expect(try match(names, ["frankfurt_frankfurt_000000_000294_leftImg8bit.png.png",
                                  "lindau_lindau_000001_000019_leftImg8bit.png.png", "a.jpg.png"])
                == ["frankfurt_frankfurt_000000_000294_leftImg8bit.png.png", "lindau_lindau_000001_000019_leftImg8bit.png.png", "a.jpg.png"])
        // Cityscapes' own layout: city folders, the suffix swapped for another one.
        let cs = ["frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png", "lindau/lindau_000001_000019_gtFine_labelTrainIds.png", "a_pred.png"]
        #expect(try match(names, cs.reversed()) == cs)
        // Bare stems without suffix or extension, flat.
        let bare = ["frankfurt_000000_000294.png", "lindau_000001_000019.png", "a.png"]
        #expect(try match(names, bare) == bare)
        // Case of the extension does not matter; a user suffix is dropped when asked for.
        #expect(try match(["x.JPG", "y.JPG"], ["x.png", "y.png"]) == ["x.png", "y.png"])
        #expect(throws: StoreError.self) { try match(["x", "y"], ["x_dss.png", "y_dss.png"]) }
        #expect(try match(["x", "y"], ["x_dss.png", "y_dss.png"], suffixes: ["_dss"]) == ["x_dss.png", "y_dss.png"])
        // A name that is all suffix is kept whole.
        #expect(try match(["_pred", "b"], ["_pred.png", "b.png"]) == ["_pred.png", "b.png"])
    }

    @Test func exactStemsWinOverNormalisedOnes() throws {
        // "x" and "x_pred" are different images: each exact stem goes to its own image, and the
        // ambiguous normalised key "x" is not used for either.
        #expect(try match(["x", "x_pred"], ["x_pred.png", "x.png"]) == ["x.png", "x_pred.png"])
        // Two images whose names normalise alike cannot be told apart by a third spelling.
        let m = message { _ = try match(["x.jpg", "x.png"], ["x_mask.png", "y.png"]) }
        #expect(m.contains("no PNG") && m.contains("unmatched PNGs: x_mask.png, y.png"), "\(m)")
    }

    @Test func missingExtraAndDuplicateNamesAreListed() {
        let names = (0..<8).map { "img\($0)" }
        let missing = message { _ = try match(names, ["img0.png", "img1.png"]) }
        #expect(missing.contains("6 of the store's 8 images have no PNG: img2, img3, img4, img5, img6, ... (6 in all)"), "\(missing)")
        #expect(missing.contains("--suffix"), "\(missing)")
        let extra = message { _ = try match(["a", "b"], ["a.png", "b.png", "c.png", "sub/d.png"]) }
        #expect(extra.contains("2 PNGs match no image of s.h5: c.png, sub/d.png"), "\(extra)")
        let twice = message { _ = try match(["a", "b"], ["a.png", "a_pred.png", "b.png"]) }
        #expect(twice.contains("1 image has more than one PNG: 'a': a.png and a_pred.png"), "\(twice)")
        #expect(twice.contains("/preds"), "\(twice)")
    }

    @Test func listingSkipsHiddenAndRejectsOtherFiles() throws {
        let dir = scratch("pred-names-listing")
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        try fm.createDirectory(atPath: dir + "/city/.cache", withIntermediateDirectories: true)
        for f in ["b.png", "city/a.PNG", ".DS_Store", "city/.cache/junk.txt", "city/.hidden.png"] {
            try Data().write(to: URL(fileURLWithPath: dir + "/" + f))
        }
        #expect(try PredictionNames.listPNGs(dir) == ["b.png", "city/a.PNG"])
        try Data().write(to: URL(fileURLWithPath: dir + "/notes.txt"))
        let m = message { _ = try PredictionNames.listPNGs(dir) }
        #expect(m.contains("1 file that is not PNG: notes.txt"), "\(m)")
        let notFolder = message { _ = try PredictionNames.listPNGs(dir + "/b.png") }
        #expect(notFolder.contains("is not a folder"), "\(notFolder)")
        let empty = scratch("pred-names-empty")
        try? fm.removeItem(atPath: empty)
        try fm.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect(message { _ = try PredictionNames.listPNGs(empty) }.contains("holds no PNG files"))
    }

    @Test func labelValueRules() throws {
        // 255 (and 65535 from a 16-bit file) is no prediction; ids must be below the count.
        #expect(try LabelValues.ids([0, 3, 255, 2], maxSample: 255, clusters: 4, idOption: "--clusters", where: { "f" }) == [0, 3, 255, 2])
        #expect(try LabelValues.ids([0, 65535, 255] as [UInt16], maxSample: 65535, clusters: 4, idOption: "", where: { "f" }) == [0, 255, 255])
        let high = message { _ = try LabelValues.ids([0, 4, 5, 4], maxSample: 255, clusters: 4, idOption: "--clusters 4", where: { "p.png" }) }
        #expect(high.contains("id 4 (pixel 1; 3 such pixels)") && high.contains("0..<4") && high.contains("p.png"), "\(high)")
        let neg = message { _ = try LabelValues.ids([-1] as [Int32], maxSample: 255, clusters: 4, idOption: "", where: { "d" }) }
        #expect(neg.contains("negative id -1"), "\(neg)")
        // Soft maps: 0/1 masks become 0/255, grey levels scale by the file's range.
        #expect(LabelValues.softFromIntegers([0, 1, 1], maxSample: 255) == [0, 255, 255])
        #expect(LabelValues.softFromIntegers([0, 128, 255], maxSample: 255) == [0, 128, 255])
        #expect(LabelValues.softFromIntegers([0, 65535], maxSample: 65535) == [0, 255])
        // Resizing: nearest keeps ids; bilinear soft maps interpolate, then quantise.
        let ids: [UInt8] = [1, 2, 3, 4]
        #expect(LabelValues.resized(ids, height: 2, width: 2, toHeight: 4, toWidth: 4, resize: .nearest)
                == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        #expect(try LabelValues.resizedSoft([0, 255], height: 1, width: 2, toHeight: 1, toWidth: 4, resize: .bilinear)
                == [0, 64, 191, 255])
        #expect(try LabelValues.resizedSoft([0, 255], height: 1, width: 2, toHeight: 1, toWidth: 4, resize: .nearest)
                == [0, 0, 255, 255])
    }
}
