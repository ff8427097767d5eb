import UnsegCore
import UnsegLinAlg

/// A zoomed-in crop of an EM training image (the Two Tricks paper's multi-scale views): the
/// crop's features on a grid as large as the image's, and its box in image pixels.
public struct EMCrop: Sendable {
    /// `[h*w, C]`: the backbone on the box resized to the full input size (`/features_crops`).
    public var features: Matrix
    /// The box in pixels of the image (label resolution), exclusive ends.
    public var box: CropBox
    public init(features: Matrix, box: CropBox) { self.features = features; self.box = box }
}

/// What the student is matched to on the crop, and how.
public enum ConsistencyTarget: String, Sendable, Codable, CaseIterable {
    /// Cross-entropy to the teacher's softmax (a soft assignment).
    case soft
    /// Cross-entropy to the teacher's argmax (a hard assignment; ties: the lowest class).
    case hard
    /// Squared error between the student's and the teacher's softmax, summed over classes: the
    /// reference's loss (`(mask_s - target).pow(2)`, there on guided-filtered soft masks).
    case mse
}

/// The multi-scale consistency criterion of the Two Tricks paper (Sari, Favaro, Locatello), in
/// PriMaPs-EM's M-step.
///
/// The teacher sees the zoomed-in crop: its class assignment of each crop cell from the crop's
/// own features, detached (no gradient). The student sees the whole image: its logits on the
/// full grid, cropped to the box and bilinearly upsampled to the crop's grid
/// (`CropBox.resampler`), softmax per cell. The loss is the cross-entropy of the student's
/// distribution to the teacher's (soft or hard) assignment, averaged over the crop cells of the
/// batch and weighted: `weight (1/N) sum_j -sum_k t_jk log softmax(A l)_jk`. Its gradient with
/// respect to the student's logits is `weight/N A^T (softmax(A l) - t)`, through the student only.
/// `.mse` is the reference's squared error `weight (1/N) sum_j |softmax(A l)_j - t_j|^2` instead
/// (gradient `weight/N A^T (p * (g - <p, g>))`, `g = 2 (p - t)`).
///
/// Why the M-step: the idea is a dense prediction matched across scales, and PriMaPs-EM's
/// prototypes are the dense predictor of the pipeline (a class per cell, upsampled); the
/// MaskContrast-style head embeds whole masks, with no per-cell prediction to crop.
/// The reference (alpErenSari/segmentation-tricks) uses a squared error between the student's
/// soft mask and the guided-filtered teacher prediction; here, as the issue asks, cross-entropy.
public enum MultiScaleConsistency {
    /// Loss and gradient of the criterion for the images of `samples` that carry a crop.
    /// - Returns: the weighted loss (0 without crops), the gradient w.r.t. `student`'s
    ///   `flatParameters`, w.r.t. its effective weights `[K, C]`, and the crop cells counted.
    /// Parallel over images; the result does not depend on the executor's threads or processes.
    public static func lossAndGradient(student: PrototypeModel, teacher: PrototypeModel, samples: [EMSample],
                                       weight: Double, target: ConsistencyTarget,
                                       executor: any ImageExecutor = LocalExecutor(threads: 1)) throws
        -> (loss: Double, gradient: [Float], effectiveGradient: Matrix, cells: Int) {
        let k = student.classCount, c = student.channelCount
        let ws = student.effectiveWeights(), wt = teacher.effectiveWeights()
        // Per image: [crop cells, the summed cross-entropy (a Double in two Floats), the unscaled
        // effective gradient (A^T (p - t))^T F, K*C], or [0] without a crop; reduced in image order.
        let parts: [[Float]] = try executor.map(samples.count) { i in
            guard let crop = samples[i].crop else { return [0] }
            let s = samples[i]
            let (ce, g) = imageTerm(studentWeights: ws, teacherWeights: wt, sample: s, crop: crop, target: target)
            return [Float(s.height * s.width)] + splitDouble(ce) + g
        }
        var cells = 0
        var ceSum = 0.0
        var eff = Matrix(rows: k, cols: c)
        for p in parts where p[0] > 0 {
            cells += Int(p[0])
            ceSum += joinDouble(p[1], p[2])
        }
        if cells == 0 { return (0, [Float](repeating: 0, count: student.parameterCount), eff, 0) }
        let scale = Float(weight / Double(cells))
        eff.data.withUnsafeMutableBufferPointer { e in
            for p in parts where p[0] > 0 {
                for j in 0..<(k * c) { e[j] += scale * p[3 + j] }
            }
        }
        return (weight * ceSum / Double(cells), student.chainGradient(effectiveGradient: eff), eff, cells)
    }

