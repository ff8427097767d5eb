import Foundation
import UnsegClustering
import UnsegCore
import UnsegEvaluation
import UnsegLinAlg
import UnsegProposals
import UnsegStore

/// One row of `unseg test`: a prototype copy, with or without the CRF, with or without flip
/// averaging, and its metrics.
public struct TestRow: Sendable {
    public var copy: PrototypeCopy
    public var crf: Bool
    public var flip: Bool
    public var report: EvaluationReport
    /// The row of the peer's own cluster probe (`/peer_clusters` of a store written with
    /// `unseg-extract --head`): the "SotA" row beside "+PriMaPs-EM"; `copy` is unused then.
    public var peer: Bool = false
    public var name: String { Self.name(copy: copy, crf: crf, flip: flip, peer: peer) }
    /// A file-system-safe tag (`momentum-crf-flip`, `peer-crf`).
    public var tag: String { Self.tag(copy: copy, crf: crf, flip: flip, peer: peer) }
    static func name(copy: PrototypeCopy, crf: Bool, flip: Bool, peer: Bool = false) -> String {
        "\(peer ? "peer's cluster probe" : copy == .momentum ? "momentum (theta_m)" : "running (theta_r)")\(crf ? " + CRF" : "")\(flip ? " + flip" : "")"
    }
    static func tag(copy: PrototypeCopy, crf: Bool, flip: Bool, peer: Bool = false) -> String {
        [peer ? "peer" : copy.rawValue, crf ? "crf" : nil, flip ? "flip" : nil].compactMap { $0 }.joined(separator: "-")
    }
}

/// `unseg test`: the reference test script's table in one command. For a checkpoint and a labelled
/// store: the momentum and running prototypes, each without and with the dense CRF (when the store
/// has `/images`), each without and with flip averaging (when it has `/features_flipped`); one
/// prediction pass per row, in memory, Hungarian-matched Acc / mIoU. A store holding a peer's code
/// (`unseg-extract --head`) adds the peer's own cluster probe first (`/peer_clusters`: argmax of
/// the cosine to each centroid, on the bilinearly upsampled code): the "SotA" row.
public enum TestJob {
    public struct Options: Sendable {
        public var checkpointPath: String
        public var storePath: String
        public var classCount: Int?
        public var crf = DenseCRFConfig()
        public var threads: Int = Parallel.coreCount
        public var progress: (@Sendable (String) -> ProgressSink?)? = nil
        public init(checkpointPath: String, storePath: String, classCount: Int? = nil, threads: Int = Parallel.coreCount) {
            self.checkpointPath = checkpointPath; self.storePath = storePath; self.classCount = classCount; self.threads = threads
        }
    }

