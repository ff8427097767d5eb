import Foundation
import Testing
import UnsegTestSupport
import UnsegPipeline
import UnsegStore

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
    /// The mask stages were measured on masks of masks.primaps_threshold (0.5, Docs/maskcontrast.md):
    /// a proposals file of another threshold is used, and the log says what to run to match.
    @Test func maskStagesNameAProposalsFileOfAnotherThreshold() throws {
        let dir = scratchDir("fit-mask-threshold")
        let store = dir + "/s.h5", props = dir + "/p.h5", ck = dir + "/ck.h5", recipe = dir + "/r.yaml"
        for p in [props, ck] { try? FileManager.default.removeItem(atPath: p) }
        try writePlantedStore(store, n: 8, seed: 4)
        try "name: t\nclasses: 4\nbatch_size: 4\nstages: [segment-kmeans]\nsegment-kmeans:\n  pca_dims: 0\n  restarts: 2\n"
            .write(toFile: recipe, atomically: true, encoding: .utf8)
        #expect(try runUnseg(["propose", "--store", store, "--out", props]).status == 0)
        let r = try runUnseg(["fit", "--recipe", recipe, "--store", store, "--proposals", props, "--checkpoint", ck])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("threshold 0.40") && r.stderr.contains("--threshold 0.50"), "\(r.stderr)")
    }

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

    static let maskRecipe = """
    name: "mask-kill"
    classes: 4
    batch_size: 4
    checkpoint_every: 2
    seed: 5
    stages: [maskcontrast, segment-kmeans]
    maskcontrast:
      epochs: 8
      hidden: 16
      dim: 8
      queue: 12
      learning_rate: 0.5
    segment-kmeans:
      pca_dims: 4
      restarts: 3
    """

    /// The MaskContrast-style fit through the binary: 2 threads give the bits of 1 thread; a run
    /// killed with SIGKILL in the head's training and resumed (on another thread count) ends with
    /// the same head, key head, queue, optimiser state, centroids and predictions.
    @Test func maskContrastFitIsThreadInvariantAndResumesBitIdentically() throws {
        let dir = scratchDir("mask-kill")
        let store = dir + "/train.h5", recipe = dir + "/r.yaml"
        try writePlantedStore(store, n: 24, seed: 8)
        try Self.maskRecipe.write(toFile: recipe, atomically: true, encoding: .utf8)
        let one = dir + "/one.h5", two = dir + "/two.h5", ck = dir + "/ck.h5"
        for f in [one, two, ck] { try? FileManager.default.removeItem(atPath: f) }
        let base = ["fit", "--recipe", recipe, "--store", store]
        let r1 = try runUnseg(base + ["--checkpoint", one, "--threads", "1"])
        #expect(r1.status == 0 && r1.stdout.contains("48 maskcontrast + 0 segment-kmeans steps"), "\(r1.stdout)\n\(r1.stderr)")
        #expect(r1.stderr.contains("segment k-means: ") && r1.stderr.contains("through the mlp head (8 dims)"), "\(r1.stderr)")
        let r2 = try runUnseg(base + ["--checkpoint", two, "--threads", "2"])
        #expect(r2.status == 0, "\(r2.stderr)")
        let a = try FitCheckpoint.load(path: one), b = try FitCheckpoint.load(path: two)
        #expect(a.isDone && a.states == b.states, "1 vs 2 threads")
        // 6 steps an epoch, 48 steps of head training.
        let s = try killRun(base + ["--checkpoint", ck, "--threads", "2", "--debug-step-delay-ms", "25"], checkpoint: ck, atStep: 13)
        let mid = try FitCheckpoint.load(path: ck)
        #expect(mid.stage == .maskContrast && s >= 13 && mid.step < 48, "killed in the head's training: step \(mid.step)")
        let done = try runUnseg(base + ["--checkpoint", ck, "--resume", "--threads", "1"])
        #expect(done.status == 0 && done.stdout.contains("resumed at step"), "\(done.stdout)\n\(done.stderr)")
        let c = try FitCheckpoint.load(path: ck)
        #expect(c.states == a.states && c.step == a.step, "killed + resumed differs from the uninterrupted run")
        #expect(try c.maskModel() == a.maskModel())
        // Predictions through the binary: the same ids from both checkpoints.
        let pa = dir + "/pa.h5", pc = dir + "/pc.h5"
        for f in [pa, pc] { try? FileManager.default.removeItem(atPath: f) }
        #expect(try runUnseg(["predict", "--checkpoint", one, "--store", store, "--out", pa, "--threads", "1"]).status == 0)
        #expect(try runUnseg(["predict", "--checkpoint", ck, "--store", store, "--out", pc, "--threads", "2"]).status == 0)
        let st = try FeatureStore(path: store)
        let fa = try PredictionsFile(path: pa, store: st), fc = try PredictionsFile(path: pc, store: st)
        for i in 0..<24 { #expect(try fa.read(i) == fc.read(i), "image \(i)") }
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
