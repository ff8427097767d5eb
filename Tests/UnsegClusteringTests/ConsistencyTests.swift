import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegClustering
import UnsegCore

/// The multi-scale consistency criterion (Two Tricks paper) in PriMaPs-EM's M-step.
@Suite struct ConsistencyTests {
    static let K = 3, C = 8, h = 6, w = 6, patch = 2

    /// Images with random features, random crop features and the given boxes (pixels of the 12x12 image).
    func samples(seed: UInt64, boxes: [CropBox?]) -> [EMSample] {
        boxes.enumerated().map { i, box in
            let f = randomMatrix(Self.h * Self.w, Self.C, seed: seed &+ UInt64(2 * i), lo: -2, hi: 2)
            var s = EMSample(features: f, height: Self.h, width: Self.w, labelHeight: Self.h * Self.patch,
                             labelWidth: Self.w * Self.patch, masks: [UInt8](repeating: 0, count: Self.h * Self.w * Self.patch * Self.patch))
            if let box {
                s.crop = EMCrop(features: randomMatrix(Self.h * Self.w, Self.C, seed: seed &+ UInt64(2 * i + 1), lo: -2, hi: 2), box: box)
            }
            return s
        }
    }

    static let boxes: [CropBox?] = [CropBox(x0: 2, y0: 4, x1: 8, y1: 10), nil, CropBox(x0: 0, y0: 0, x1: 12, y1: 12),
                                    CropBox(x0: 5, y0: 1, x1: 9, y1: 5)]