    public static func run(_ o: Options) throws -> [TestRow] {
        BLASPolicy.imagesInParallel.apply()
        let ck = try FitCheckpoint.load(path: o.checkpointPath)
        let store = try FeatureStore(path: o.storePath)
        try ck.checkCompatible(with: store, checkpointPath: o.checkpointPath)
        guard store.layout.hasLabels else {
            throw StoreError(file: o.storePath, dataset: "/labels", "missing; `unseg test` needs ground-truth labels [N, H, W] uint8 in the store")
        }
        let proto = try EvaluateJob.labelProtocol(for: store, classCount: o.classCount)
        let l = store.layout
        let head = ck.head
        let embedding = try ck.maskModel()
        var rows: [TestRow] = []
        // The peer's cluster probe: its centroids as prototypes with gains 1 (the argmax of
        // v.x / |v| is the argmax of the cosine), read with no head or mask model.
        var models: [(copy: PrototypeCopy, peer: Bool, model: PrototypeModel)] = []
        if let clusters = try store.peerClusters() {
            models.append((.momentum, true, PrototypeModel(directions: clusters, gains: [Float](repeating: 1, count: clusters.rows))))
        }
        models += [(.momentum, false, ck.momentum), (.running, false, ck.running)]
        for (copy, peer, model) in models {
            let head: PrototypeHead = peer ? .cosine : head, embedding = peer ? nil : embedding
            for crf in l.hasImages ? [false, true] : [false] {
                for flip in l.hasFlippedFeatures ? [false, true] : [false] {
                    let label = TestRow.name(copy: copy, crf: crf, flip: flip, peer: peer), tag = TestRow.tag(copy: copy, crf: crf, flip: flip, peer: peer)
                    let sink = o.progress?(label)
                    var confusion = try ConfusionMatrix(clusterCount: model.classCount, classCount: proto.classCount)
                    let stream = try StoreStream(store: store, includeImages: crf, includeLabels: true, prefetch: 8, decodeThreads: o.threads)
                    var done = 0
                    while true {
                        var items = try stream.nextBatch(max(8, 4 * o.threads))
                        if items.isEmpty { break }
                        if flip { items = try items.map { try PredictJob.averagedWithFlip($0, store: store) } }
                        let batch = items, cfg = o.crf
                        let preds = try Parallel.tryMap(batch.count, threads: o.threads) { i in
                            try PredictJob.predict(model: model, head: head, embedding: embedding, features: batch[i].features, h: l.gridHeight,
                                                   w: l.gridWidth, H: l.imageHeight, W: l.imageWidth, image: batch[i].image,
                                                   refine: crf ? .crf : .none, crf: cfg)
                        }
                        for (item, p) in zip(batch, preds) { try confusion.accumulate(predictions: p, labels: item.labels!) }
                        done += batch.count
                        sink?.update(done: done, total: l.imageCount, note: nil)
                    }
                    sink?.finish()
                    let result = try Evaluation.evaluate(confusion, mode: .hungarian, classNames: proto.classNames)
                    let from = peer ? "\(o.storePath):/peer_clusters" : o.checkpointPath
                    rows.append(TestRow(copy: copy, crf: crf, flip: flip,
                                        report: EvaluationReport(result: result, confusion: confusion, labelProtocol: proto,
                                                                 storePath: o.storePath, predictionsPath: "\(from) [\(tag)]",
                                                                 imageCount: l.imageCount,
                                                                 source: PredictionSource(kind: .unseg, path: from,
                                                                                          detail: "predicted in memory by `unseg test` (\(tag))")),
                                        peer: peer))
                }
            }
        }
        return rows
    }

    /// The table as the reference prints it (Acc / mIoU, %).
    public static func table(_ rows: [TestRow]) -> String {
        let width = max(30, rows.map(\.name.count).max() ?? 0)
        var s = "prototypes".padding(toLength: width + 2, withPad: " ", startingAt: 0) + "   Acc    mIoU\n"
        s += String(repeating: "-", count: width) + "  ------  ------\n"
        for r in rows {
            s += r.name.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: "  %6.2f  %6.2f\n", r.report.result.accuracy, r.report.result.miou)
        }
        return s
    }

    /// Writes the rows as JSON (`json`) and a report folder (`report`: `report.md` with the table
    /// and one evaluation report per row in a sub-folder); returns the paths written.
    public static func write(_ rows: [TestRow], checkpoint: String, store: String, json: String?, report: String?) throws -> [String] {
        try OutputGuard.check(outputs: json.map { [("--json", $0)] } ?? [], inputs: [("--checkpoint", checkpoint), ("--store", store)],
                              folders: report.map { [("--report", $0)] } ?? [])
        var files: [String] = []
        if let j = json {
            var arr: [[String: Any]] = []
            for r in rows {
                let one = try JSONSerialization.jsonObject(with: try r.report.result.jsonData(pretty: false)) as? [String: Any] ?? [:]
                arr.append(["prototypes": r.peer ? "peer" : r.copy.rawValue, "crf": r.crf, "flip": r.flip, "name": r.name,
                            "accuracy": r.report.result.accuracy, "miou": r.report.result.miou, "result": one])
            }
            let data = try JSONSerialization.data(withJSONObject: ["checkpoint": checkpoint, "store": store, "rows": arr],
                                                  options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try writeOutputFile(data, to: j, option: "--json")
            files.append(j)
        }
        if let dir = report {
            let folder = try AtomicDirectory(path: dir, option: "--report")
            var md = "# unseg test\n\n- checkpoint: `\(checkpoint)`\n- store: `\(store)`\n\n| prototypes | Acc | mIoU | report |\n|---|---|---|---|\n"
            for r in rows {
                _ = try EvaluationReportWriter.write(r.report, to: folder.path(r.tag))
                md += String(format: "| %@ | %.2f | %.2f | [%@](%@/report.md) |\n", r.name, r.report.result.accuracy, r.report.result.miou, r.tag, r.tag)
            }
            try Data(md.utf8).write(to: URL(fileURLWithPath: folder.path("report.md")))
            try folder.commit()
            files.append(dir + "/report.md")
        }
        return files
    }
}

