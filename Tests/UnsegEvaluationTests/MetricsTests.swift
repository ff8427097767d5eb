import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegEvaluation
import UnsegCore

@Suite struct ConfusionTests {
    @Test func handCountedPixels() throws {
        // K = 2 clusters, n = 3 classes.
        var c = try ConfusionMatrix(clusterCount: 2, classCount: 3)
        let pred: [UInt8] = [0, 0, 1, 1, 2, 255, 0, 1, 9]
        let lab: [UInt8] = [0, 1, 1, 2, 0, 2, 255, 7, 1]
        try c.accumulate(predictions: pred, labels: lab)
        // Valid: (0,0) (0,1) (1,1) (1,2); no prediction: label 0 (pred 2), 2 (pred 255), 1 (pred 9).
        #expect(c.counts == [1, 1, 0,
                             0, 1, 1])
        #expect(c.unassignedCounts == [1, 1, 1])
        #expect(c.ignoredPixels == 2)  // label 255 and label 7 >= n
        #expect(c.validPixels == 7)
        #expect(c.clusterTotals == [2, 2])
        #expect(c.classTotals == [2, 3, 2])
        #expect(c[1, 2] == 1)
        #expect(throws: EvaluationError.self) { try c.accumulate(predictions: [0, 1], labels: [0]) }
        #expect(throws: EvaluationError.self) { try ConfusionMatrix(clusterCount: 256, classCount: 3) }
        #expect(throws: EvaluationError.self) { try ConfusionMatrix(clusterCount: 3, classCount: 0) }
    }

    @Test func mergeEqualsSinglePassAndThreadsDoNotMatter() throws {
        let seed: UInt64 = 31337
        let (pred, lab) = syntheticImages(seed: seed, imageCount: 13, pixels: 997, k: 40, n: 27,
                                          pCorrect: 0.5, ignoreRate: 0.1)
        var single = try ConfusionMatrix(clusterCount: 40, classCount: 27)
        try single.accumulate(predictions: pred, labels: lab)
        var merged = try ConfusionMatrix(clusterCount: 40, classCount: 27)
        var sum = merged
        for i in 0..<13 {
            var part = try ConfusionMatrix(clusterCount: 40, classCount: 27)
            try part.accumulate(predictions: Array(pred[(i * 997)..<((i + 1) * 997)]),
                                labels: Array(lab[(i * 997)..<((i + 1) * 997)]))
            merged.merge(part)
            sum = sum + part
        }
        #expect(merged == single, "seed \(seed)")
        #expect(sum == single, "seed \(seed)")
        for threads in [1, 2, 3, 8] {
            let par = try ConfusionMatrix.accumulate(predictions: pred, labels: lab, imageCount: 13,
                                                     clusterCount: 40, classCount: 27, threads: threads)
            #expect(par == single, "seed \(seed) threads \(threads)")
        }
        #expect(single.validPixels + single.ignoredPixels == Int64(pred.count))
    }

    @Test func fusedLabelMapEqualsMappingFirst() throws {
        var rng = SeededRandom(seed: 5)
        let raw = (0..<5000).map { _ in UInt8(rng.int(below: 256)) }
        let pred = (0..<5000).map { _ in UInt8(rng.int(below: 30)) }
        let proto = LabelProtocol.cityscapes27
        var fused = try ConfusionMatrix(clusterCount: 27, classCount: 27)
        try fused.accumulate(predictions: pred, labels: raw, labelMap: proto.rawToClass)
        var twoStep = try ConfusionMatrix(clusterCount: 27, classCount: 27)
        try twoStep.accumulate(predictions: pred, labels: proto.mapLabels(raw))
        #expect(fused == twoStep, "seed 5")
        #expect(throws: EvaluationError.self) { try fused.accumulate(predictions: pred, labels: raw, labelMap: [0, 1]) }
    }

    @Test func parallelErrorIsLowestImage() throws {
        do {
            _ = try ConfusionMatrix.accumulate(imageCount: 20, clusterCount: 3, classCount: 3, threads: 2) { i, _ in
                if i == 7 || i == 15 { throw EvaluationError("test", "image \(i)") }
            }
            Issue.record("no error")
        } catch let e as EvaluationError {
            #expect(e.message == "image 7")
        }
    }
}

