import Foundation
import UnsegLinAlg

/// Errors of the proposal methods: bad input or configuration, with the values involved.
public struct ProposalError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ message: String) { description = message }
}

/// Counters of the work one proposal call did (for benchmarks and diagnostics).
public struct ProposalStats: Sendable, Equatable {
    /// Loop iterations (PriMaPs: masks attempted; spectral: 1).
    public var iterations = 0
    /// Products with the `C x C` covariance made by the eigen-solver (PriMaPs).
    public var matvecs = 0
    /// Times the iterative eigen-solver gave up and LAPACK was used (PriMaPs).
    public var lapackFallbacks = 0
    /// Rows passed through rank-k covariance updates, including the initial build (PriMaPs).
    public var covarianceRows = 0
    /// Estimated floating-point operations (a multiply-add counts 2), dominant terms only.
    public var estimatedFlops: Double = 0
    public init() {}
}

/// Mask proposals of one image at feature resolution, as K soft masks plus background.
///
/// Layout: channel-major. `channels` and `logProbabilities` are `[K + 1, height * width]`
/// (row 0 = background, row k = mask k; each row is one row-major map of the grid), so each
/// channel is a contiguous image ready for per-channel upsampling or filtering.
/// `labels` is `[height * width]` row-major, 0 = background, 1...K = mask index. K <= 254
/// (so that 255 stays free for "ignore" in pseudo-labels).
public struct MaskProposals: Sendable, Equatable {
    /// Grid height (feature cells).
    public let height: Int
    /// Grid width (feature cells).
    public let width: Int
    /// The masks as found, before post-processing, `[K, height * width]`. PriMaPs: the
    /// thresholded, max-normalised similarities (0 or in [psi, 1]); spectral: 0/1 indicators.
    public var rawMasks: Matrix
    /// Channel scores `[K + 1, height * width]`: `[background, m_1 ... m_K]`. PriMaPs: masks after
    /// the 3x3 median filter, x10 and clamp to [0, 1], background `clamp(1 - sum, 0, 1)`
    /// (these come out exactly 0 or 1); spectral: one-hot of `labels`.
    public var channels: Matrix
    /// `log_softmax(channels)` over the channel axis, `[K + 1, height * width]`: what the
    /// refinement stage (upsampling, CRF unary) consumes.
    public var logProbabilities: Matrix
    /// Hard mask index per cell `[height * width]`: argmax over `channels` (ties to the lower index).
    public var labels: [UInt8]
    /// Work counters.
    public var stats: ProposalStats

    /// Number of masks K (channels minus the background).
    public var maskCount: Int { channels.rows - 1 }

    /// Largest number of masks a proposal may hold (labels are UInt8 and 255 means ignore).
    public static let maxMaskCount = 254

    /// PriMaPs post-processing of `raw` `[K, h*w]` soft masks: 3x3 median (reflect), x10, clamp
    /// [0, 1], background `clamp(1 - sum, 0, 1)`, `log_softmax`, argmax. Works for K = 0
    /// (background only) and K = 1. O(K * h * w).
    public static func postProcessed(rawMasks raw: Matrix, height: Int, width: Int,
                                     stats: ProposalStats = ProposalStats()) -> MaskProposals {
        let n = height * width
        precondition(raw.cols == n, "postProcessed: raw masks [\(raw.rows), \(raw.cols)] but grid \(height) x \(width)")
        precondition(raw.rows <= maxMaskCount, "postProcessed: \(raw.rows) masks exceed \(maxMaskCount)")
        let k = raw.rows
        let filtered = MedianFilter.median3x3(maps: raw, height: height, width: width)
        var channels = Matrix(rows: k + 1, cols: n)
        channels.data.withUnsafeMutableBufferPointer { ch in
            filtered.data.withUnsafeBufferPointer { f in
                let c = ch.baseAddress!
                for i in 0..<n { c[i] = 1 }
                for m in 0..<k {
                    let src = f.baseAddress! + m * n, dst = c + (m + 1) * n
                    for i in 0..<n {
                        let v = min(max(src[i] * 10, 0), 1)
                        dst[i] = v
                        c[i] -= v
                    }
                }
                for i in 0..<n { c[i] = min(max(c[i], 0), 1) }
            }
        }
        return MaskProposals(height: height, width: width, rawMasks: raw, channels: channels, stats: stats)
    }

    /// Proposals from a hard label map `[h*w]` with values 0...K (0 = background): raw masks and
    /// channels are one-hot indicators. O(K * h * w).
    public static func fromLabels(_ labels: [UInt8], maskCount k: Int, height: Int, width: Int,
                                  stats: ProposalStats = ProposalStats()) -> MaskProposals {
        let n = height * width
        precondition(labels.count == n, "fromLabels: \(labels.count) labels for a \(height) x \(width) grid")
        precondition(k <= maxMaskCount, "fromLabels: \(k) masks exceed \(maxMaskCount)")
        var channels = Matrix(rows: k + 1, cols: n)
        for i in 0..<n {
            let l = Int(labels[i])
            precondition(l <= k, "fromLabels: label \(l) > maskCount \(k)")
            channels.data[l * n + i] = 1
        }
        let raw = Matrix(rows: k, cols: n, data: Array(channels.data[n..<((k + 1) * n)]))
        return MaskProposals(height: height, width: width, rawMasks: raw, channels: channels, stats: stats)
    }

    /// Builds the log-probabilities and labels from `channels` `[K + 1, h*w]`.
    init(height: Int, width: Int, rawMasks: Matrix, channels: Matrix, stats: ProposalStats) {
        self.height = height
        self.width = width
        self.rawMasks = rawMasks
        self.channels = channels
        self.stats = stats
        let n = height * width, kk = channels.rows
        var logp = Matrix(rows: kk, cols: n)
        var labels = [UInt8](repeating: 0, count: n)
        channels.data.withUnsafeBufferPointer { cb in
            logp.data.withUnsafeMutableBufferPointer { lb in
                let c = cb.baseAddress!, l = lb.baseAddress!
                for i in 0..<n {
                    var best = 0
                    var mx = c[i]
                    for m in 1..<kk where c[m * n + i] > mx { mx = c[m * n + i]; best = m }
                    var sum: Float = 0
                    for m in 0..<kk { sum += expf(c[m * n + i] - mx) }
                    let lse = mx + logf(sum)
                    for m in 0..<kk { l[m * n + i] = c[m * n + i] - lse }
                    labels[i] = UInt8(best)
                }
            }
        }
        self.logProbabilities = logp
        self.labels = labels
    }
}
