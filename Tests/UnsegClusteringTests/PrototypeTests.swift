import Foundation
import Testing
import UnsegTestSupport
import UnsegLinAlg
@testable import UnsegClustering
import UnsegCore

@Suite struct FastMathTests {
    @Test func expMatchesDoubleReference() {
        // Cephes-style expf: documented max relative error ~2e-7; assert < 1e-6 (the brief's bound).
        let seed: UInt64 = 11
        var r = SeededRandom(seed: seed)
        var worst: Double = 0
        var xs: [Float] = [0, -0.0, 1, -1, 0.5, -87, 88, -20.123, 10.5, 0.346, -0.347]
        for _ in 0..<20_000 { xs.append(r.float(in: -87..<88)) }
        var i = 0
        while i < xs.count {
            var v = SIMD8<Float>()
            for l in 0..<8 { v[l] = i + l < xs.count ? xs[i + l] : 0 }
            let e = FastMath.exp(v)
            // The 4-lane variant used by the EM kernels is the same code: bit-identical.
            let e4 = FastMath.exp(SIMD4<Float>(v[0], v[1], v[2], v[3]))
            #expect(e4 == SIMD4<Float>(e[0], e[1], e[2], e[3]))
            for l in 0..<8 where i + l < xs.count {
                let ref = Foundation.exp(Double(xs[i + l]))
                worst = max(worst, abs(Double(e[l]) - ref) / ref)
            }
            i += 8
        }
        #expect(worst < 1e-6, "seed \(seed): worst relative error \(worst)")
        // Far below the range: tiny, finite, non-negative (softmax padding lanes rely on it).
        let tiny = FastMath.exp(-1e30)
        #expect(tiny >= 0 && tiny < 1e-37)
    }
}

@Suite struct PrototypeModelTests {
    let h = 3, w = 3, H = 7, W = 7, C = 5, K = 4

    func model(seed: UInt64) -> PrototypeModel {
        var r = SeededRandom(seed: seed)
        return PrototypeModel(directions: randomMatrix(K, C, seed: seed ^ 0xABC),
                              gains: (0..<K).map { _ in r.float(in: 0.5..<2) })
    }

