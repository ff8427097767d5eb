import UnsegCore
import UnsegLinAlg

/// The shape of a projection head over frozen features.
public enum HeadKind: String, Sendable, CaseIterable, Equatable, Codable {
    /// No parameters: the embedding is the L2-normalised feature (segment k-means without training).
    case identity
    /// One 1x1 convolution `y = W f + b`.
    case linear
    /// Two 1x1 convolutions with a ReLU between them: `y = W2 relu(W1 f + b1) + b2`.
    case mlp
}

/// A per-cell projection head `f [C] -> q [D]`, L2-normalised (`q = y / max(|y|, 1e-12)`, PyTorch's
/// `F.normalize`), over the stored (frozen) backbone features.
///
/// Parameters are one flat array (the order optimisers and checkpoints follow):
/// linear `[W (D x C), b (D)]`; MLP `[W1 (H x C), b1 (H), W2 (D x H), b2 (D)]`; identity none.
/// Initialised like PyTorch's `Conv2d`: weights and biases uniform in `+-1/sqrt(fan_in)`, seeded.
public struct ProjectionHead: Sendable, Equatable {
    public let kind: HeadKind
    public let inputChannels: Int
    /// Hidden width of the MLP (0 for the other kinds).
    public let hidden: Int
    /// Embedding dimension D (= `inputChannels` for the identity head).
    public let outputDim: Int
    public var parameters: [Float]

    static let eps: Float = 1e-12

    /// A freshly initialised head (seeded; the identity head has no parameters).
    public init(kind: HeadKind, inputChannels c: Int, hidden: Int, outputDim: Int, seed: UInt64) {
        precondition(c >= 1, "ProjectionHead: \(c) input channels")
        self.kind = kind
        inputChannels = c
        self.hidden = kind == .mlp ? max(hidden, 1) : 0
        self.outputDim = kind == .identity ? c : max(outputDim, 1)
        var rng = SeededRandom(seed: seed)
        func uniform(_ n: Int, fanIn: Int) -> [Float] {
            let b = 1 / Float(fanIn).squareRoot()
            return (0..<n).map { _ in rng.float(in: -b..<b) }
        }
        switch kind {
        case .identity: parameters = []
        case .linear:
            parameters = uniform(self.outputDim * c, fanIn: c) + uniform(self.outputDim, fanIn: c)
        case .mlp:
            let h = self.hidden, d = self.outputDim
            parameters = uniform(h * c, fanIn: c) + uniform(h, fanIn: c) + uniform(d * h, fanIn: h) + uniform(d, fanIn: h)
        }
    }

    /// A head with the given parameters; errors name what does not fit.
    public init(kind: HeadKind, inputChannels c: Int, hidden: Int, outputDim: Int, parameters: [Float]) throws {
        self.kind = kind
        inputChannels = c
        self.hidden = kind == .mlp ? hidden : 0
        self.outputDim = kind == .identity ? c : outputDim
        self.parameters = parameters
        guard c >= 1, self.outputDim >= 1, kind != .mlp || hidden >= 1 else {
            throw ClusteringError("projection head \(kind.rawValue): input \(c), hidden \(hidden), output \(outputDim) must be positive")
        }
        guard parameters.count == parameterCount else {
            throw ClusteringError("projection head \(kind.rawValue) [\(c) -> \(self.outputDim)] needs \(parameterCount) parameters, got \(parameters.count)")
        }
    }

    public var parameterCount: Int {
        switch kind {
        case .identity: return 0
        case .linear: return outputDim * inputChannels + outputDim
        case .mlp: return hidden * inputChannels + hidden + outputDim * hidden + outputDim
        }
    }

    /// What `forward` keeps for `backward`.
    public struct Activations: Sendable {
        /// MLP: `relu(W1 f + b1)` `[n, H]` (empty otherwise).
        public var hiddenOut: Matrix
        /// `y` before normalisation `[n, D]`.
        public var y: Matrix
        /// `max(|y_i|, eps)` `[n]`.
        public var norms: [Float]
        /// The embeddings `q = y / norms` `[n, D]`.
        public var q: Matrix
    }