    /// One image: the summed cross-entropy over its crop cells, and `((A^T (p - t))^T F)` `[K*C]`.
    static func imageTerm(studentWeights ws: Matrix, teacherWeights wt: Matrix, sample s: EMSample, crop: EMCrop,
                          target: ConsistencyTarget) -> (Double, [Float]) {
        let k = ws.rows, hw = s.height * s.width
        let features = s.mStepFeatures ?? s.features
        let student = BLAS.matmul(features, ws, transB: true)                  // [hw, K]
        let resampler = studentResampler(sample: s, box: crop.box)
        let z = resampler.upsample(student)                                     // [hw, K] on the crop's grid
        let t = teacherTargets(BLAS.matmul(crop.features, wt, transB: true), target: target)
        var dz = Matrix(rows: hw, cols: k)
        var ce = 0.0
        z.data.withUnsafeBufferPointer { zp in
            t.data.withUnsafeBufferPointer { tp in
                dz.data.withUnsafeMutableBufferPointer { d in
                    for j in 0..<hw {
                        let row = zp.baseAddress! + j * k
                        var m = row[0]
                        for q in 1..<k { m = max(m, row[q]) }
                        var sum: Float = 0
                        for q in 0..<k { let e = LibM.expf(row[q] - m); d[j * k + q] = e; sum += e }
                        let o = j * k
                        var rowLoss = 0.0
                        if target == .mse {
                            var dot: Float = 0
                            for q in 0..<k {
                                let p = d[o + q] / sum, diff = p - tp[o + q]
                                rowLoss += Double(diff) * Double(diff)
                                d[o + q] = p
                                dot += p * 2 * diff
                            }
                            for q in 0..<k { let p = d[o + q]; d[o + q] = p * (2 * (p - tp[o + q]) - dot) }
                        } else {
                            let logSum = LibM.logf(sum) + m
                            for q in 0..<k {
                                let tq = tp[o + q]
                                d[o + q] = d[o + q] / sum - tq
                                if tq != 0 { rowLoss -= Double(tq) * Double(row[q] - logSum) }
                            }
                        }
                        ce += rowLoss
                    }
                }
            }
        }
        let dl = resampler.upsampleAdjoint(dz)                                  // [hw, K] on the full grid
        let g = BLAS.matmul(dl, features, transA: true)                         // [K, C]
        return (ce, g.data)
    }

    /// The student's map on the full grid of `sample` cropped to `box` and upsampled to the crop's grid.
    public static func studentResampler(sample s: EMSample, box: CropBox) -> BilinearResampler {
        box.resampler(gridHeight: s.height, gridWidth: s.width, patch: max(1, s.labelWidth / s.width),
                      cropHeight: s.height, cropWidth: s.width)
    }

    /// The teacher's assignment per crop cell from its logits `[cells, K]`: softmax (`.soft`, `.mse`), or one-hot argmax.
    public static func teacherTargets(_ logits: Matrix, target: ConsistencyTarget) -> Matrix {
        let k = logits.cols
        var t = Matrix(rows: logits.rows, cols: k)
        for j in 0..<logits.rows {
            let o = j * k
            var m = logits.data[o], arg = 0
            for q in 1..<k where logits.data[o + q] > m { m = logits.data[o + q]; arg = q }
            switch target {
            case .hard:
                t.data[o + arg] = 1
            case .soft, .mse:
                var sum: Float = 0
                for q in 0..<k { let e = LibM.expf(logits.data[o + q] - m); t.data[o + q] = e; sum += e }
                for q in 0..<k { t.data[o + q] /= sum }
            }
        }
        return t
    }

    /// A Double carried exactly in two Floats' bits (the executor exchanges `[Float]`).
    static func splitDouble(_ d: Double) -> [Float] {
        let b = d.bitPattern
        return [Float(bitPattern: UInt32(truncatingIfNeeded: b >> 32)), Float(bitPattern: UInt32(truncatingIfNeeded: b))]
    }

    static func joinDouble(_ hi: Float, _ lo: Float) -> Double {
        Double(bitPattern: UInt64(hi.bitPattern) << 32 | UInt64(lo.bitPattern))
    }
}