@Suite struct MetricsTests {
    /// K = 3, n = 2, one unassigned pixel of class 0; values worked out by hand.
    func handMatrix() throws -> ConfusionMatrix {
        try ConfusionMatrix(counts: [[5, 1], [2, 3], [0, 4]], unassigned: [1, 0], ignored: 10)
    }

    @Test func handComputedHungarian() throws {
        let r = try Evaluation.evaluate(try handMatrix(), mode: .hungarian, classNames: ["a", "b"])
        // Best one-to-one: cluster 0 -> a (5), cluster 2 -> b (4) = 9; cluster 1 unmatched.
        #expect(r.matching == [0, -1, 1])
        // a: TP 5, predicted 6, GT 5+2+0+1 = 8 -> 5/9; b: TP 4, predicted 4, GT 8 -> 4/8.
        let tol = 1e-12  // a handful of Double operations
        #expect(abs(r.perClassIoU[0]! - 500.0 / 9) < tol && abs(r.perClassIoU[1]! - 50) < tol)
        expectClose(Double(r.miou), Double((500.0 / 9 + 50) / 2), abs: tol)
        #expect(abs(r.accuracy - 100.0 * 9 / 16) < tol)  // unassigned pixel counts in the 16
        #expect(abs(r.perClassPrecision[0]! - 500.0 / 6) < tol && r.perClassPrecision[1]! == 100)
        #expect(r.perClassRecall[0]! == 62.5 && r.perClassRecall[1]! == 50)
        #expect(r.pixels == 16 && r.skippedClasses.isEmpty)
    }

    @Test func handComputedMajority() throws {
        let r = try Evaluation.evaluate(try handMatrix(), mode: .majority)
        #expect(r.matching == [0, 1, 1])
        // b: TP 3+4 = 7, predicted 9, GT 8 -> 7/10.
        expectClose(Double(r.perClassIoU[1]!), Double(70), abs: 1e-12)
        expectClose(Double(r.accuracy), Double(75), abs: 1e-12)
        #expect(r.classNames == ["class0", "class1"])
    }

    @Test func hungarianIoUDiffersWhereItShould() throws {
        // Cluster 0 is large and mixed, cluster 2 is small and pure class 0. Pixels:
        // 0->a, 1->b = 19 + 19 = 38 beats 2->a, 1->b = 17 + 19 = 36. IoU: 0->a 19/(37+49-19)
        // + 1->b 19/(32+37-19) = 0.2836 + 0.38 = 0.664 loses to 2->a 17/49 + 0.38 = 0.727.
        let c = try ConfusionMatrix(counts: [[19, 18], [13, 19], [17, 0]])
        #expect(try Evaluation.match(c, mode: .hungarian) == [0, 1, -1])
        #expect(try Evaluation.match(c, mode: .hungarianIoU) == [-1, 1, 0])
        let byIoU = try Evaluation.evaluate(c, mode: .hungarianIoU)
        expectClose(Double(byIoU.perClassIoU[0]!), Double(100.0 * 17 / 49), abs: 1e-12)
        expectClose(Double(byIoU.accuracy), Double(100.0 * 36 / 86), abs: 1e-12)
    }

