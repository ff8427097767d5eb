import Foundation
import UnsegLinAlg
import UnsegCore

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
            return Reduce.rowArgmax(up, rows: n, cols: k).map { UInt8($0) }
        case .guided:
            let filter = try GuidedFilter(image: image, height: bigH, width: bigW, config: guided)
            let p = Reduce.softmax(up, rows: n, cols: k)
            return Reduce.rowArgmax(filter.apply(channels: p, channels: k), rows: n, cols: k).map { UInt8($0) }
        case .crf:
            let model = try DenseCRF(image: image, height: bigH, width: bigW, config: crf)
            let p = Reduce.softmax(up, rows: n, cols: k)
            return model.labels(probabilities: p, labels: k).map { UInt8($0) }
        }
    }
}