    /// The criterion written out directly in Double: each crop cell's centre in image pixels,
    /// the bilinear interpolant of the student's logits there (align_corners=False, clamped),
    /// softmax, cross-entropy to the teacher's target (or the squared error for `.mse`); mean over
    /// all crop cells, times the weight.
    func reference(params: [Double], teacher: PrototypeModel, samples: [EMSample], weight: Double, target: ConsistencyTarget) -> Double {
        let k = Self.K, c = Self.C
        var weff = [Double](repeating: 0, count: k * c)
        for q in 0..<k {
            let v = (0..<c).map { params[q * c + $0] }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<c { weff[q * c + j] = params[k * c + q] * v[j] / norm }
        }
        let tw = teacher.effectiveWeights()
        var total = 0.0, cells = 0
        for s in samples {
            guard let crop = s.crop else { continue }
            let logits: [[Double]] = (0..<(s.height * s.width)).map { i in
                (0..<k).map { q in (0..<c).reduce(0.0) { $0 + Double(s.features[i, $1]) * weff[q * c + $1] } }
            }
            func at(_ y: Int, _ x: Int) -> [Double] { logits[y * s.width + x] }
            let b = crop.box
            for yy in 0..<s.height {
                for xx in 0..<s.width {
                    let py = Double(b.y0) + (Double(yy) + 0.5) * Double(b.y1 - b.y0) / Double(s.height)
                    let px = Double(b.x0) + (Double(xx) + 0.5) * Double(b.x1 - b.x0) / Double(s.width)
                    let v = min(max(py / Double(Self.patch) - 0.5, 0), Double(s.height - 1))
                    let u = min(max(px / Double(Self.patch) - 0.5, 0), Double(s.width - 1))
                    let y0 = Int(v.rounded(.down)), x0 = Int(u.rounded(.down))
                    let y1 = min(y0 + 1, s.height - 1), x1 = min(x0 + 1, s.width - 1)
                    let fy = v - Double(y0), fx = u - Double(x0)
                    let z = (0..<k).map { q in
                        (1 - fy) * ((1 - fx) * at(y0, x0)[q] + fx * at(y0, x1)[q]) + fy * ((1 - fx) * at(y1, x0)[q] + fx * at(y1, x1)[q])
                    }
                    let m = z.max()!
                    let lse = m + Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) })
                    let tl = (0..<k).map { q in (0..<c).reduce(0.0) { $0 + Double(crop.features[yy * s.width + xx, $1]) * Double(tw[q, $1]) } }
                    let tm = tl.max()!
                    var t = tl.map { Foundation.exp($0 - tm) }
                    let ts = t.reduce(0, +)
                    t = t.map { $0 / ts }
                    if target == .hard { let a = tl.firstIndex(of: tm)!; t = (0..<k).map { $0 == a ? 1 : 0 } }
                    if target == .mse {
                        for q in 0..<k { let d = Foundation.exp(z[q] - lse) - t[q]; total += d * d }
                    } else {
                        for q in 0..<k where t[q] > 0 { total -= t[q] * (z[q] - lse) }
                    }
                    cells += 1
                }
            }
        }
        return weight * total / Double(cells)
    }

    @Test(arguments: [ConsistencyTarget.soft, .hard, .mse])
    func gradientMatchesFiniteDifferences(target: ConsistencyTarget) throws {
        let batch = samples(seed: 7, boxes: Self.boxes)
        let student = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: 11), gains: [1.3, 0.7, 1.1])
        let teacher = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: 12), gains: [1.0, 1.2, 0.9])
        let weight = 0.7
        let r = try MultiScaleConsistency.lossAndGradient(student: student, teacher: teacher, samples: batch, weight: weight, target: target)
        #expect(r.cells == 3 * Self.h * Self.w)
        let p0 = student.flatParameters.map(Double.init)
        let ref = reference(params: p0, teacher: teacher, samples: batch, weight: weight, target: target)
        #expect(abs(r.loss - ref) <= 1e-5 * max(1, abs(ref)), "loss \(r.loss) vs direct computation \(ref)")
        let eps = 1e-5
        for j in 0..<p0.count {
            var a = p0, b = p0
            a[j] += eps; b[j] -= eps
            let fd = (reference(params: a, teacher: teacher, samples: batch, weight: weight, target: target)
                      - reference(params: b, teacher: teacher, samples: batch, weight: weight, target: target)) / (2 * eps)
            let g = Double(r.gradient[j])
            #expect(abs(g - fd) <= 1e-4 + 1e-3 * abs(fd), "\(target) parameter \(j): gradient \(g), finite difference \(fd)")
        }
    }

    @Test func noCropsAddNothingAndThreadsChangeNothing() throws {
        let student = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: 21))
        let none = try MultiScaleConsistency.lossAndGradient(student: student, teacher: student, samples: samples(seed: 3, boxes: [nil, nil]),
                                                              weight: 1, target: .soft)
        #expect(none.loss == 0 && none.cells == 0 && none.gradient.allSatisfy { $0 == 0 })
        let batch = samples(seed: 4, boxes: Self.boxes + Self.boxes)
        let one = try MultiScaleConsistency.lossAndGradient(student: student, teacher: student, samples: batch, weight: 1, target: .soft,
                                                             executor: LocalExecutor(threads: 1))
        let three = try MultiScaleConsistency.lossAndGradient(student: student, teacher: student, samples: batch, weight: 1, target: .soft,
                                                               executor: LocalExecutor(threads: 3))
        #expect(one.loss == three.loss && one.gradient == three.gradient, "the result depends on the thread count")
    }

    /// With the teacher equal to the student on crop features that ARE the student's map cropped
    /// and upsampled, the soft targets equal the student's distribution: the gradient vanishes.
    @Test func selfConsistentTargetsGiveZeroGradient() throws {
        let student = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: 31))
        var batch = samples(seed: 5, boxes: [CropBox(x0: 2, y0: 2, x1: 8, y1: 8)])
        let r = MultiScaleConsistency.studentResampler(sample: batch[0], box: batch[0].crop!.box)
        batch[0].crop!.features = r.upsample(batch[0].features)   // linear: logits of these = the resampled logits
        let g = try MultiScaleConsistency.lossAndGradient(student: student, teacher: student, samples: batch, weight: 1, target: .soft)
        #expect(g.gradient.allSatisfy { abs($0) < 1e-5 }, "max |gradient| \(g.gradient.map(abs).max()!)")
    }

    @Test func trainerWithConsistencyIsDeterministicAndResumable() throws {
        let batches = (0..<3).map { samples(seed: 40 + UInt64($0), boxes: Self.boxes) }
        let init0 = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: 41))
        func config(_ threads: Int, teacher: PrototypeCopy = .running) -> EMConfig {
            var c = EMConfig(momentumEvery: 2, threads: threads, seed: 9)
            c.consistencyWeight = 0.5
            c.consistencyTeacher = teacher
            return c
        }
        var a = try EMTrainer(initial: init0, config: config(1))
        var b = try EMTrainer(initial: init0, config: config(3))
        var off = try EMTrainer(initial: init0, config: EMConfig(momentumEvery: 2, threads: 1, seed: 9))
        var consistency: [Double] = []
        for s in 0..<6 {
            consistency.append(try a.step(batch: batches[s % 3]).consistencyLoss)
            _ = try b.step(batch: batches[s % 3])
            _ = try off.step(batch: batches[s % 3])
        }
        #expect(a.state == b.state, "1 and 3 threads differ")
        #expect(consistency.allSatisfy { $0 > 0 })
        #expect(a.running != off.running, "the consistency term changed nothing")
        var first = try EMTrainer(initial: init0, config: config(2))
        for s in 0..<3 { _ = try first.step(batch: batches[s % 3]) }
        var resumed = try EMTrainer(state: first.state, config: config(2))
        for s in 3..<6 { _ = try resumed.step(batch: batches[s % 3]) }
        #expect(resumed.state == a.state, "resuming after 3 steps differs from 6 steps in one go")
        // The EMA teacher is another criterion.
        var ema = try EMTrainer(initial: init0, config: config(1, teacher: .momentum))
        for s in 0..<6 { _ = try ema.step(batch: batches[s % 3]) }
        #expect(ema.running != a.running)
    }

    @Test func badCropsAreRefusedNamingTheImage() throws {
        let student = PrototypeModel(directions: randomMatrix(Self.K, Self.C, seed: 51))
        var t = try EMTrainer(initial: student, config: { var c = EMConfig(); c.consistencyWeight = 1; return c }())
        var outside = samples(seed: 6, boxes: [CropBox(x0: 4, y0: 4, x1: 14, y1: 10)])
        #expect(throws: ClusteringError.self) { _ = try t.step(batch: outside) }
        outside[0].crop!.box = CropBox(x0: 4, y0: 4, x1: 5, y1: 10)   // under one patch
        do { _ = try t.step(batch: outside); Issue.record("a crop under one patch was accepted") } catch let e as ClusteringError {
            #expect("\(e)".contains("image 0") && "\(e)".contains("patch"), "\(e)")
        }
        #expect(t.stepCount == 0)
        #expect(throws: ClusteringError.self) { _ = try EMTrainer(initial: student, config: { var c = EMConfig(); c.consistencyWeight = -1; return c }()) }
    }
}

