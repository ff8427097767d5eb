import Foundation
import UnsegEvaluation
import UnsegLinAlg
import UnsegStore
import UnsegCore

/// The outcome of evaluating a predictions file against a store's labels.
public struct EvaluationReport: Sendable {
    public var result: EvaluationResult
    public var confusion: ConfusionMatrix
    public var labelProtocol: LabelProtocol
    public var storePath: String
    public var predictionsPath: String
    public var imageCount: Int
    /// What the predictions were: unseg's own file, a PNG folder, a plain HDF5 dataset.
    public var source: PredictionSource
    /// IoU by object size (`--by-size`, and always with `--report`), nil when not computed.
    public var bySize: SegmentSizeIoU? = nil
}

extension EvaluationReport {
    /// Writes the results as JSON (`json`) and the Markdown report with pictures (`report`
    /// directory); returns the files written.
    public func write(json: String?, report: String?) throws -> [String] {
        var files: [String] = []
        guard Distributed.isLead else { return files }   // under mpirun rank 0 writes
        let outputs: [OutputGuard.Named] = json.map { [("--json", $0)] } ?? []
        try OutputGuard.check(outputs: outputs, inputs: [("--store", storePath), ("--predictions", predictionsPath)],
                              folders: report.map { [("--report", $0)] } ?? [])
        if let j = json {
            try writeOutputFile(try jsonData(), to: j, option: "--json")
            files.append(j)
        }
        if let dir = report { files += try EvaluationReportWriter.write(self, to: dir) }
        return files
    }

    /// The result's JSON (`EvaluationResult`'s keys) plus `"predictions"`: path, kind
    /// (unseg / png-folder / hdf5-dataset), whether foreign, one line of detail. Sorted keys.
    public func jsonData() throws -> Data {
        guard var o = try JSONSerialization.jsonObject(with: try result.jsonData(pretty: false)) as? [String: Any] else {
            return try result.jsonData(pretty: true)
        }
        o["predictions"] = source.json
        if let b = bySize, let j = try JSONSerialization.jsonObject(with: JSONEncoder().encode(b)) as? [String: Any] {
            var bins = j
            bins["bins"] = SegmentSizeIoU.binNames
            bins["bin_edges"] = SegmentSizeIoU.edges
            o["iou_by_size"] = bins
        }
        return try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}

/// `unseg evaluate` as a library call: stream a store's labels and a predictions file,
/// accumulate one confusion matrix over the split (in parallel over images, merged in a
/// fixed order), match clusters to classes and compute the metrics of the field.
public enum EvaluateJob {
    /// The label protocol a store's `/labels` follow: its `protocol` attribute, or
    /// `classCount` classes with identity ids when the store names none (or one unseg does not know).
    public static func labelProtocol(for store: FeatureStore, classCount: Int?) throws -> LabelProtocol {
        if let n = classCount {
            var p = try LabelProtocol.generic(classCount: n)
            if let names = store.metadata.classNames, names.count == n {
                p = LabelProtocol(name: store.metadata.labelProtocol ?? p.name, classNames: names, palette: p.palette, rawToClass: p.rawToClass)
            }
            if let known = store.metadata.labelProtocol.flatMap({ try? LabelProtocol.named($0) }), known.classCount != n {
                throw StoreError(file: store.path, "the store's protocol '\(known.name)' has \(known.classCount) classes but --classes says \(n); drop --classes or fix it")
            }
            return p
        }
        guard let name = store.metadata.labelProtocol else {
            throw StoreError(file: store.path, "the store names no label protocol (root attribute 'protocol'); pass the class count, e.g. --classes 21")
        }
        do { return try LabelProtocol.named(name) } catch {
            throw StoreError(file: store.path, "the store's label protocol '\(name)' is not one unseg knows (\(LabelProtocol.knownNames.joined(separator: ", "))); pass its class count, e.g. --classes 21")
        }
    }

    /// Evaluates `predictionsPath` against the labels of `storePath`: a file of `unseg predict`,
    /// or (see `PredictionInputs`) a folder of label PNGs or a plain HDF5 dataset (`foreign.dataset`).
    /// - classCount: needed when the store names no known protocol.
    public static func run(storePath: String, predictionsPath: String, matching: MatchingMode = .hungarian,
                           classCount: Int? = nil, foreign: ForeignMapsOptions = .init(), bySize: Bool = false,
                           threads: Int = Parallel.coreCount, progress: ProgressSink? = nil) throws -> EvaluationReport {
        BLASPolicy.imagesInParallel.apply()
        let store = try FeatureStore(path: storePath)
        guard store.layout.hasLabels else {
            throw StoreError(file: storePath, dataset: "/labels", "missing; evaluation needs ground-truth labels [N, H, W] uint8 in the store")
        }
        let proto = try labelProtocol(for: store, classCount: classCount)
        let preds = try PredictionInputs.segmentation(path: predictionsPath, store: store, classCount: proto.classCount,
                                                      options: foreign, threads: threads)
        let l = store.layout
        let k = preds.clusterCount
        let done = Counter()
        // Under mpirun each rank counts its share of the images; the integer counts are summed
        // exactly (any order, same bits), after every rank agrees its share went well.
        let own = Distributed.shard(l.imageCount)
        let local = try Distributed.agree {
            try ConfusionMatrix.accumulate(imageCount: own.count, clusterCount: k, classCount: proto.classCount,
                                           threads: threads) { j, partial in
                let i = own.lowerBound + j
                let p = try preds.ids(i)
                let y = try store.labels(i)
                try partial.accumulate(predictions: p, labels: y)
                progress?.update(done: done.increment() + 1, total: own.count, note: nil)
            }
        }
        let confusion = try local.summed(by: Distributed.allreduceSum)
        progress?.finish()
        let result = try Evaluation.evaluate(confusion, mode: matching, classNames: proto.classNames)
        var report = EvaluationReport(result: result, confusion: confusion, labelProtocol: proto, storePath: storePath,
                                      predictionsPath: predictionsPath, imageCount: l.imageCount, source: preds.source)
        if bySize {
            // A second pass, after the matching: each ground-truth segment's IoU by its area.
            let lut: [UInt8] = (0..<256).map { id in id < result.matching.count && result.matching[id] >= 0 ? UInt8(result.matching[id]) : 255 }
            let parts: [[Int64]] = try Distributed.agree {
                try Parallel.map(own.count, threads: threads) { j -> Result<[Int64], Error> in
                    Result {
                        let i = own.lowerBound + j
                        let classes = try preds.ids(i).map { lut[Int($0)] }
                        var a = SegmentSizeIoU.Accumulator()
                        a.add(classes: classes, labels: try store.labels(i), height: l.imageHeight, width: l.imageWidth, classCount: proto.classCount)
                        return a.values
                    }
                }.map { try $0.get() }
            }
            var local = SegmentSizeIoU.Accumulator().values
            for p in parts { for j in 0..<local.count { local[j] += p[j] } }
            report.bySize = SegmentSizeIoU(.init(values: try Distributed.allreduceSum(local)))
        }
        return report
    }
}
