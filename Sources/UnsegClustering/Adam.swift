import UnsegLinAlg
/// Settings of the Adam optimiser (Kingma and Ba, 2015), PyTorch's defaults otherwise.
public struct AdamConfig: Sendable, Equatable, Codable {
    /// Step size; PriMaPs uses 5e-3 for both the warm-up and the EM stage.
    public var learningRate: Float = 5e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public init(learningRate: Float = 5e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
    }
}

/// Adam's state as plain arrays, so a checkpoint can store and restore it bit-exactly.
///
/// `m` and `v` (first and second moment estimates) have one entry per parameter,
/// in the flattening order of the owner (see `PrototypeModel.flatParameters`);
/// `step` counts the updates done so far.
public struct AdamState: Sendable, Equatable, Codable {
    public var m: [Float]
    public var v: [Float]
    public var step: Int
    /// Zero moments for `count` parameters, step 0.
    public init(count: Int) {
        m = [Float](repeating: 0, count: count); v = m; step = 0
    }
    public init(m: [Float], v: [Float], step: Int) {
        precondition(m.count == v.count, "Adam state: m has \(m.count) entries, v has \(v.count)")
        self.m = m; self.v = v; self.step = step
    }
}

/// The Adam update, written as PyTorch's single-tensor `torch.optim.Adam` (no AMSGrad,
/// no weight decay): `m = b1 m + (1-b1) g`, `v = b2 v + (1-b2) g^2`,
/// `p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)`. Bias corrections in Double.
public enum Adam {
    /// One update of `params` with gradient `grads` (same length as the state). O(count).
    public static func update(params: inout [Float], grads: [Float], state: inout AdamState, config: AdamConfig) {
        precondition(params.count == grads.count && params.count == state.m.count,
                     "Adam: params \(params.count), grads \(grads.count), state \(state.m.count) must match")
        state.step += 1
        let t = Double(state.step)
        let bc1 = 1 - Double(config.beta1).pow(t)
        let bc2 = 1 - Double(config.beta2).pow(t)
        let stepSize = Float(Double(config.learningRate) / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let b1 = config.beta1, b2 = config.beta2, eps = config.epsilon
        let n = params.count
        params.withUnsafeMutableBufferPointer { p in
            grads.withUnsafeBufferPointer { g in
                state.m.withUnsafeMutableBufferPointer { m in
                    state.v.withUnsafeMutableBufferPointer { v in
                        for i in 0..<n {
                            let gi = g[i]
                            m[i] = m[i] + (gi - m[i]) * (1 - b1)
                            v[i] = v[i] * b2 + gi * gi * (1 - b2)
                            let denom = v[i].squareRoot() / bc2Sqrt + eps
                            p[i] = p[i] - stepSize * (m[i] / denom)
                        }
                    }
                }
            }
        }
    }
}

extension Double {
    @inlinable func pow(_ e: Double) -> Double { LibM.pow(self, e) }
}