/// The student map's crop-and-upsample (`CropBox.resampler`) against direct computations.
@Suite struct CropResampleTests {
    /// A box on cell boundaries, away from the image border: the same as cropping its cells and
    /// upsampling them with the pipeline's bilinear resampler, except at the box's edge cells
    /// (where the cropped map clamps and the full map reads the cells beyond the box).
    @Test func cellAlignedBoxEqualsCropThenInterpolate() {
        let h = 8, w = 10, patch = 4, k = 3
        let map = randomMatrix(h * w, k, seed: 61)
        let box = CropBox(x0: 8, y0: 4, x1: 28, y1: 24)   // cells x 2..<7, y 1..<6: a 5x5 block
        let r = box.resampler(gridHeight: h, gridWidth: w, patch: patch, cropHeight: h, cropWidth: w)
        let z = r.upsample(map)
        var sub = Matrix(rows: 25, cols: k)
        for y in 0..<5 { for x in 0..<5 { for q in 0..<k { sub[y * 5 + x, q] = map[(1 + y) * w + 2 + x, q] } } }
        let direct = BilinearResampler(sourceHeight: 5, sourceWidth: 5, targetHeight: h, targetWidth: w).upsample(sub)
        var compared = 0
        for y in 0..<h {
            for x in 0..<w {
                // Inside the block's interpolation range: source coordinate within [0, 4] of the block.
                let sy = (Double(y) + 0.5) * 5 / Double(h) - 0.5, sx = (Double(x) + 0.5) * 5 / Double(w) - 0.5
                guard sy >= 0, sy <= 4, sx >= 0, sx <= 4 else { continue }
                for q in 0..<k { #expect(abs(z[y * w + x, q] - direct[y * w + x, q]) < 1e-5, "cell (\(y), \(x))") }
                compared += 1
            }
        }
        #expect(compared >= 48)
    }

    @Test func wholeImageBoxIsTheIdentityAndAdjointIsExact() {
        let h = 6, w = 7, patch = 3
        let map = randomMatrix(h * w, 2, seed: 62)
        let id = CropBox(x0: 0, y0: 0, x1: Float(w * patch), y1: Float(h * patch)).resampler(gridHeight: h, gridWidth: w, patch: patch, cropHeight: h, cropWidth: w)
        let same = id.upsample(map)
        for i in 0..<map.count { #expect(abs(same.data[i] - map.data[i]) < 1e-6) }
        let r = CropBox(x0: 1.5, y0: 2, x1: 13, y1: 11).resampler(gridHeight: h, gridWidth: w, patch: patch, cropHeight: h, cropWidth: w)
        let x = randomMatrix(h * w, 2, seed: 63), y = randomMatrix(h * w, 2, seed: 64)
        let ax = r.upsample(x), aty = r.upsampleAdjoint(y)
        let lhs = zip(ax.data, y.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let rhs = zip(x.data, aty.data).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(lhs - rhs) < 1e-4, "<A x, y> = \(lhs), <x, A^T y> = \(rhs)")
    }

    @Test func drawnBoxesAreDeterministicAndInside() {
        var sides = Set<Float>()
        for i in 0..<200 {
            let b = CropBox.draw(seed: 5, image: i, crop: i % 3, size: 96, patch: 8, scale: 0.2...0.7)
            #expect(b == CropBox.draw(seed: 5, image: i, crop: i % 3, size: 96, patch: 8, scale: 0.2...0.7))
            #expect(b.problem(width: 96, height: 96, patch: 8) == nil, "\(b)")
            #expect(b.width == b.height)
            sides.insert(b.width)
        }
        #expect(sides.count > 10 && sides.min()! >= 18 && sides.max()! <= 68)
        let half = CropBox.draw(seed: 1, image: 0, crop: 0, size: 320, patch: 8, scale: 0.5...0.5)
        #expect(half.width == 160)
        #expect(CropBox(x0: 0, y0: 0, x1: 97, y1: 10).problem(width: 96, height: 96, patch: 8) != nil)
        #expect(CropBox(x0: .nan, y0: 0, x1: 9, y1: 10).problem(width: 96, height: 96, patch: 8) != nil)
    }
}