    @Test func perfectPredictionIs100() throws {
        var rng = SeededRandom(seed: 11)
        for (k, n) in [(27, 27), (50, 27), (3, 3)] {
            let perm = rng.sample(n, from: k)  // injective class -> cluster
            let lab = (0..<20000).map { _ in UInt8(rng.int(below: n)) }
            let pred = lab.map { UInt8(perm[Int($0)]) }
            var c = try ConfusionMatrix(clusterCount: k, classCount: n)
            try c.accumulate(predictions: pred, labels: lab)
            for mode in MatchingMode.allCases {
                let r = try Evaluation.evaluate(c, mode: mode)
                #expect(r.miou == 100 && r.accuracy == 100, "seed 11 K \(k) n \(n) \(mode)")
                for cl in 0..<n { #expect(r.matching[perm[cl]] == cl) }
            }
        }
    }

    @Test func relabellingClustersChangesNothing() throws {
        let seed: UInt64 = 424242
        var rng = SeededRandom(seed: seed)
        for (k, n) in [(27, 27), (50, 27), (10, 4)] {
            let (pred, lab) = syntheticImages(seed: seed &+ UInt64(k), imageCount: 4, pixels: 5000, k: k, n: n,
                                              pCorrect: 0.6, ignoreRate: 0.05)
            let perm = rng.permutation(k)
            let relabelled = pred.map { UInt8(perm[Int($0)]) }
            var a = try ConfusionMatrix(clusterCount: k, classCount: n)
            try a.accumulate(predictions: pred, labels: lab)
            var b = try ConfusionMatrix(clusterCount: k, classCount: n)
            try b.accumulate(predictions: relabelled, labels: lab)
            for mode in MatchingMode.allCases {
                let ra = try Evaluation.evaluate(a, mode: mode), rb = try Evaluation.evaluate(b, mode: mode)
                // Same sums in a different order: agreement to 1e-9 percent.
                #expect(abs(ra.miou - rb.miou) < 1e-9 && abs(ra.accuracy - rb.accuracy) < 1e-9,
                        "seed \(seed) K \(k) \(mode): \(ra.miou) vs \(rb.miou)")
                for cl in 0..<k { #expect(rb.matching[perm[cl]] == ra.matching[cl], "seed \(seed) K \(k) \(mode)") }
            }
        }
    }

    @Test func absentClassIsSkippedAndReported() throws {
        // 4 classes, class 2 neither labelled nor predicted (cluster 2 never used).
        let lab: [UInt8] = [0, 0, 1, 1, 3, 3, 255]
        let pred: [UInt8] = [0, 0, 1, 0, 3, 3, 2]
        var c = try ConfusionMatrix(clusterCount: 4, classCount: 4)
        try c.accumulate(predictions: pred, labels: lab)
        let r = try Evaluation.evaluate(c, classNames: ["a", "b", "c", "d"])
        #expect(r.skippedClasses == [2])
        #expect(r.perClassIoU[2] == nil && r.perClassPrecision[2] == nil && r.perClassRecall[2] == nil)
        #expect(r.scoredClassCount == 3)
        // a: TP 2, P 3, G 2 -> 2/3; b: TP 1, P 1, G 2 -> 1/2; d: 1.
        expectClose(Double(r.miou), Double(100 * (2.0 / 3 + 0.5 + 1) / 3), abs: 1e-12)
        let table = r.table()
        #expect(table.contains("skipped: c"), "\(table)")
        #expect(table.contains("mean over 3 of 4 classes"))
        #expect(table.contains("hungarian (one-to-one"))
        // A class predicted but absent from GT scores 0, it is not skipped.
        let c2 = try ConfusionMatrix(counts: [[5, 0], [0, 0], [0, 0]], unassigned: [0, 0])
        let r2 = try Evaluation.evaluate(c2, matching: [0, 1, -1], mode: .hungarian)
        #expect(r2.skippedClasses == [1])
        let c3 = try ConfusionMatrix(counts: [[5, 0], [3, 0]])
        let r3 = try Evaluation.evaluate(c3, matching: [0, 1], mode: .majority)
        #expect(r3.skippedClasses.isEmpty && r3.perClassIoU[1] == 0 && r3.perClassRecall[1] == nil)
    }

    @Test func errors() throws {
        let empty = try ConfusionMatrix(clusterCount: 3, classCount: 3)
        #expect { try Evaluation.evaluate(empty) } throws: { ($0 as? EvaluationError)?.kind == "no-valid-pixels" }
        let c = try handMatrix()
        #expect(throws: EvaluationError.self) { try Evaluation.evaluate(c, matching: [0, 1], mode: .hungarian) }
        #expect(throws: EvaluationError.self) { try Evaluation.evaluate(c, matching: [0, 1, 2], mode: .hungarian) }
        #expect(throws: EvaluationError.self) { try Evaluation.evaluate(c, classNames: ["x"]) }
        #expect(try MatchingMode.named("hungarian-iou") == .hungarianIoU)
        #expect { try MatchingMode.named("greedy") } throws: {
            "\($0)".contains("hungarian, hungarian-iou, majority")
        }
    }

