import Foundation
import Testing
@testable import UnsegEvaluation

/// IoU by object size, counted by hand on a 6 x 6 image.
@Suite struct SegmentSizeTests {
    @Test func handCountedSegments() {
        var labels = [UInt8](repeating: 0, count: 36)
        var classes = [UInt8](repeating: 0, count: 36)
        func at(_ y: Int, _ x: Int) -> Int { y * 6 + x }
        // Segment A, class 1, an L of 3 pixels (bounding box 2 x 2 holds one background pixel).
        for p in [at(0, 0), at(0, 1), at(1, 0)] { labels[p] = 1 }
        // Segment B, class 2, one pixel; an ignored pixel.
        labels[at(3, 3)] = 2
        labels[at(4, 0)] = 255
        // Predicted (after matching): class 1 on two of A's pixels, on (1, 1) inside A's box and at
        // (5, 5) far from it; B predicted background; the ignored pixel background.
        for p in [at(0, 0), at(0, 1), at(1, 1), at(5, 5)] { classes[p] = 1 }
        var a = SegmentSizeIoU.Accumulator()
        a.add(classes: classes, labels: labels, height: 6, width: 6, classCount: 3)
        let r = SegmentSizeIoU(a)
        // A: I 2, U 3 + 1 (the box's false positive) -> 0.5, area 3/36 = 8.3%; B: 0, area 2.8%: both 2-10%.
        // Background: 31 pixels, I 29, false positives (1, 0) and (3, 3) (not the ignored one): 29 / 33.
        #expect(r.segments == [0, 0, 0, 2, 1])
        #expect(abs(r.meanIoU[3]! - 25) < 1e-6)
        #expect(abs(r.meanIoU[4]! - 100 * 29.0 / 33) < 1e-6)
        #expect(r.meanIoU[0] == nil && r.smallIoU == nil)
        #expect(r.table().contains("2-10%"))
        // Ids at or above the class count are ignored (as the confusion matrix does): no segment of
        // their own, no false positive of anyone's.
        var stray = labels
        stray[at(5, 0)] = 9
        var b = SegmentSizeIoU.Accumulator()
        b.add(classes: classes, labels: stray, height: 6, width: 6, classCount: 3)
        let rs = SegmentSizeIoU(b)
        #expect(rs.segments == [0, 0, 0, 2, 1])
        #expect(abs(rs.meanIoU[4]! - 100 * 28.0 / 32) < 1e-6)
        // A neighbouring segment of the same class inside a box is not a false positive, and the
        // summed-area lookups agree with counting the box pixel by pixel on a random image.
        var r2 = SegmentSizeIoU.Accumulator(), rng = UInt64(7)
        var lab = [UInt8](repeating: 0, count: 30 * 20), cls = lab
        for i in 0..<lab.count {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            lab[i] = UInt8((rng >> 33) % 4); cls[i] = UInt8((rng >> 45) % 5)
        }
        r2.add(classes: cls, labels: lab, height: 30, width: 20, classCount: 4)
        var sum = 0.0, count = 0
        for seg in SegmentSizeIoU.segments(labels: lab, height: 30, width: 20) {
            var fp = 0
            for y in seg.y0...seg.y1 { for x in seg.x0...seg.x1 where cls[y * 20 + x] == seg.cls && lab[y * 20 + x] != seg.cls { fp += 1 } }
            let inter = seg.pixels.filter { cls[$0] == seg.cls }.count
            sum += Double(inter) / Double(seg.pixels.count + fp); count += 1
        }
        let r2s = SegmentSizeIoU(r2)
        let total = zip(r2s.meanIoU, r2s.segments).reduce(0.0) { $0 + ($1.0 ?? 0) * Double($1.1) }
        #expect(Int(r2s.segments.reduce(0, +)) == count)
        #expect(abs(total / Double(count) - 100 * sum / Double(count)) < 1e-6)
    }

    @Test func smallSegmentsAndExactSums() {
        // 40 x 40 = 1600 pixels: a 1-pixel segment (0.06%) and a 2 x 3 one (0.375%) are "small".
        var labels = [UInt8](repeating: 0, count: 1600), classes = labels
        labels[41] = 3
        for y in 10..<12 { for x in 10..<13 { labels[y * 40 + x] = 4; classes[y * 40 + x] = 4 } }
        classes[41] = 3
        var one = SegmentSizeIoU.Accumulator(), other = SegmentSizeIoU.Accumulator()
        one.add(classes: classes, labels: labels, height: 40, width: 40, classCount: 5)
        other.add(classes: classes, labels: labels, height: 40, width: 40, classCount: 5)
        let r = SegmentSizeIoU(one)
        #expect(r.segments[0] == 1 && r.segments[1] == 1 && r.smallIoU! == 100)
        // Integer sums: adding images in either order gives the same values.
        var ab = one; for j in 0..<ab.values.count { ab.values[j] += other.values[j] }
        var ba = other; for j in 0..<ba.values.count { ba.values[j] += one.values[j] }
        #expect(ab.values == ba.values)
    }
}
