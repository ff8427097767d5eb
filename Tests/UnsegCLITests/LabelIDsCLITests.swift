import Foundation
import Testing
import UnsegCore
import UnsegLinAlg
import UnsegStore

/// Labels are class ids for every consumer: a store whose `/labels` hold the dataset's raw ids
/// (`label_ids = raw`) evaluates exactly like its class-id twin, through the binary, for each
/// protocol. Every raw id of the protocol occurs, ignore ids included.
@Suite struct LabelIDsCLITests {
    static func writeStore(_ path: String, protocolName: String, labels: [[UInt8]], ids: LabelIDs, seed: UInt64) throws {
        let n = labels.count, grid = 4, patch = 4, c = 8
        let meta = StoreMetadata(backbone: "test", patchSize: patch, dataset: "twins", split: "val",
                                 labelProtocol: protocolName, classNames: try LabelProtocol.named(protocolName).classNames,
                                 labelIDs: ids)
        let w = try FeatureStoreWriter(path: path, metadata: meta, count: n, gridHeight: grid, gridWidth: grid, channels: c,
                                       options: StoreWriteOptions(featureType: .float32))
        for i in 0..<n {
            var r = SeededRandom.stream(seed: seed, index: UInt64(i))
            let f = Matrix(rows: grid * grid, cols: c, data: (0..<(grid * grid * c)).map { _ in r.float(in: -1..<1) })
            try w.write(i, features: f, image: nil, labels: labels[i], name: "img\(i)")
        }
        try w.commit()
    }

    @Test(arguments: ["cityscapes27", "cocostuff27", "potsdam3"])
    func rawIdStoreEvaluatesLikeItsClassIdTwin(protocolName: String) throws {
        let dir = scratchDir("label-ids-\(protocolName)")
        let proto = try LabelProtocol.named(protocolName)
        let pixels = 16 * 16, n = 4
        // Raw ids: every id 0...255, each image a shuffled cycle of them, so each raw id occurs.
        var rng = SeededRandom(seed: 77)
        var raw: [[UInt8]] = []
        for _ in 0..<n {
            let perm = rng.permutation(256)
            raw.append((0..<pixels).map { UInt8(perm[$0 % 256]) })
        }
        let classes = raw.map { proto.mapLabels($0) }
        #expect(Set(raw.flatMap { $0 }).count == 256, "every raw id occurs")
        #expect(classes.flatMap { $0 }.contains(255) && Set(classes.flatMap { $0 }).count == proto.classCount + 1)
        let rawStore = dir + "/raw.h5", classStore = dir + "/class.h5"
        try Self.writeStore(rawStore, protocolName: protocolName, labels: raw, ids: .raw, seed: 5)
        try Self.writeStore(classStore, protocolName: protocolName, labels: classes, ids: .class, seed: 5)

        // The reader maps raw ids: both stores give the same labels.
        let a = try FeatureStore(path: rawStore), b = try FeatureStore(path: classStore)
        for i in 0..<n { #expect(try a.labels(i) == b.labels(i), "\(protocolName) image \(i)") }

        // Predictions: a relabelled copy of the truth with some noise, so the metrics are not trivial.
        let k = proto.classCount
        let preds = dir + "/pred.h5"
        let pw = try LabelMapsWriter.predictions(path: preds, store: b, ids: .clusters, count: k)
        for i in 0..<n {
            let p = classes[i].map { c -> UInt8 in
                if rng.bernoulli(0.2) { return UInt8(rng.int(below: k)) }
                return c == 255 ? UInt8(rng.int(below: k)) : UInt8((Int(c) + 1) % k)
            }
            try pw.write("predictions", index: i, p)
        }
        try pw.commit()

        var reports: [[String: Any]] = []
        for store in [rawStore, classStore] {
            let json = dir + "/" + URL(fileURLWithPath: store).lastPathComponent + ".json"
            let r = try runUnseg(["evaluate", "--store", store, "--predictions", preds, "--json", json])
            #expect(r.status == 0, "\(r.stderr)")
            var obj = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
            obj.removeValue(forKey: "store")
            obj.removeValue(forKey: "predictions")
            reports.append(obj)
        }
        let same = NSDictionary(dictionary: reports[0]).isEqual(to: reports[1])
        #expect(same, "\(protocolName): raw-id and class-id stores evaluate differently:\n\(reports[0])\n\(reports[1])")
        #expect((reports[0]["miou"] as? Double ?? 0) > 0, "\(reports[0])")
    }

    @Test func rawIdsNeedAKnownProtocol() throws {
        let dir = scratchDir("label-ids-bad")
        let path = dir + "/raw-generic.h5"
        let meta = StoreMetadata(backbone: "test", patchSize: 4, dataset: "x", split: "val", labelProtocol: "generic5", labelIDs: .raw)
        let w = try FeatureStoreWriter(path: path, metadata: meta, count: 1, gridHeight: 2, gridWidth: 2, channels: 4)
        try w.write(0, features: Matrix(rows: 4, cols: 4), image: nil, labels: [UInt8](repeating: 0, count: 64), name: nil)
        try w.commit()
        let r = try runUnseg(["inspect", path])
        #expect(r.status == 1 && r.stderr.contains(path) && r.stderr.contains("label_ids is 'raw'") && r.stderr.contains("cityscapes27"),
                "\(r.stderr)")
    }
}
