import Foundation
import Testing
@testable import UnsegPipeline

/// The Two Tricks claim on the object-centric synthetic corpus: the guided filter raises the
/// foreground IoU of the Fiedler masks. Measured at 100 images (session 3): +6.5, +7.8, +8.1 IoU
/// points on seeds 0, 1, 2 (the first three seeds, not chosen ones). Asserted: at least +3 on each
/// seed, less than half the smallest gain measured; the run is deterministic, so the margin only
/// has to cover floating-point differences between platforms. Accuracy and max F-beta rise too.
@Suite struct SaliencyDemoTests {
    @Test(arguments: [UInt64(0), 1, 2])
    func guidedFilterRaisesTheFiedlerIoU(seed: UInt64) throws {
        let dir = NSTemporaryDirectory() + "unseg-saliency-demo-\(getpid())-\(seed)"
        let s = try SaliencyDemo.run(workdir: dir, images: 100, seed: seed, threads: 2)
        let plain = s.rows[0].result.saliency!, guided = s.rows[1].result.saliency!
        #expect(guided.iou - plain.iou >= 3, "seed \(seed): IoU \(plain.iou) -> \(guided.iou)")
        #expect(guided.accuracy > plain.accuracy && guided.maxFBeta > plain.maxFBeta, "seed \(seed)")
        #expect(s.corloc.corlocImages == 100 && s.corloc.corloc > 50, "seed \(seed): CorLoc \(s.corloc.corloc)")
        try? FileManager.default.removeItem(atPath: dir)
    }
}
