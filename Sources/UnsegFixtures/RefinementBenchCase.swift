import Foundation
import UnsegLinAlg
import UnsegProposals

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
                    let v = Foundation.expf((l == best ? 1.5 : 0) + rng.gaussian())
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
        return (0..<(height * width)).reduce(0) { acc, i in out.withUnsafeBufferPointer { acc &+ Reduce.argmax($0.baseAddress! + i * labels, labels) } }
    }
}