    @Test func lowResolutionLogitsEqualExplicitUpsampling() {
        let seed: UInt64 = 5
        let m = model(seed: seed)
        let f = randomMatrix(h * w, C, seed: seed)
        let r = BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: H, targetWidth: W)
        let explicit = BLAS.matmul(r.upsample(f), m.effectiveWeights(), transB: true)
        let viaLow = m.logits(features: f, h: h, w: w, H: H, W: W)
        // Same linear map, different association order in Float: agree to a few ulps of |logit| <= ~10.
        let diff = zip(explicit.data, viaLow.data).map { abs($0 - $1) }.max()!
        #expect(diff < 1e-5, "seed \(seed): max |difference| \(diff)")
        // Fused predict == argmax of the explicit logits (no near-ties at this seed: checked margin).
        let pred = m.predict(features: f, h: h, w: w, H: H, W: W)
        #expect(pred.map(Int.init) == explicit.rowArgmax(), "seed \(seed)")
    }

    @Test func chainGradientMatchesFiniteDifferences() {
        // d/dv and d/dg of <G, W'(v, g)> for a fixed G, central differences in Double.
        let seed: UInt64 = 6
        let m = model(seed: seed)
        let G = randomMatrix(K, C, seed: seed + 1)
        let analytic = m.chainGradient(effectiveGradient: G)
        func objective(_ p: [Double]) -> Double {
            var s = 0.0
            for k in 0..<K {
                let v = (0..<C).map { p[k * C + $0] }
                let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                for j in 0..<C { s += Double(G[k, j]) * p[K * C + k] * v[j] / n }
            }
            return s
        }
        let p0 = m.flatParameters.map(Double.init)
        for i in 0..<p0.count {
            var a = p0, b = p0
            a[i] += 1e-6; b[i] -= 1e-6
            let fd = (objective(a) - objective(b)) / 2e-6
            // Float analytic vs Double FD (truncation ~1e-12): Float rounding of O(1) terms, 1e-5 absolute.
            expectClose(Double(Double(analytic[i])), Double(fd), abs: 1e-5, "seed \(seed), parameter \(i): \(analytic[i]) vs \(fd)")
        }
    }

    func batch(seed: UInt64) -> ([EMSample], [[UInt8]]) {
        var r = SeededRandom(seed: seed)
        let shapes = [(3, 3, 7, 7), (2, 4, 5, 9)]
        var samples: [EMSample] = [], labels: [[UInt8]] = []
        for (i, s) in shapes.enumerated() {
            let f = randomMatrix(s.0 * s.1, C, seed: seed &+ UInt64(i) &* 7, lo: -2, hi: 2)
            let n = s.2 * s.3
            samples.append(EMSample(features: f, height: s.0, width: s.1, labelHeight: s.2, labelWidth: s.3,
                                    masks: [UInt8](repeating: 1, count: n)))
            labels.append((0..<n).map { _ in r.bernoulli(0.3) ? 255 : UInt8(r.int(below: K)) })
        }
        return (samples, labels)
    }

    @Test func weightedCrossEntropyMatchesDoubleReference() throws {
        let seed: UInt64 = 7
        let m = model(seed: seed)
        let (samples, labels) = batch(seed: seed)
        let lib = try PriMaPsEM.lossAndGradient(model: m, samples: samples, labels: labels, gamma: 2)
        let ref = refEMLoss(v: m.directions.data.map(Double.init), g: m.gains.map(Double.init), k: K, c: C,
                            samples: samples, labels: labels, gamma: 2, fixedWeights: nil)
        // Float pipeline (fast exp rel 2e-7, Float sums over <= 49 pixels) vs Double: 1e-5 relative.
        #expect(abs(lib.loss - ref.loss) <= 1e-5 * abs(ref.loss), "seed \(seed): \(lib.loss) vs \(ref.loss)")
        for k in 0..<K {
            expectClose(Double(Double(lib.classWeights[k])), Double(ref.weights[k]), abs: 1e-5, "seed \(seed), class \(k)")
        }
        // Gradient via the adjoint at feature resolution == gradient with explicitly upsampled features.
        let scale = ref.effGrad.map(abs).max()!
        for i in 0..<(K * C) {
            #expect(abs(Double(lib.effectiveGradient.data[i]) - ref.effGrad[i]) <= 1e-5 * scale,
                    "seed \(seed), entry \(i): \(lib.effectiveGradient.data[i]) vs \(ref.effGrad[i])")
        }
        #expect(lib.labelledPixels == labels.joined().filter { $0 != 255 }.count)
        #expect(lib.totalPixels == 49 + 45)
    }

    @Test func lossGradientMatchesFiniteDifferences() throws {
        // Class weights held fixed (they are constants in the method), Double FD of the Double reference.
        let seed: UInt64 = 8
        let m = model(seed: seed)
        let (samples, labels) = batch(seed: seed)
        let w0 = refEMLoss(v: m.directions.data.map(Double.init), g: m.gains.map(Double.init), k: K, c: C,
                           samples: samples, labels: labels, gamma: 2, fixedWeights: nil).weights
        let lib = try PriMaPsEM.lossAndGradient(model: m, samples: samples, labels: labels, gamma: 2,
                                                classWeights: w0.map { Float($0) })
        let p0 = m.flatParameters.map(Double.init)
        func loss(_ p: [Double]) -> Double {
            refEMLoss(v: Array(p[0..<(K * C)]), g: Array(p[(K * C)...]), k: K, c: C, samples: samples,
                      labels: labels, gamma: 2, fixedWeights: w0).loss
        }
        var fd = [Double](repeating: 0, count: p0.count)
        for i in 0..<p0.count {
            var a = p0, b = p0
            a[i] += 1e-5; b[i] -= 1e-5
            fd[i] = (loss(a) - loss(b)) / 2e-5
        }
        let scale = fd.map(abs).max()!
        for i in 0..<p0.count {
            // Float gradient vs Double FD (truncation error ~1e-10): 1e-4 of the largest component.
            #expect(abs(Double(lib.gradient[i]) - fd[i]) <= 1e-4 * scale, "seed \(seed), parameter \(i) (\(i < K * C ? "v" : "g")): \(lib.gradient[i]) vs \(fd[i])")
        }
    }

    @Test func adamMatchesHandComputedSteps() {
        // PyTorch Adam, two steps on one parameter with g = 0.5 then -0.25 (values from the update rule).
        var p: [Float] = [1]
        var s = AdamState(count: 1)
        let cfg = AdamConfig(learningRate: 0.1)
        Adam.update(params: &p, grads: [0.5], state: &s, config: cfg)
        // step 1: m = 0.05, v = 0.00025, mhat/sqrt(vhat) = 1 -> p = 1 - 0.1 * 0.5/(0.5 + 1e-8)
        expectClose(Double(p[0]), Double(0.9), abs: 1e-6)
        Adam.update(params: &p, grads: [-0.25], state: &s, config: cfg)
        let m = 0.9 * 0.05 + 0.1 * -0.25, v = 0.999 * 0.00025 + 0.001 * 0.0625
        let expected = 0.9 - 0.1 / (1 - 0.81) * m / ((v).squareRoot() / (1 - 0.998001).squareRoot() + 1e-8)
        expectClose(Double(Double(p[0])), Double(expected), abs: 1e-6, "\(p[0]) vs \(expected)")
        #expect(s.step == 2)
    }
}
