import Foundation
import Testing
import UnsegTestSupport
import UnsegPipeline

/// `unseg fit` / `predict` / `export` as a user runs them.
@Suite struct FitCLITests {
    static let recipe = """
    name: "kill-test"
    classes: 4
    batch_size: 4
    checkpoint_every: 2
    seed: 11
    pca-init:
      sample_images: 12
    cosine-kmeans:
      epochs: 2
    primaps-em:
      epochs: 6
      momentum_every: 2
    """

    /// Starts `unseg args`, waits until its checkpoint reports at least `step` steps, SIGKILLs it.
    /// Returns the step the checkpoint on disk had when the kill was sent.
    func killRun(_ args: [String], checkpoint: String, atStep step: Int) throws -> Int {
        let p = Process()
        p.executableURL = unsegBinary()
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        var seen = -1
        while Date() < deadline && p.isRunning {
            if let ck = try? FitCheckpoint.load(path: checkpoint), ck.step >= step { seen = ck.step; break }
            Thread.sleep(forTimeInterval: 0.005)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal, "the run ended before the kill (step \(seen))")
        return seen
    }

    /// A fit killed with SIGKILL twice (in the warm-up and in the EM stage, between checkpoint
    /// writes or during one) and resumed ends with bit-identical prototypes, Adam state and losses.
    @Test func killedAndResumedFitIsBitIdentical() throws {
        let dir = scratchDir("kill")
        let store = dir + "/train.h5", recipe = dir + "/r.yaml"
        try writePlantedStore(store, n: 24, seed: 3)
        try Self.recipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        let ref = dir + "/ref.h5", ck = dir + "/ck.h5"
        for f in [ref, ck] { try? FileManager.default.removeItem(atPath: f) }
        let base = ["fit", "--recipe", recipe, "--store", store, "--threads", "1"]
        let r = try runUnseg(base + ["--checkpoint", ref])
        #expect(r.status == 0, "\(r.stderr)")
        // 6 steps an epoch: warm-up steps 1...12, EM 13...48.
        let slow = ["--debug-step-delay-ms", "25", "--threads", "2"]
        let s1 = try killRun(base + ["--checkpoint", ck] + slow, checkpoint: ck, atStep: 5)
        let mid = try FitCheckpoint.load(path: ck)
        #expect(mid.stage == .cosineKMeans && s1 >= 5, "first kill in the warm-up: stage \(mid.stage), step \(s1)")
        let s2 = try killRun(base + ["--checkpoint", ck, "--resume"] + slow, checkpoint: ck, atStep: 27)
        let mid2 = try FitCheckpoint.load(path: ck)
        #expect(mid2.stage == .primapsEM && s2 >= 27 && mid2.step < 48, "second kill in the EM stage: step \(mid2.step)")
        let done = try runUnseg(base + ["--checkpoint", ck, "--resume"])
        #expect(done.status == 0 && done.stdout.contains("resumed at step"), "\(done.stdout)\n\(done.stderr)")
        let a = try FitCheckpoint.load(path: ref), b = try FitCheckpoint.load(path: ck)
        #expect(a.isDone && b.isDone)
        #expect(a.momentum == b.momentum, "momentum prototypes differ after kill + resume")
        #expect(a.running == b.running && a.states == b.states && a.emLoss == b.emLoss && a.warmupLoss == b.warmupLoss)
        // No temporary files of the killed runs are left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        // Without --resume an existing checkpoint is refused.
        let again = try runUnseg(base + ["--checkpoint", ck])
        #expect(again.status == 1 && again.stderr.contains("--resume"))
    }

    @Test func fitPredictEvaluateExportThroughTheBinary() throws {
        let dir = scratchDir("pipeline")
        let train = dir + "/train.h5", val = dir + "/val.h5", recipe = dir + "/r.yaml"
        try writePlantedStore(train, n: 16, seed: 1)
        try writePlantedStore(val, n: 6, seed: 2, split: "val")
        try Self.recipe.replacingOccurrences(of: "epochs: 6", with: "epochs: 2").write(toFile: recipe, atomically: true, encoding: .utf8)
        let ck = dir + "/ck.h5"
        try? FileManager.default.removeItem(atPath: ck)
        let fit = try runUnseg(["fit", "--recipe", recipe, "--store", train, "--val", val, "--checkpoint", ck])
        #expect(fit.status == 0 && fit.stdout.contains("val after primaps-em epoch 2: mIoU"), "\(fit.stdout)\n\(fit.stderr)")
        #expect(fit.stderr.contains("PriMaPs-EM epoch 1/2") && !fit.stderr.contains("\u{1B}"), "\(fit.stderr)")
        let pred = dir + "/pred.h5"
        let p = try runUnseg(["predict", "--checkpoint", ck, "--store", val, "--out", pred])
        #expect(p.status == 0, "\(p.stderr)")
        let json = dir + "/m.json"
        let e = try runUnseg(["evaluate", "--store", val, "--predictions", pred, "--json", json])
        #expect(e.status == 0 && e.stdout.contains("mIoU"), "\(e.stderr)")
        let x = try runUnseg(["export", "--predictions", pred, "--store", val, "--out", dir + "/export", "--matching-from", json, "--sample", "2"])
        #expect(x.status == 0 && x.stdout.contains("6 label PNGs (classes)"), "\(x.stdout)\(x.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/export/labels/val_img_5.png"))
        #expect(FileManager.default.fileExists(atPath: dir + "/export/manifest.json"))
        // Bad inputs: one paragraph, exit 1.
        let bad = try runUnseg(["predict", "--checkpoint", train, "--store", val, "--out", pred])
        #expect(bad.status == 1 && bad.stderr.contains("not a checkpoint"), "\(bad.stderr)")
        let badRecipe = dir + "/bad.yaml"
        try "classes: 4\nbatchsize: 3\n".write(toFile: badRecipe, atomically: true, encoding: .utf8)
        let br = try runUnseg(["fit", "--recipe", badRecipe, "--store", train, "--checkpoint", dir + "/x.h5"])
        #expect(br.status == 1 && br.stderr.contains("unknown key 'batchsize'") && br.stderr.contains(badRecipe), "\(br.stderr)")
        let crf = try runUnseg(["predict", "--checkpoint", ck, "--store", val, "--out", dir + "/crf.h5", "--refine", "crf"])
        #expect(crf.status == 0, "\(crf.stderr)")
        // --init-from: EM from the finished checkpoint's prototypes, no PCA or warm-up.
        let ck2 = dir + "/ck2.h5"
        try? FileManager.default.removeItem(atPath: ck2)
        let again = try runUnseg(["fit", "--recipe", recipe, "--store", train, "--checkpoint", ck2, "--init-from", ck])
        #expect(again.status == 0 && again.stdout.contains("0 cosine-kmeans + ") && again.stderr.contains("starts from the prototypes of \(ck)"),
                "\(again.stdout)\n\(again.stderr)")
        let notFound = try runUnseg(["fit", "--recipe", recipe, "--store", train, "--checkpoint", dir + "/ck3.h5", "--init-from", dir + "/nope.h5"])
        #expect(notFound.status == 1 && notFound.stderr.contains("nope.h5") && !FileManager.default.fileExists(atPath: dir + "/ck3.h5"),
                "\(notFound.stderr)")
    }
}