    /// `out = x W^T + 1 b^T` with `W` `[outC, inC]` at `w`, `b` at `b`.
    private static func affine(_ x: Matrix, _ p: UnsafePointer<Float>, weights: Int, bias: Int, outC: Int) -> Matrix {
        let n = x.rows, c = x.cols
        var out = Matrix(rows: n, cols: outC)
        out.data.withUnsafeMutableBufferPointer { o in
            for i in 0..<n { for j in 0..<outC { o[i * outC + j] = p[bias + j] } }
            x.data.withUnsafeBufferPointer { xp in
                BLAS.sgemm(transA: false, transB: true, m: n, n: outC, k: c, alpha: 1, a: xp.baseAddress!, lda: max(c, 1),
                           b: p + weights, ldb: max(c, 1), beta: 1, c: o.baseAddress!, ldc: outC)
            }
        }
        return out
    }

    /// The head on features `[n, C]`, with what `backward` needs. O(n C H + n H D) (MLP).
    public func forward(_ f: Matrix) -> Activations {
        precondition(f.cols == inputChannels, "projection head: features have \(f.cols) channels, the head \(inputChannels)")
        let n = f.rows, c = inputChannels, d = outputDim
        var hiddenOut = Matrix(rows: 0, cols: 0)
        let y: Matrix = kind == .identity ? f : parameters.withUnsafeBufferPointer { p -> Matrix in
            let base = p.baseAddress!
            switch kind {
            case .identity, .linear: return Self.affine(f, base, weights: 0, bias: d * c, outC: d)
            case .mlp:
                let h = hidden
                var r = Self.affine(f, base, weights: 0, bias: h * c, outC: h)
                r.data.withUnsafeMutableBufferPointer { rp in for j in 0..<rp.count where !(rp[j] > 0) { rp[j] = 0 } }
                hiddenOut = r
                return Self.affine(r, base, weights: h * c + h, bias: h * c + h + d * h, outC: d)
            }
        }
        var norms = [Float](repeating: 0, count: n)
        var q = y
        q.data.withUnsafeMutableBufferPointer { qp in
            for i in 0..<n {
                let row = qp.baseAddress! + i * d
                let nm = max(Reduce.dot(row, row, d).squareRoot(), Self.eps)
                norms[i] = nm
                let inv = 1 / nm
                for j in 0..<d { row[j] *= inv }
            }
        }
        return Activations(hiddenOut: hiddenOut, y: y, norms: norms, q: q)
    }

    /// The normalised embeddings `[n, D]`.
    public func embed(_ f: Matrix) -> Matrix { forward(f).q }

