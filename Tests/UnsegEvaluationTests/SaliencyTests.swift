import Foundation
import Testing
import UnsegTestSupport
@testable import UnsegEvaluation

/// Saliency metrics and CorLoc against an independent NumPy / scipy.ndimage computation on seeded
/// random maps (including images with no foreground and fully ignored images).
@Suite struct SaliencyTests {
    static let reference = """
    import json, sys
    import numpy as np
    from scipy import ndimage
    rng = np.random.default_rng(int(sys.argv[1]))
    H, W, N = 24, 32, 14
    soft, lab, boxes = [], [], []
    for i in range(N):
        s = rng.integers(0, 256, size=(H, W)).astype(np.uint8)
        g = (rng.random((H, W)) < 0.3).astype(np.uint8)
        if i == 2: g[:] = 0                      # no foreground in the ground truth
        if i == 3: s[:] = 0                      # no foreground predicted at any threshold
        if i == 4: g[:] = 255                    # fully ignored: left out
        if i == 5: g[rng.random((H, W)) < 0.2] = 255
        if i == 6: s[:] = 0; s[5:12, 3:9] = 200; s[15:20, 20:30] = 150   # two blobs, the second box is larger
        soft.append(s); lab.append(g)
        boxes.append([[float(v) for v in rng.uniform(0, 20, 2)] + [0, 0] for _ in range(1 + i % 3)])
        for b in boxes[-1]:
            b[2], b[3] = b[0] + rng.uniform(2, 14), b[1] + rng.uniform(2, 12)
    acc, iou, P, R = [], [], np.zeros(255), np.zeros(255)
    n = 0
    for s, g in zip(soft, lab):
        v = g != 255
        if not v.any(): continue
        n += 1
        gt = (g == 1) & v
        p = (s >= 128) & v
        acc.append(((p == gt) & v).sum() / v.sum())
        u = (p | gt).sum()
        iou.append(1.0 if u == 0 else (p & gt).sum() / u)
        for t in range(255):
            pt = (s > t) & v
            tp = (pt & gt).sum()
            P[t] += 0 if pt.sum() == 0 else tp / pt.sum()
            R[t] += 0 if gt.sum() == 0 else tp / gt.sum()
    P /= n; R /= n
    F = np.where(P + R > 0, 1.3 * P * R / np.maximum(0.3 * P + R, 1e-300), 0)
    corloc = []
    for s, bs in zip(soft, boxes):
        m = s >= 128
        lab8, k = ndimage.label(m, structure=np.ones((3, 3)))
        best = None
        for sl in ndimage.find_objects(lab8):
            b = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            a = (b[2] - b[0]) * (b[3] - b[1])
            if best is None or a > best[1]: best = (b, a)
        ok = False
        if best is not None:
            x0, y0, x1, y1 = best[0]
            for g in bs:
                iw = max(0, min(x1, g[2]) - max(x0, g[0])); ih = max(0, min(y1, g[3]) - max(y0, g[1]))
                inter = iw * ih; union = (x1 - x0) * (y1 - y0) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                ok = ok or (union > 0 and inter / union >= 0.5)
        corloc.append(ok)
    print(json.dumps(dict(soft=[s.ravel().tolist() for s in soft], labels=[g.ravel().tolist() for g in lab], boxes=boxes,
                          H=H, W=W, images=n, acc=100 * float(np.mean(acc)), iou=100 * float(np.mean(iou)),
                          fmax=100 * float(F.max()), best=int(F.argmax()), P=P.tolist(), R=R.tolist(), corloc=corloc)))
    """

    @Test(arguments: [UInt64(1), 2, 3])
    func agreesWithNumPyAndScipy(seed: UInt64) throws {
        let out = try runPython(Self.reference, args: ["\(seed)"])
        let ref = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let soft = (ref["soft"] as! [[Int]]).map { $0.map(UInt8.init) }
        let labels = (ref["labels"] as! [[Int]]).map { $0.map(UInt8.init) }
        var acc = Saliency.Accumulator()
        for (s, l) in zip(soft, labels) { try acc.add(soft: s, labels: l) }
        let r = try acc.result()
        #expect(r.images == ref["images"] as! Int, "seed \(seed): fully ignored images are left out")
        expectClose(r.accuracy, ref["acc"] as! Double, abs: 1e-4, "seed \(seed) accuracy (%)")
        expectClose(r.iou, ref["iou"] as! Double, abs: 1e-4, "seed \(seed) IoU (%)")
        expectClose(r.maxFBeta, ref["fmax"] as! Double, abs: 1e-4, "seed \(seed) max F-beta (%)")
        expectAllClose(r.precision, ref["P"] as! [Double], abs: 1e-6, "seed \(seed) precision curve")
        expectAllClose(r.recall, ref["R"] as! [Double], abs: 1e-6, "seed \(seed) recall curve")
        #expect(r.bestThreshold == ref["best"] as! Int)
        let H = ref["H"] as! Int, W = ref["W"] as! Int
        let boxes = (ref["boxes"] as! [[[Double]]]).map { $0.map { CorLoc.Box(x0: $0[0], y0: $0[1], x1: $0[2], y1: $0[3]) } }
        let want = ref["corloc"] as! [Bool]
        for i in 0..<soft.count {
            let got = CorLoc.isCorrect(predicted: CorLoc.predictedBox(soft: soft[i], height: H, width: W), truth: boxes[i])
            #expect(got == want[i], "seed \(seed) image \(i): CorLoc")
        }
    }

    @Test func handCases() throws {
        // Two blobs: the component with the larger box wins; 8-connectivity joins diagonal pixels.
        var m = [UInt8](repeating: 0, count: 6 * 6)
        m[0] = 255; m[7] = 255              // diagonal pair: one component, box [0, 2) x [0, 2)
        for x in 3..<6 { m[5 * 6 + x] = 130 }   // a row of three: box [3, 6) x [5, 6), area 3 < 4
        #expect(CorLoc.predictedBox(soft: m, height: 6, width: 6) == CorLoc.Box(x0: 0, y0: 0, x1: 2, y1: 2))
        #expect(CorLoc.predictedBox(soft: [UInt8](repeating: 127, count: 4), height: 2, width: 2) == nil, "127 is below 0.5")
        #expect(!CorLoc.isCorrect(predicted: nil, truth: [CorLoc.Box(x0: 0, y0: 0, x1: 1, y1: 1)]))
        // A perfect map: 100 % accuracy and IoU, F-beta 100 at every threshold below 255.
        var acc = Saliency.Accumulator()
        try acc.add(soft: [255, 0, 255, 0], labels: [1, 0, 1, 0])
        let r = try acc.result()
        #expect(r.accuracy == 100 && r.iou == 100 && r.maxFBeta == 100)
        #expect(throws: EvaluationError.self) { try Saliency.Accumulator().result() }
        var bad = Saliency.Accumulator()
        #expect(throws: EvaluationError.self) { try bad.add(soft: [0], labels: [7]) }
    }
}