    @Test func jsonHasExactlyTheKeys() throws {
        let lab: [UInt8] = [0, 0, 1, 1, 3, 3]
        let pred: [UInt8] = [0, 0, 1, 0, 3, 3]
        var c = try ConfusionMatrix(clusterCount: 5, classCount: 4)
        try c.accumulate(predictions: pred, labels: lab)
        let r = try Evaluation.evaluate(c, mode: .hungarianIoU)
        let data = try r.jsonData()
        let obj = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(obj.keys) == ["miou", "accuracy", "per_class_iou", "class_names", "matching", "pixels",
                                  "matching_mode", "skipped_classes", "per_class_precision", "per_class_recall"])
        let ious = try #require(obj["per_class_iou"] as? [Any])
        #expect(ious[2] is NSNull)
        #expect(obj["matching_mode"] as? String == "hungarian-iou")
        #expect(obj["skipped_classes"] as? [Int] == [2])
        #expect(obj["pixels"] as? Int == 6)
        #expect((obj["matching"] as? [Int])?.count == 5)
        let back = try JSONDecoder().decode(EvaluationResult.self, from: data)
        #expect(back == r)
    }

    /// mIoU, accuracy and matched pixels agree with an independent NumPy / scipy
    /// computation (np.bincount confusion, linear_sum_assignment, IoU) to 1e-9.
    @Test func agreesWithNumPy() throws {
        let seed: UInt64 = 8_675_309
        struct Case { var k: Int; var n: Int; var pred: [UInt8]; var lab: [UInt8]; var images: Int }
        var cases: [Case] = []
        func add(_ k: Int, _ n: Int, images: Int, pixels: Int, p: Double, ignore: Double, caseSeed: UInt64) {
            let (pr, lb) = syntheticImages(seed: caseSeed, imageCount: images, pixels: pixels, k: k, n: n,
                                           pCorrect: p, ignoreRate: ignore)
            cases.append(Case(k: k, n: n, pred: pr, lab: lb, images: images))
        }
        add(27, 27, images: 12, pixels: 4096, p: 0.6, ignore: 0.05, caseSeed: seed)
        add(50, 27, images: 12, pixels: 4096, p: 0.5, ignore: 0.1, caseSeed: seed + 1)  // over-clustering
        add(5, 3, images: 6, pixels: 1000, p: 0.4, ignore: 0.0, caseSeed: seed + 2)
        add(20, 27, images: 8, pixels: 2048, p: 0.7, ignore: 0.02, caseSeed: seed + 3)  // K < n
        add(10, 10, images: 4, pixels: 3000, p: 0.8, ignore: 0.0, caseSeed: seed + 4)
        // Case 1 plus: two entirely-ignore images, no-prediction pixels (255 and >= K),
        // and labels >= n that must be left out.
        var rng = SeededRandom(seed: seed + 5)
        var special = cases[1]
        for t in 0..<4096 { special.lab[t] = 255; special.lab[5 * 4096 + t] = 255 }
        for t in 0..<special.pred.count where rng.bernoulli(0.03) {
            special.pred[t] = rng.bernoulli(0.5) ? 255 : UInt8(50 + rng.int(below: 100))
        }
        for t in 0..<special.lab.count where rng.bernoulli(0.02) { special.lab[t] = UInt8(27 + rng.int(below: 200)) }
        cases.append(special)
        // Class 8 and 9 absent from the labels (and their clusters from predictions).
        var absent = cases[4]
        for t in 0..<absent.lab.count where absent.lab[t] >= 8 { absent.lab[t] = 0 }
        absent.pred = absent.pred.map { $0 >= 8 ? 0 : $0 }
        cases.append(absent)

        let dir = try makeTempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var meta: [[String: Int]] = []
        for (i, c) in cases.enumerated() {
            try Data(c.pred).write(to: dir.appendingPathComponent("pred\(i).bin"))
            try Data(c.lab).write(to: dir.appendingPathComponent("lab\(i).bin"))
            meta.append(["K": c.k, "n": c.n])
        }
        try JSONSerialization.data(withJSONObject: meta).write(to: dir.appendingPathComponent("cases.json"))
        let script = """
        import sys, json, numpy as np
        from scipy.optimize import linear_sum_assignment
        d = sys.argv[1]
        out = []
        for i, cs in enumerate(json.load(open(d + '/cases.json'))):
            K, n = cs['K'], cs['n']
            p = np.fromfile(f'{d}/pred{i}.bin', dtype=np.uint8).astype(np.int64)
            l = np.fromfile(f'{d}/lab{i}.bin', dtype=np.uint8).astype(np.int64)
            keep = l < n
            p, l = p[keep], l[keep]
            p = np.where(p < K, p, K)  # extra row K: no prediction
            full = np.bincount(p * n + l, minlength=(K + 1) * n).reshape(K + 1, n)
            hist = full[:K]
            gt = full.sum(0)
            def score(match):
                tp = np.zeros(n); pr = np.zeros(n)
                for k in range(K):
                    if match[k] >= 0:
                        tp[match[k]] += hist[k, match[k]]; pr[match[k]] += hist[k].sum()
                union = pr + gt - tp
                ok = union > 0
                return dict(miou=100 * float(np.mean(tp[ok] / union[ok])), acc=100 * float(tp.sum() / gt.sum()),
                            skipped=[int(c) for c in np.where(~ok)[0]], matched=float(tp.sum()))
            res = {}
            r, c = linear_sum_assignment(hist, maximize=True)
            m = -np.ones(K, dtype=np.int64); m[r] = c
            res['hungarian'] = score(m)
            with np.errstate(divide='ignore', invalid='ignore'):
                iou = hist / (hist.sum(1)[:, None] + gt[None, :] - hist)
            iou = np.nan_to_num(iou)
            r, c = linear_sum_assignment(iou, maximize=True)
            m = -np.ones(K, dtype=np.int64); m[r] = c
            res['hungarian-iou'] = score(m)
            res['hungarian-iou']['objective'] = float(iou[r, c].sum())
            m = np.where(hist.sum(1) > 0, hist.argmax(1), -1)
            res['majority'] = score(m)
            res['pixels'] = int(gt.sum())
            out.append(res)
        print(json.dumps(out))
        """
        let output = try runPython(script, args: [dir.path])
        let ref = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]])
        try #require(ref.count == cases.count)
        for (i, c) in cases.enumerated() {
            let conf = try ConfusionMatrix.accumulate(predictions: c.pred, labels: c.lab, imageCount: c.images,
                                                      clusterCount: c.k, classCount: c.n, threads: 2)
            #expect(Int64(ref[i]["pixels"] as! Int) == conf.validPixels, "seed \(seed) case \(i)")
            for mode in MatchingMode.allCases {
                let r = try Evaluation.evaluate(conf, mode: mode)
                let py = ref[i][mode.rawValue] as! [String: Any]
                let ctx = "seed \(seed) case \(i) K \(c.k) n \(c.n) \(mode)"
                // Ratios of integers below 2^31 and a mean of <= 27 terms: both sides are
                // within a few ulps of the exact value, far below 1e-9 percent.
                expectClose(Double(r.miou), Double((py["miou"] as! Double)), abs: 1e-9, "\(ctx): \(r.miou) vs \(py["miou"]!)")
                expectClose(Double(r.accuracy), Double((py["acc"] as! Double)), abs: 1e-9, "\(ctx): \(r.accuracy) vs \(py["acc"]!)")
                #expect(r.skippedClasses == (py["skipped"] as! [Int]), "\(ctx)")
                let matched = (0..<c.k).reduce(Int64(0)) { $0 + (r.matching[$1] >= 0 ? conf[$1, r.matching[$1]] : 0) }
                #expect(Double(matched) == (py["matched"] as! Double), "\(ctx)")
            }
        }
        #expect(try Evaluation.evaluate(
            try ConfusionMatrix.accumulate(predictions: cases[6].pred, labels: cases[6].lab, imageCount: 4,
                                           clusterCount: 10, classCount: 10, threads: 1)).skippedClasses == [8, 9])
    }
}
