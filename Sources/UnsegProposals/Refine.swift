import Foundation
import UnsegLinAlg

/// Errors of mask refinement (bad input sizes or parameters).
public enum RefinementError: Error, CustomStringConvertible, Equatable {
    /// Input arrays whose sizes disagree; the message quotes both.
    case shapeMismatch(String)
    /// A configuration value out of range; the message names the field.
    case invalidConfig(String)

    public var description: String {
        switch self {
        case .shapeMismatch(let m): return "refinement: \(m); pass maps and image of matching sizes"
        case .invalidConfig(let m): return "refinement: \(m); fix the recipe value"
        }
    }
}

/// How proposal maps are brought from feature to image resolution.
public enum RefinementMethod: String, CaseIterable, Codable, Sendable {
    /// Bilinear upsampling, then argmax.
    case none
    /// Bilinear upsampling, softmax, guided filter per channel (grayscale guide), argmax.
    case guided
    /// Bilinear upsampling, softmax, dense CRF (10 mean-field iterations), argmax.
    case crf
}

/// Refinement of one image's mask proposals to image resolution.
public enum Refine {
    /// Refines soft proposal maps into a mask-index map.
    ///
    /// - Parameters:
    ///   - maps: `[h*w, K+1]` log-probabilities (log_softmax over channels; channel 0 =
    ///     background) at feature resolution, row-major cells.
    ///   - featureHeight/featureWidth: `h`, `w`.
    ///   - image: RGB `[H*W*3]` uint8, interleaved. Only its size is checked for `.none`
    ///     (an empty array is accepted there).
    ///   - imageHeight/imageWidth: `H`, `W`, the output size.
    /// - Returns: `[H*W]` mask index per pixel, 0 = background, `k` = proposal `k`.
    ///   Argmax ties go to the lowest channel.
    /// - Complexity: `.none` O(H W K); `.guided` O(H W K) (independent of the radius);
    ///   `.crf` O(iterations (H W + M) K) with M lattice vertices.
    /// - Throws: `RefinementError` when sizes disagree, `K+1` is outside 1...256, or a config
    ///   value is invalid.
    public static func refine(maps: Matrix, featureHeight h: Int, featureWidth w: Int,
                              image: [UInt8], imageHeight bigH: Int, imageWidth bigW: Int,
                              method: RefinementMethod,
                              guided: GuidedFilterConfig = GuidedFilterConfig(),
                              crf: DenseCRFConfig = DenseCRFConfig()) throws -> [UInt8] {
        let k = maps.cols
        guard h > 0, w > 0, maps.rows == h * w else {
            throw RefinementError.shapeMismatch("maps have \(maps.rows) rows, feature grid is \(h)x\(w)")
        }
        guard k >= 1, k <= 256 else {
            throw RefinementError.shapeMismatch("maps have \(k) channels, a UInt8 mask map needs 1...256")
        }
        guard bigH > 0, bigW > 0 else {
            throw RefinementError.shapeMismatch("image size \(bigH)x\(bigW) should be positive")
        }
        let needImage = method != .none
        if needImage || !image.isEmpty {
            guard image.count == bigH * bigW * 3 else {
                throw RefinementError.shapeMismatch(
                    "image has \(image.count) bytes, expected \(bigH)x\(bigW)x3 = \(bigH * bigW * 3)")
            }
        }
        let n = bigH * bigW
        let up = BilinearResampler(sourceHeight: h, sourceWidth: w, targetHeight: bigH, targetWidth: bigW)
            .upsample(maps).data
        switch method {
        case .none:
            return rowArgmax(up, rows: n, cols: k).map { UInt8($0) }
        case .guided:
            let filter = try GuidedFilter(image: image, height: bigH, width: bigW, config: guided)
            let p = softmax(up, rows: n, cols: k)
            return rowArgmax(filter.apply(channels: p, channels: k), rows: n, cols: k).map { UInt8($0) }
        case .crf:
            let model = try DenseCRF(image: image, height: bigH, width: bigW, config: crf)
            let p = softmax(up, rows: n, cols: k)
            return model.labels(probabilities: p, labels: k).map { UInt8($0) }
        }
    }

    /// Row-wise softmax of `[rows, cols]` (max-subtracted).
    static func softmax(_ x: [Float], rows: Int, cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { ob in
                softmaxRows(xb.baseAddress!, into: ob.baseAddress!, rows: rows, labels: cols, stride: cols)
            }
        }
        return out
    }
}

/// Ready-made inputs for timing the refinement kernels (the benchmark calls `runCRF` /
/// `runGuided`). Synthetic: a smooth RGB image with a few planted regions and noisy soft maps,
/// generated from `seed` (deterministic).
public struct RefinementBenchCase: Sendable {
    public let height: Int
    public let width: Int
    public let labels: Int
    /// `[H*W*3]` RGB image.
    public let image: [UInt8]
    /// `[H*W, labels]` probabilities (rows sum to 1).
    public let probabilities: [Float]

    /// A `side x side` image with `labels` channels.
    public init(side: Int = 320, labels: Int, seed: UInt64 = 0) {
        height = side
        width = side
        self.labels = labels
        var rng = SeededRandom(seed: seed)
        let n = side * side
        // Planted regions: each pixel belongs to the nearest of `labels` random seeds (Voronoi).
        var cx = [Float](), cy = [Float](), col = [[Float]]()
        for _ in 0..<labels {
            cx.append(rng.float() * Float(side)); cy.append(rng.float() * Float(side))
            col.append([rng.float() * 255, rng.float() * 255, rng.float() * 255])
        }
        var img = [UInt8](repeating: 0, count: n * 3)
        var prob = [Float](repeating: 0, count: n * labels)
        for y in 0..<side {
            for x in 0..<side {
                var best = 0, bd = Float.infinity
                for l in 0..<labels {
                    let dx = Float(x) - cx[l], dy = Float(y) - cy[l]
                    let d = dx * dx + dy * dy
                    if d < bd { bd = d; best = l }
                }
                let i = y * side + x
                for c in 0..<3 {
                    img[3 * i + c] = UInt8(max(0, min(255, col[best][c] + 12 * rng.gaussian())))
                }
                var s: Float = 0
                for l in 0..<labels {
                    let v = expf((l == best ? 1.5 : 0) + rng.gaussian())
                    prob[i * labels + l] = v
                    s += v
                }
                for l in 0..<labels { prob[i * labels + l] /= s }
            }
        }
        image = img
        probabilities = prob
    }

    /// Builds the CRF for the image and runs inference; returns a checksum of the labels.
    public func runCRF(iterations: Int = 10) throws -> Int {
        let crf = try DenseCRF(image: image, height: height, width: width,
                               config: DenseCRFConfig(iterations: iterations))
        return crf.labels(probabilities: probabilities, labels: labels).reduce(0) { $0 &+ Int($1) }
    }

    /// Guided-filters every channel (default config) and returns a checksum of the argmax.
    public func runGuided() throws -> Int {
        let f = try GuidedFilter(image: image, height: height, width: width)
        let out = f.apply(channels: probabilities, channels: labels)
        return rowArgmax(out, rows: height * width, cols: labels).reduce(0) { $0 &+ Int($1) }
    }
}
