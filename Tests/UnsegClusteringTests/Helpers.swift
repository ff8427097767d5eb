import Foundation
import UnsegLinAlg
@testable import UnsegClustering
import UnsegCore

/// Random matrix with entries uniform in [lo, hi).
func randomMatrix(_ rows: Int, _ cols: Int, seed: UInt64, lo: Float = -1, hi: Float = 1) -> Matrix {
    var r = SeededRandom(seed: seed)
    return Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in r.float(in: lo..<hi) })
}

/// Double bilinear upsampling of `[h*w, c]` to `[H*W, c]` with the same weights as `BilinearResampler`.
func refUpsample(_ f: [Double], c: Int, h: Int, w: Int, H: Int, W: Int) -> [Double] {
    let ry = BilinearAxis(source: h, target: H), rx = BilinearAxis(source: w, target: W)
    var out = [Double](repeating: 0, count: H * W * c)
    for y in 0..<H {
        for x in 0..<W {
            let cells = [(Int(ry.i0[y]), Int(rx.i0[x]), Double(ry.w0[y]) * Double(rx.w0[x])),
                         (Int(ry.i0[y]), Int(rx.i1[x]), Double(ry.w0[y]) * Double(rx.w1[x])),
                         (Int(ry.i1[y]), Int(rx.i0[x]), Double(ry.w1[y]) * Double(rx.w0[x])),
                         (Int(ry.i1[y]), Int(rx.i1[x]), Double(ry.w1[y]) * Double(rx.w1[x]))]
            for (yy, xx, wt) in cells {
                for j in 0..<c { out[(y * W + x) * c + j] += wt * f[(yy * w + xx) * c + j] }
            }
        }
    }
    return out
}

/// Double reference of the PriMaPs-EM M-step on explicitly upsampled features.
/// Returns loss, class weights used, and the analytic gradient w.r.t. the effective weights `[K*C]`.
func refEMLoss(v: [Double], g: [Double], k: Int, c: Int, samples: [EMSample], labels: [[UInt8]],
               gamma: Double, fixedWeights: [Double]?) -> (loss: Double, weights: [Double], effGrad: [Double]) {
    var weff = [Double](repeating: 0, count: k * c)
    for kk in 0..<k {
        let norm = (0..<c).reduce(0.0) { $0 + v[kk * c + $1] * v[kk * c + $1] }.squareRoot()
        for j in 0..<c { weff[kk * c + j] = g[kk] * v[kk * c + j] / norm }
    }
    var ups: [[Double]] = [], probs: [[Double]] = []
    var softSum = [Double](repeating: 0, count: k), total = 0
    for s in samples {
        let f = s.features.data.map(Double.init)
        let u = refUpsample(f, c: c, h: s.height, w: s.width, H: s.labelHeight, W: s.labelWidth)
        let n = s.labelHeight * s.labelWidth
        var p = [Double](repeating: 0, count: n * k)
        for i in 0..<n {
            var z = (0..<k).map { kk in (0..<c).reduce(0.0) { $0 + u[i * c + $1] * weff[kk * c + $1] } }
            let m = z.max()!
            z = z.map { Foundation.exp($0 - m) }
            let sum = z.reduce(0, +)
            for kk in 0..<k { p[i * k + kk] = z[kk] / sum; softSum[kk] += z[kk] / sum }
        }
        total += n
        ups.append(u); probs.append(p)
    }
    let w = fixedWeights ?? softSum.map { Foundation.pow(1 - $0 / Double(total), gamma) }
    var loss = 0.0
    var grad = [Double](repeating: 0, count: k * c)
    for (si, s) in samples.enumerated() {
        let n = s.labelHeight * s.labelWidth
        for i in 0..<n {
            let y = Int(labels[si][i])
            if y == 255 { continue }
            loss -= w[y] * Foundation.log(probs[si][i * k + y])
            for kk in 0..<k {
                let dz = w[y] * (probs[si][i * k + kk] - (kk == y ? 1 : 0)) / Double(total)
                for j in 0..<c { grad[kk * c + j] += dz * ups[si][i * c + j] }
            }
        }
    }
    return (loss / Double(total), w, grad)
}

/// Planted segmentation problem: each image's feature grid is cut into 4 quadrants by a random
/// vertical and horizontal line; each quadrant has a random class; features = class mean + noise
/// (isotropic `noise` plus strong per-cell noise `nuisance` on the last `nuisanceDims` channels).
/// Masks (label resolution) are the quadrants, with quadrant 4 left unmasked in every other image.
func plantedBatch(count: Int, h: Int, w: Int, H: Int, W: Int, means: Matrix, noise: Float, nuisance: Float,
                  nuisanceDims: Int, seed: UInt64) -> (samples: [EMSample], truth: [[UInt8]]) {
    var r = SeededRandom(seed: seed)
    let k = means.rows, c = means.cols
    var samples: [EMSample] = [], truth: [[UInt8]] = []
    for img in 0..<count {
        let y0 = r.int(in: 1...(h - 1)), x0 = r.int(in: 1...(w - 1))
        let cls = (0..<4).map { _ in r.int(below: k) }
        var quad = [UInt8](repeating: 0, count: h * w)
        var f = Matrix(rows: h * w, cols: c)
        for y in 0..<h {
            for x in 0..<w {
                let q = (y < y0 ? 0 : 2) + (x < x0 ? 0 : 1)
                quad[y * w + x] = UInt8(q + 1)
                for j in 0..<c {
                    var v = means[cls[q], j] + noise * r.gaussian()
                    if j >= c - nuisanceDims { v += nuisance * r.gaussian() }
                    f[y * w + x, j] = v
                }
            }
        }
        let quadUp = NearestResampler.resample(quad, height: h, width: w, toHeight: H, toWidth: W)
        truth.append(quadUp.map { UInt8(cls[Int($0) - 1]) })
        let masks = quadUp.map { (img % 2 == 1 && $0 == 4) ? UInt8(0) : $0 }
        samples.append(EMSample(features: f, height: h, width: w, labelHeight: H, labelWidth: W, masks: masks))
    }
    return (samples, truth)
}

/// Accuracy of `pred` against `truth` under the best permutation of `k` cluster ids (brute force, k <= 5).
func bestPermutationAccuracy(_ pred: [[UInt8]], _ truth: [[UInt8]], k: Int) -> Double {
    var conf = [Int](repeating: 0, count: k * k)
    var n = 0
    for (p, t) in zip(pred, truth) { for (a, b) in zip(p, t) { conf[Int(a) * k + Int(b)] += 1; n += 1 } }
    func perms(_ a: [Int]) -> [[Int]] {
        if a.count <= 1 { return [a] }
        return a.indices.flatMap { i -> [[Int]] in
            var rest = a; let x = rest.remove(at: i)
            return perms(rest).map { [x] + $0 }
        }
    }
    var best = 0
    for p in perms(Array(0..<k)) { best = max(best, (0..<k).reduce(0) { $0 + conf[$1 * k + p[$1]] }) }
    return Double(best) / Double(n)
}