    /// The gradient of a loss w.r.t. the parameters (flat, `parameters` order), given its
    /// gradient `gq` `[n, D]` w.r.t. the normalised embeddings of `forward(f)`.
    /// Through the normalisation: `dy = (gq - q (q . gq)) / |y|`; then the affine layers and the
    /// ReLU (`relu'(0) = 0`, as PyTorch). O(n C H + n H D).
    public func backward(_ f: Matrix, _ a: Activations, gradQ gq: Matrix) -> [Float] {
        precondition(gq.rows == f.rows && gq.cols == outputDim, "projection head backward: gradient [\(gq.rows), \(gq.cols)] for [\(f.rows), \(outputDim)]")
        let n = f.rows, c = inputChannels, d = outputDim
        var grads = [Float](repeating: 0, count: parameterCount)
        if kind == .identity || n == 0 { return grads }
        var dy = gq
        dy.data.withUnsafeMutableBufferPointer { g in
            a.q.data.withUnsafeBufferPointer { q in
                for i in 0..<n {
                    let gr = g.baseAddress! + i * d, qr = q.baseAddress! + i * d
                    let s = Reduce.dot(gr, qr, d), inv = 1 / a.norms[i]
                    // Below eps the normalisation divides by the constant eps: no projection term.
                    if a.norms[i] > Self.eps { for j in 0..<d { gr[j] = (gr[j] - qr[j] * s) * inv } } else { for j in 0..<d { gr[j] *= inv } }
                }
            }
        }
        /// dW `[outC, inC]` = dOut^T X; db = column sums of dOut.
        func affineGrad(_ dOut: Matrix, _ x: Matrix, into g: UnsafeMutablePointer<Float>, weights: Int, bias: Int) {
            let outC = dOut.cols, inC = x.cols
            dOut.data.withUnsafeBufferPointer { dp in
                x.data.withUnsafeBufferPointer { xp in
                    BLAS.sgemm(transA: true, transB: false, m: outC, n: inC, k: n, alpha: 1, a: dp.baseAddress!, lda: outC,
                               b: xp.baseAddress!, ldb: inC, beta: 0, c: g + weights, ldc: inC)
                }
                for i in 0..<n { for j in 0..<outC { g[bias + j] += dp[i * outC + j] } }
            }
        }
        grads.withUnsafeMutableBufferPointer { gp in
            let g = gp.baseAddress!
            switch kind {
            case .identity: break
            case .linear: affineGrad(dy, f, into: g, weights: 0, bias: d * c)
            case .mlp:
                let h = hidden
                affineGrad(dy, a.hiddenOut, into: g, weights: h * c + h, bias: h * c + h + d * h)
                // dR = dY W2 [n, H], masked by the ReLU.
                var dr = Matrix(rows: n, cols: h)
                parameters.withUnsafeBufferPointer { p in
                    dy.data.withUnsafeBufferPointer { dp in
                        dr.data.withUnsafeMutableBufferPointer { rp in
                            BLAS.sgemm(transA: false, transB: false, m: n, n: h, k: d, alpha: 1, a: dp.baseAddress!, lda: d,
                                       b: p.baseAddress! + h * c + h, ldb: h, beta: 0, c: rp.baseAddress!, ldc: h)
                        }
                    }
                }
                dr.data.withUnsafeMutableBufferPointer { rp in
                    a.hiddenOut.data.withUnsafeBufferPointer { hp in for j in 0..<rp.count where !(hp[j] > 0) { rp[j] = 0 } }
                }
                affineGrad(dr, f, into: g, weights: 0, bias: h * c)
            }
        }
        return grads
    }

    /// The momentum (key) update `key = m key + (1 - m) query`, elementwise.
    public mutating func momentumUpdate(towards query: ProjectionHead, momentum m: Float) {
        precondition(query.parameters.count == parameters.count, "momentum update: heads of different shapes")
        let om = 1 - m
        query.parameters.withUnsafeBufferPointer { q in
            parameters.withUnsafeMutableBufferPointer { k in for j in 0..<k.count { k[j] = k[j] * m + q[j] * om } }
        }
    }

    // MARK: saved state

    public func save(into r: inout StateRecord, at prefix: String) {
        r.set(prefix + "/kind", kind.rawValue)
        r.set(prefix + "/input_channels", inputChannels)
        r.set(prefix + "/hidden", hidden)
        r.set(prefix + "/output_dim", outputDim)
        r.set(prefix + "/parameters", parameters)
    }

    public init(record r: StateRecord, at prefix: String) throws {
        let kindName = try r.string(prefix + "/kind")
        guard let k = HeadKind(rawValue: kindName) else {
            throw ClusteringError("saved head '\(r.place(prefix + "/kind"))' is '\(kindName)'; expected one of \(HeadKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let p = try r.floats(prefix + "/parameters").values
        if let bad = Finite.describeFirstNonFinite(p, cols: 1) {
            throw ClusteringError("saved head '\(r.place(prefix + "/parameters"))' \(bad); the checkpoint is damaged; fit again")
        }
        try self.init(kind: k, inputChannels: try r.int(prefix + "/input_channels"), hidden: try r.int(prefix + "/hidden"),
                      outputDim: try r.int(prefix + "/output_dim"), parameters: p)
    }
}
