import Foundation

/// Foreground / background metrics of the saliency and localisation papers (Two Tricks, Deep
/// Spectral Methods), on soft foreground maps stored as uint8 (0...255 = 0...1).
///
/// Conventions (stated because papers differ):
/// - a pixel is foreground at threshold 0.5 when its value is >= 128 (value / 255 >= 0.5);
/// - labels are 1 foreground, 0 background, 255 ignore; an image whose pixels are all ignored is
///   left out of every average;
/// - accuracy and IoU are computed per image and averaged over images; IoU is 1 for an image where
///   both the prediction and the ground truth have no foreground (they agree exactly);
/// - max F-beta (beta^2 = 0.3): for each of the 255 thresholds t = 0...254 (foreground: value > t),
///   precision and recall per image (0 when their denominator is 0), averaged over images, F from
///   the averages, the maximum over thresholds. Some papers instead compute F per image and average
///   it, or pool pixels over the dataset; those give other numbers.
public enum Saliency {
    public struct Result: Sendable, Equatable, Codable {
        public var images: Int
        public var accuracy: Double
        public var iou: Double
        public var maxFBeta: Double
        /// The threshold t of the maximum (foreground: value > t).
        public var bestThreshold: Int
        /// Mean precision and recall per threshold t = 0...254 (the PR curve).
        public var precision: [Double]
        public var recall: [Double]
    }

    /// Per-image counts, accumulated and reduced in image order.
    public struct Accumulator: Sendable {
        var images = 0
        var accSum = 0.0, iouSum = 0.0
        var pSum = [Double](repeating: 0, count: 255), rSum = [Double](repeating: 0, count: 255)
        public init() {}

        /// Adds one image: `soft` `[H*W]` uint8, `labels` `[H*W]` (1, 0, 255).
        public mutating func add(soft: [UInt8], labels: [UInt8]) throws {
            guard soft.count == labels.count else {
                throw EvaluationError("length-mismatch", "saliency: \(soft.count) map values for \(labels.count) labels")
            }
            // Histograms of the soft values over foreground and background pixels.
            var fg = [Int](repeating: 0, count: 256), bg = [Int](repeating: 0, count: 256)
            for i in 0..<soft.count {
                switch labels[i] {
                case 1: fg[Int(soft[i])] += 1
                case 0: bg[Int(soft[i])] += 1
                case 255: continue
                default:
                    throw EvaluationError("bad-label", "saliency: label \(labels[i]) at pixel \(i); binary labels are 0 (background), 1 (foreground) or 255 (ignore)")
                }
            }
            let gtFG = fg.reduce(0, +), gtBG = bg.reduce(0, +)
            if gtFG + gtBG == 0 { return }
            images += 1
            // Predicted foreground above t: suffix sums over values t+1...255.
            var tpAbove = [Int](repeating: 0, count: 257), fpAbove = tpAbove
            for v in stride(from: 255, through: 0, by: -1) { tpAbove[v] = tpAbove[v + 1] + fg[v]; fpAbove[v] = fpAbove[v + 1] + bg[v] }
            // Threshold 0.5: value >= 128.
            let tp = tpAbove[128], fp = fpAbove[128], fn = gtFG - tp, tn = gtBG - fp
            accSum += Double(tp + tn) / Double(gtFG + gtBG)
            let union = tp + fp + fn
            iouSum += union == 0 ? 1 : Double(tp) / Double(union)
            for t in 0..<255 {
                let tpt = tpAbove[t + 1], fpt = fpAbove[t + 1]
                pSum[t] += tpt + fpt == 0 ? 0 : Double(tpt) / Double(tpt + fpt)
                rSum[t] += gtFG == 0 ? 0 : Double(tpt) / Double(gtFG)
            }
        }

        /// Adds another accumulator's images (after this one's, in order).
        public mutating func merge(_ o: Accumulator) {
            images += o.images; accSum += o.accSum; iouSum += o.iouSum
            for t in 0..<255 { pSum[t] += o.pSum[t]; rSum[t] += o.rSum[t] }
        }

        public func result(betaSquared b2: Double = 0.3) throws -> Result {
            guard images > 0 else {
                throw EvaluationError("no-pixels", "saliency: no image has a labelled pixel (labels 0 or 1); check the store's /labels")
            }
            let n = Double(images)
            let p = pSum.map { $0 / n }, r = rSum.map { $0 / n }
            var best = 0, bestF = -1.0
            for t in 0..<255 {
                let f = p[t] + r[t] == 0 ? 0 : (1 + b2) * p[t] * r[t] / (b2 * p[t] + r[t])
                if f > bestF { bestF = f; best = t }
            }
            return Result(images: images, accuracy: 100 * accSum / n, iou: 100 * iouSum / n, maxFBeta: 100 * bestF,
                          bestThreshold: best, precision: p, recall: r)
        }
    }
}

/// Single-object localisation: CorLoc.
public enum CorLoc {
    /// A box in image pixels: `x0 <= x < x1`, `y0 <= y < y1` (continuous coordinates).
    public struct Box: Sendable, Equatable, Codable {
        public var x0, y0, x1, y1: Double
        public init(x0: Double, y0: Double, x1: Double, y1: Double) { self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1 }
        public var area: Double { max(0, x1 - x0) * max(0, y1 - y0) }
        public func iou(_ o: Box) -> Double {
            let iw = max(0, min(x1, o.x1) - max(x0, o.x0)), ih = max(0, min(y1, o.y1) - max(y0, o.y0))
            let inter = iw * ih, union = area + o.area - inter
            return union > 0 ? inter / union : 0
        }
    }

    /// The box of the 8-connected component of the foreground (`soft >= 128`) whose bounding box
    /// is largest (ties: the component met first in row-major order); pixel (x, y) covers
    /// `[x, x+1) x [y, y+1)`. nil when there is no foreground. O(H W).
    public static func predictedBox(soft: [UInt8], height: Int, width: Int) -> Box? {
        precondition(soft.count == height * width, "predictedBox: \(soft.count) values for \(height)x\(width)")
        var label = [Int32](repeating: -1, count: soft.count)
        var best: Box?
        var stack: [Int] = []
        for start in 0..<soft.count where soft[start] >= 128 && label[start] < 0 {
            var minX = width, minY = height, maxX = -1, maxY = -1
            label[start] = 1
            stack.append(start)
            while let p = stack.popLast() {
                let y = p / width, x = p % width
                minX = min(minX, x); maxX = max(maxX, x); minY = min(minY, y); maxY = max(maxY, y)
                for dy in -1...1 {
                    let yy = y + dy
                    if yy < 0 || yy >= height { continue }
                    for dx in -1...1 {
                        let xx = x + dx
                        if xx < 0 || xx >= width || (dx == 0 && dy == 0) { continue }
                        let q = yy * width + xx
                        if soft[q] >= 128 && label[q] < 0 { label[q] = 1; stack.append(q) }
                    }
                }
            }
            let b = Box(x0: Double(minX), y0: Double(minY), x1: Double(maxX + 1), y1: Double(maxY + 1))
            if best == nil || b.area > best!.area { best = b }
        }
        return best
    }

    /// Whether the predicted box hits any ground-truth box with IoU >= 0.5 (false without a prediction).
    public static func isCorrect(predicted: Box?, truth: [Box], threshold: Double = 0.5) -> Bool {
        guard let p = predicted else { return false }
        return truth.contains { p.iou($0) >= threshold }
    }
}
