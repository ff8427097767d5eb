import Testing

@testable import UnsegCore

@Suite struct LabelProtocolTests {
    @Test func cocoStuffEveryFineIdExactlyOnce() throws {
        let groups = LabelProtocol.cocoStuffFineIds
        #expect(groups.count == 27)
        let all = groups.flatMap { $0 }
        #expect(all.count == 182, "fine ids listed: \(all.count)")
        #expect(Set(all) == Set(0...181), "missing: \(Set(0...181).subtracting(all)), duplicated: \(all.count - Set(all).count)")
        let p = LabelProtocol.cocostuff27
        var hits = [Int](repeating: 0, count: 27)
        for id in 0...181 {
            let c = Int(p.rawToClass[id])
            try #require(c < 27, "fine id \(id) maps to \(c)")
            hits[c] += 1
        }
        #expect(hits.allSatisfy { $0 > 0 })
        for id in 182...255 { #expect(p.rawToClass[id] == 255, "id \(id)") }
        // Spot checks straight from the spec's table.
        let spec: [(Int, Int)] = [(0, 9), (1, 11), (8, 11), (9, 8), (24, 7), (42, 10), (71, 0), (82, 1),
                                  (90, 4), (100, 13), (113, 13), (152, 14), (164, 15), (142, 16), (167, 17),
                                  (176, 18), (180, 19), (165, 20), (158, 21), (168, 22), (156, 23),
                                  (181, 24), (163, 25), (178, 26), (101, 12), (43, 5), (61, 3), (60, 2)]
        for (fine, coarse) in spec { #expect(Int(p.rawToClass[fine]) == coarse, "fine \(fine)") }
        #expect(p.classNames[9] == "person" && p.classNames[26] == "water")
        #expect(Set(p.palette).count == 27, "COCO-Stuff palette colours must be distinct")
    }

    @Test func cityscapesLabelIds() {
        let p = LabelProtocol.cityscapes27
        for id in 0..<256 {
            let expected: UInt8 = (7...33).contains(id) ? UInt8(id - 7) : 255
            #expect(p.rawToClass[id] == expected, "labelId \(id)")
        }
        #expect(p.classNames.count == 27 && p.classNames.first == "road" && p.classNames.last == "bicycle")
        #expect(p.classNames[11] == "polegroup" && p.classNames[24] == "train")
        #expect(p.palette[0] == RGB(128, 64, 128) && p.palette[19] == RGB(0, 0, 142) && p.palette[26] == RGB(119, 11, 32))
    }

    @Test func potsdam() {
        let p = LabelProtocol.potsdam3
        #expect(Array(p.rawToClass[0..<6]) == [0, 1, 2, 2, 0, 1])
        #expect(p.rawToClass[6...].allSatisfy { $0 == 255 })
        #expect(p.classCount == 3 && p.palette.count == 3)
        #expect(p.mapLabels([4, 5, 3, 200]) == [0, 1, 2, 255])
    }

    @Test func lookupAndGeneric() throws {
        for name in LabelProtocol.knownNames { #expect(try LabelProtocol.named(name).name == name) }
        #expect { try LabelProtocol.named("voc") } throws: { e in
            let s = "\(e)"
            return s.contains("cityscapes27") && s.contains("cocostuff27") && s.contains("potsdam3") && s.contains("'voc'")
        }
        let g = try LabelProtocol.named("generic21")
        #expect(g.classCount == 21 && g.classNames[20] == "class20")
        #expect(g.rawToClass[20] == 20 && g.rawToClass[21] == 255 && g.rawToClass[255] == 255)
        // VOC colours: 0 black, 1 (128,0,0), 15 person (192,128,128).
        #expect(g.palette[0] == RGB(0, 0, 0) && g.palette[1] == RGB(128, 0, 0) && g.palette[15] == RGB(192, 128, 128))
        #expect(Set((0..<256).map(LabelProtocol.vocColor)).count == 256)
        #expect(try LabelProtocol.generic(classCount: 21) == g)
        #expect(throws: KernelError.self) { try LabelProtocol.generic(classCount: 0) }
        #expect(throws: KernelError.self) { try LabelProtocol.named("generic300") }
    }
}
