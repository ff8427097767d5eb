import Foundation
import UnsegClustering
import UnsegCore
import UnsegEvaluation
import UnsegLinAlg
import UnsegProposals

/// `unseg-bench peers-run DIR`: the unseg side of `Tools/bench peers`. Reads the inputs the peer
/// script wrote to DIR (`manifest.json` plus raw little-endian arrays), runs each task on one
/// thread (medians of `repeats`, after `warmup` untimed runs), writes each output as a raw array next to them and the times to
/// `unseg-times.json`. The script runs the peers on the same inputs and compares.
func peersRun(_ dir: String) throws {
    BLASPolicy.imagesInParallel.apply()   // one BLAS thread: the comparison is one thread each
    let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))) as? [String: Any] ?? [:]
    let tasks = manifest["tasks"] as? [[String: Any]] ?? []
    let repeats = manifest["repeats"] as? Int ?? 3
    // Untimed runs of each task first (this process is fresh: its first run pays page faults and
    // cold caches that a long-lived job does not).
    let warmup = manifest["warmup"] as? Int ?? 0
    func timed(_ body: () throws -> Void) rethrows -> Double {
        for _ in 0..<warmup { try body() }
        return try medianTime(repeats, body)
    }
    func raw<T>(_ name: String, _: T.Type) throws -> [T] {
        let d = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
        return d.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
    }
    func write<T>(_ name: String, _ a: [T]) throws {
        try a.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/" + name)) }
    }
    var times: [String: Double] = [:]
    for t in tasks {
        let kind = t["kind"] as? String ?? "", id = t["id"] as? String ?? kind
        switch kind {
        case "crf":
            let h = t["height"] as! Int, w = t["width"] as! Int, l = t["labels"] as! Int
            let img: [UInt8] = try raw(t["image"] as! String, UInt8.self)
            let probs: [Float] = try raw(t["probs"] as! String, Float.self)
            var out: [Int32] = []
            let sec = try timed {
                let crf = try DenseCRF(image: img, height: h, width: w, config: DenseCRFConfig())
                out = crf.labels(probabilities: probs, labels: l).map { Int32($0) }
            }
            times[id] = sec
            try write(id + ".out", out)
        case "lsa":
            let n = t["n"] as! Int
            let cost: [Double] = try raw(t["cost"] as! String, Double.self)
            var total = 0.0
            let sec = try timed {
                let a = try LinearAssignment.solve(cost: cost, rows: n, cols: n)
                total = zip(a.rowIndices, a.colIndices).reduce(0) { $0 + cost[$1.0 * n + $1.1] }
            }
            times[id] = sec
            try write(id + ".out", [total])
        case "kmeans":
            let n = t["n"] as! Int, d = t["d"] as! Int, k = t["k"] as! Int
            let x = Matrix(rows: n, cols: d, data: try raw(t["data"] as! String, Float.self))
            var inertia = 0.0
            let sec = try timed {
                let r = try KMeans.fit(x, config: KMeansConfig(clusters: k, restarts: t["restarts"] as! Int, seed: 0, threads: 1))
                inertia = r.inertia
            }
            times[id] = sec
            try write(id + ".out", [inertia])
        case "spectral":
            let n = t["n"] as! Int, c = t["c"] as! Int, k = t["k"] as! Int
            let f = Matrix(rows: n, cols: c, data: try raw(t["features"] as! String, Float.self))
            var values: [Float] = []
            let sec = try timed {
                values = try Spectral.eigenpairs(features: f, count: k - 1, solver: .automatic)?.values ?? []
            }
            times[id] = sec
            try write(id + ".out", values)
        case "em":
            let b = t["batch"] as! Int, h = t["h"] as! Int, w = t["w"] as! Int, c = t["c"] as! Int, k = t["k"] as! Int
            let H = t["H"] as! Int, W = t["W"] as! Int
            let feats: [Float] = try raw(t["features"] as! String, Float.self)
            let masks: [UInt8] = try raw(t["masks"] as! String, UInt8.self)
            let protos: [Float] = try raw(t["prototypes"] as! String, Float.self)
            let samples = (0..<b).map { i in
                EMSample(features: Matrix(rows: h * w, cols: c, data: Array(feats[(i * h * w * c)..<((i + 1) * h * w * c)])),
                         height: h, width: w, labelHeight: H, labelWidth: W, masks: Array(masks[(i * H * W)..<((i + 1) * H * W)]))
            }
            let initial = PrototypeModel(directions: Matrix(rows: k, cols: c, data: protos))
            var loss = 0.0
            var trainer = try EMTrainer(initial: initial, config: EMConfig(batchSize: b, flipProbability: 0, threads: 1, seed: 0))
            let sec = try timed { loss = try trainer.step(batch: samples).loss }
            times[id] = sec
            try write(id + ".out", [loss])
        default:
            throw KernelError("peers-run: unknown task kind '\(kind)'")
        }
        print(String(format: "  unseg %@: %.2f ms", id, times[id]! * 1000))
    }
    try JSONSerialization.data(withJSONObject: times, options: [.sortedKeys, .prettyPrinted])
        .write(to: URL(fileURLWithPath: dir + "/unseg-times.json"))
}
