import Foundation
import Testing
import UnsegTestSupport
import UnsegClustering
import UnsegImaging
import UnsegLinAlg
import UnsegCore
import UnsegStore
@testable import UnsegPipeline

/// The repository's Recipes/ directory (found from this file's path).
func recipesDirectory() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Recipes").path
}

/// A small recipe for the planted stores.
func smallRecipe(classes: Int = 4, warmup: Int = 1, epochs: Int = 3, batch: Int = 4, seed: UInt64 = 7) -> Recipe {
    var r = Recipe()
    r.name = "test"
    r.classes = classes
    r.pcaSampleImages = 12
    r.warmupEpochs = warmup
    r.epochs = epochs
    r.batchSize = batch
    r.momentumEvery = 2
    r.checkpointEvery = 3
    r.seed = seed
    return r
}

@Suite struct RecipeTests {
    @Test func everyRecipeFileLoadsAndRoundTrips() throws {
        let dir = recipesDirectory()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        // 3 datasets x 4 backbones, the 4 +SotA+PriMaPs-EM rows (STEGO / HP), demo and demo-peer.
        #expect(files.count == 18, "\(files)")
        for f in files {
            let r = try Recipe.load(path: dir + "/" + f)
            #expect(try Recipe.parse(r.yaml()) == r, "\(f) round trip")
            let peer = f.contains("-stego_") || f.contains("-hp_") || f == "demo-peer.yaml"
            if peer {
                #expect(r.stages == [.primapsEM], "\(f): a peer recipe starts from the peer's cluster probe")
            }
            if !f.hasPrefix("demo") {
                #expect(r.batchSize == 32 && r.learningRate == 5e-3 && r.gamma == 2 && r.epochs == 50 && (peer || r.warmupEpochs == 2), "\(f)")
                #expect(r.momentumEvery == 10 && r.momentumDecayCap == 0.98 && r.selection == .last, "\(f)")
                #expect(r.classes == (f.hasPrefix("potsdam3") ? 3 : 27), "\(f)")
                let text = try String(contentsOfFile: dir + "/" + f, encoding: .utf8)
                #expect(text.contains("+PriMaPs-EM"), "\(f) names the paper's numbers")
            }
        }
    }

    @Test func unknownKeyAndOutOfRangeValuesNameTheKey() throws {
        let cases: [(String, [String])] = [
            ("classes: 27\nprimaps-em:\n  learning_rat: 0.1\n", ["primaps-em.learning_rat", "allowed keys", "learning_rate"]),
            ("classes: 27\nlearning_rate: 0.1\n", ["unknown key 'learning_rate'", "primaps-em"]),
            ("classes: 0\n", ["classes", "1...254"]),
            ("batch_size: -3\n", ["batch_size", "1...4096"]),
            ("primaps-em:\n  momentum_decay_cap: 1.0\n", ["primaps-em.momentum_decay_cap", "[0.0, 1.0)"]),
            ("primaps-em:\n  flip_probability: 2\n", ["primaps-em.flip_probability", "[0.0, 1.0]"]),
            ("cosine-kmeans:\n  learning_rate: 0\n", ["cosine-kmeans.learning_rate", "(0.0, 1.0]"]),
            ("selection: best\n", ["selection", "last, best-val"]),
            ("primaps-em:\n  proposals: spectral\n", ["primaps-em.proposals", "file, primaps"]),
            ("predict:\n  copy: both\n", ["predict.copy", "momentum, running"]),
            ("segment-kmeans:\n  vectors: pixels\n", ["segment-kmeans.vectors", "masks, cells"]),
            ("segment-kmeans:\n  cells_per_mask: 0\n", ["segment-kmeans.cells_per_mask", "1...65536"]),
            ("primaps-em:\n  epochs: many\n", ["primaps-em.epochs", "integer"]),
            ("classes: 4\nclasses: 5\n", ["duplicate key 'classes'"]),
            ("primaps-em:\n  gamma: 1\n  gamma: 2\n", ["duplicate key 'primaps-em.gamma'"]),
            ("stages: [primaps-em, pca-init]\n", ["stages", "out of order"]),
            ("stages: [pca-init, kmeans]\n", ["stages", "'kmeans' is not a stage"]),
            ("primaps-em: 3\n", ["primaps-em", "section"]),
            ("- a\n- b\n", ["mapping"]),
        ]
        for (yaml, needles) in cases {
            do {
                _ = try Recipe.parse(yaml)
                Issue.record("accepted: \(yaml)")
            } catch let e as RecipeError {
                for n in needles { #expect(e.message.contains(n), "\(yaml): \(e.message) lacks \(n)") }
            }
        }
    }

    @Test func printedRecipeRoundTripsForSeededRandomRecipes() throws {
        for seed in UInt64(0)..<20 {
            var g = SeededRandom(seed: seed)
            var r = Recipe()
            r.name = "r \(seed) \"quoted\""
            r.classes = 1 + g.int(below: 254)
            r.learningRate = g.double() * 0.9 + 1e-6
            r.warmupLearningRate = Double(g.float()) + 1e-7
            r.gamma = g.double() * 5
            r.momentumDecayCap = g.double() * 0.999
            r.flipProbability = g.double()
            r.primapsThreshold = g.double()
            r.seed = g.next() >> 1
            r.selection = g.bernoulli(0.5) ? .bestVal : .last
            r.predictCopy = g.bernoulli(0.5) ? .running : .momentum
            r.predictRefine = g.bernoulli(0.5) ? .crf : .none
            r.proposals = [.file, .primapsCRF, .primapsUnrefined][g.int(below: 3)]
            #expect(try Recipe.parse(r.yaml()) == r, "seed \(seed):\n\(r.yaml())")
        }
    }
}

@Suite struct CheckpointTests {
    @Test func checkpointRoundTripsExactly() throws {
        var g = SeededRandom(seed: 3)
        let k = 5, c = 7
        func model() -> PrototypeModel {
            PrototypeModel(directions: Matrix(rows: k, cols: c, data: (0..<(k * c)).map { _ in g.gaussian() }),
                           gains: (0..<k).map { _ in g.float() })
        }
        let em = EMTrainerState(running: model(), momentum: model(),
                                adam: AdamState(m: (0..<(k * c + k)).map { _ in g.gaussian() }, v: (0..<(k * c + k)).map { _ in g.float() }, step: 9),
                                step: 15, epoch: 2, momentumUpdates: 4, rngState: [g.next(), g.next(), UInt64.max, 0],
                                lossHistory: (0..<15).map { _ in g.double() })
        let warm = CosineKMeansTrainerState(model: PrototypeModel(directions: model().directions),
                                            adam: AdamState(m: (0..<(k * c)).map { _ in g.gaussian() }, v: (0..<(k * c)).map { _ in g.float() }, step: 2),
                                            step: 2, epoch: 1, rngState: [1, 2, 3, 4], lossHistory: [-0.5, -0.6])
        var pca = StateRecord()
        model().save(into: &pca, at: "model")
        pca.set("done", 1)
        let ck = FitCheckpoint(recipeYAML: smallRecipe().yaml(), stage: .primapsEM, step: 17, epoch: 2, batchInEpoch: 3,
                               states: [.pcaInit: pca, .cosineKMeans: warm.record, .primapsEM: em.record],
                               valHistory: [ValRecord(stage: .cosineKMeans, epoch: 1, miou: 12.5, accuracy: 40),
                                            ValRecord(stage: .primapsEM, epoch: 1, miou: 20.25, accuracy: 50.5)],
                               best: model(), bestRecord: ValRecord(stage: .primapsEM, epoch: 1, miou: 20.25, accuracy: 50.5),
                               storePath: "/x/train.h5", storeImages: 40, featureHeight: 8, featureWidth: 9, channels: c)
        let path = scratch("ck-roundtrip.h5")
        try ck.write(to: path)
        #expect(try FitCheckpoint.load(path: path) == ck)
        var empty = ck
        empty.valHistory = []; empty.best = nil; empty.bestRecord = nil; empty.states[.primapsEM] = nil; empty.stage = nil
        try empty.write(to: path)
        #expect(try FitCheckpoint.load(path: path) == empty)
    }

    @Test func channelMismatchNamesBothNumbersAndWhatToDo() throws {
        let train = scratch("ck-train16.h5"), other = scratch("ck-store12.h5"), ckPath = scratch("ck-mismatch.h5")
        try writePlantedStore(train, n: 8, channels: 16)
        try writePlantedStore(other, n: 8, channels: 12)
        try? FileManager.default.removeItem(atPath: ckPath)
        _ = try FitJob.run(FitOptions(recipe: smallRecipe(warmup: 1, epochs: 0), storePath: train, checkpointPath: ckPath))
        do {
            _ = try PredictJob.run(PredictOptions(checkpointPath: ckPath, storePath: other, outPath: scratch("ck-mm-pred.h5")))
            Issue.record("predict accepted a store with other channels")
        } catch {
            let m = "\(error)"
            #expect(m.contains("12") && m.contains("16") && m.contains("same backbone"), "\(m)")
        }
        do {
            _ = try FitJob.run(FitOptions(recipe: smallRecipe(warmup: 1, epochs: 0), storePath: other, checkpointPath: ckPath, resume: true))
            Issue.record("resume accepted a store with other channels")
        } catch {
            let m = "\(error)"
            #expect(m.contains("12") && m.contains("16"), "\(m)")
        }
    }
}

@Suite struct FitJobTests {
    /// Same seed on 1 and 2 threads: identical loss and validation histories and bit-identical prototypes.
    @Test func sameSeedSameMetricsOnOneAndTwoThreads() throws {
        let train = scratch("thr-train.h5"), val = scratch("thr-val.h5")
        try writePlantedStore(train, n: 16, seed: 1)
        try writePlantedStore(val, n: 6, seed: 2, split: "val")
        var results: [FitCheckpoint] = []
        for threads in [1, 2] {
            let ck = scratch("thr-ck\(threads).h5")
            try? FileManager.default.removeItem(atPath: ck)
            let r = try FitJob.run(FitOptions(recipe: smallRecipe(), storePath: train, valPath: val, checkpointPath: ck, threads: threads))
            results.append(r.checkpoint)
        }
        let (a, b) = (results[0], results[1])
        #expect(a.emLoss == b.emLoss && a.warmupLoss == b.warmupLoss, "seed 7: losses differ between 1 and 2 threads")
        #expect(a.valHistory == b.valHistory && a.valHistory.count == 4)
        #expect(a.momentum == b.momentum && a.running == b.running)
        #expect(a.emLoss.count == 3 * 4 && a.warmupLoss.count == 4)
    }

    /// A run stopped after step s (checkpoint every 3 steps, so up to 2 steps are redone) and
    /// resumed ends bit-identical to an uninterrupted run, for stops in the warm-up, mid-EM-epoch
    /// and on an epoch boundary. (The SIGKILL test of the binary is in UnsegCLITests.)
    @Test func resumeFromAStoppedRunIsBitIdentical() throws {
        let train = scratch("res-train.h5")
        try writePlantedStore(train, n: 10, seed: 4)
        let r = smallRecipe(warmup: 2, epochs: 3, batch: 3)   // 3 steps an epoch: warm-up steps 1...6, EM 7...15
        let full = scratch("res-full.h5")
        try? FileManager.default.removeItem(atPath: full)
        let a = try FitJob.run(FitOptions(recipe: r, storePath: train, checkpointPath: full)).checkpoint
        for stop in [2, 8, 12, 14] {
            let part = scratch("res-part\(stop).h5")
            try? FileManager.default.removeItem(atPath: part)
            var o = FitOptions(recipe: r, storePath: train, checkpointPath: part)
            o.stopAfterStep = stop
            let first = try FitJob.run(o)
            #expect(!first.checkpoint.isDone, "stop \(stop)")
            o.stopAfterStep = nil
            o.resume = true
            let b = try FitJob.run(o).checkpoint
            #expect(b.momentum == a.momentum && b.running == a.running, "stop after step \(stop): prototypes differ")
            #expect(b.emLoss == a.emLoss && b.warmupLoss == a.warmupLoss && b.states == a.states, "stop after step \(stop)")
        }
    }
}

@Suite struct InitFromTests {
    /// `--init-from` a finished Baseline (warm-up only) and then EM ends bit-identical to one run
    /// of warm-up + EM with the same recipe and seed: what `unseg demo` relies on.
    @Test func emFromTheBaselineCheckpointEqualsOneRun() throws {
        let train = scratch("init-train.h5")
        try writePlantedStore(train, n: 10, seed: 6)
        let r = smallRecipe(warmup: 2, epochs: 3, batch: 3)
        let paths = ["init-full.h5", "init-base.h5", "init-em.h5"].map { scratch($0) }
        for p in paths { try? FileManager.default.removeItem(atPath: p) }
        let full = try FitJob.run(FitOptions(recipe: r, storePath: train, checkpointPath: paths[0])).checkpoint
        _ = try FitJob.run(FitOptions(recipe: r.baseline, storePath: train, checkpointPath: paths[1]))
        var o = FitOptions(recipe: r, storePath: train, checkpointPath: paths[2])
        o.initFromPath = paths[1]
        let res = try FitJob.run(o)
        let em = res.checkpoint
        #expect(em.momentum == full.momentum && em.running == full.running, "prototypes differ from one warm-up + EM run")
        #expect(em.emLoss == full.emLoss && em.warmupLoss.isEmpty && res.stepsRun == em.emSteps)
        #expect(try FitCheckpoint.load(path: paths[2]).initFrom == paths[1])
        #expect(try FitCheckpoint.load(path: paths[0]).initFrom == nil)
    }

    @Test func initFromRejectsUnfinishedMismatchedAndForeignFiles() throws {
        let train = scratch("initbad-train.h5")
        try writePlantedStore(train, n: 10, seed: 6)
        let unfinished = scratch("initbad-unfinished.h5"), five = scratch("initbad-five.h5")
        for p in [unfinished, five] { try? FileManager.default.removeItem(atPath: p) }
        var u = FitOptions(recipe: smallRecipe(warmup: 2, epochs: 0, batch: 3), storePath: train, checkpointPath: unfinished)
        u.stopAfterStep = 2
        _ = try FitJob.run(u)
        _ = try FitJob.run(FitOptions(recipe: smallRecipe(classes: 5, warmup: 1, epochs: 0), storePath: train, checkpointPath: five))
        func failure(from src: String) -> String {
            let out = scratch("initbad-out.h5")
            try? FileManager.default.removeItem(atPath: out)
            var o = FitOptions(recipe: smallRecipe(), storePath: train, checkpointPath: out)
            o.initFromPath = src
            do { _ = try FitJob.run(o); return "accepted" } catch { return "\(error)" }
        }
        let a = failure(from: unfinished)
        #expect(a.contains(unfinished) && a.contains("unfinished") && a.contains("--resume"), "\(a)")
        let b = failure(from: five)
        #expect(b.contains(five) && b.contains("4 prototypes") && b.contains("has 5"), "\(b)")
        let c = failure(from: train)
        #expect(c.contains(train) && c.contains("not a checkpoint"), "\(c)")
    }
}

@Suite struct PredictExportTests {
    /// fit -> predict -> evaluate: the predictions file is what `unseg evaluate` reads, and its
    /// mIoU equals the fit's own validation mIoU of the same prototypes (same argmax, same matching).
    @Test func predictThenEvaluateMatchesFitValidation() throws {
        let train = scratch("pe-train.h5"), val = scratch("pe-val.h5"), ck = scratch("pe-ck.h5"), pred = scratch("pe-pred.h5")
        try writePlantedStore(train, n: 16, seed: 5)
        try writePlantedStore(val, n: 6, seed: 6, split: "val")
        try? FileManager.default.removeItem(atPath: ck)
        let fit = try FitJob.run(FitOptions(recipe: smallRecipe(), storePath: train, valPath: val, checkpointPath: ck, threads: 2))
        let s = try PredictJob.run(PredictOptions(checkpointPath: ck, storePath: val, outPath: pred, threads: 2))
        #expect(s.imageCount == 6 && s.classCount == 4 && s.prototypes == "momentum")
        let rep = try EvaluateJob.run(storePath: val, predictionsPath: pred)
        let last = try #require(fit.checkpoint.valHistory.last)
        #expect(rep.result.miou == last.miou && rep.result.accuracy == last.accuracy)
        // Planted classes with noise 0.6 against unit-scale means are easy: well above chance (25% acc).
        #expect(rep.result.accuracy > 60, "accuracy \(rep.result.accuracy)")

        // CRF refinement writes valid ids too; a store without /images gives a clear error.
        let crf = scratch("pe-crf.h5")
        let s2 = try PredictJob.run(PredictOptions(checkpointPath: ck, storePath: val, outPath: crf, refine: .crf, threads: 2))
        #expect(s2.refine == .crf)
        let r2 = try EvaluateJob.run(storePath: val, predictionsPath: crf)
        #expect(r2.result.accuracy > 50)
    }

    @Test func exportWritesNamedPNGsSamplesAndManifest() throws {
        let train = scratch("ex-train.h5"), ck = scratch("ex-ck.h5"), pred = scratch("ex-pred.h5"), dir = scratch("ex-out")
        let labels = try writePlantedStore(train, n: 6, seed: 8)
        try? FileManager.default.removeItem(atPath: ck)
        try? FileManager.default.removeItem(atPath: dir)
        _ = try FitJob.run(FitOptions(recipe: smallRecipe(epochs: 1), storePath: train, checkpointPath: ck))
        _ = try PredictJob.run(PredictOptions(checkpointPath: ck, storePath: train, outPath: pred))
        let rep = try EvaluateJob.run(storePath: train, predictionsPath: pred)
        let json = scratch("ex-metrics.json")
        try rep.result.jsonData().write(to: URL(fileURLWithPath: json))
        let s = try ExportJob.run(ExportOptions(predictionsPath: pred, storePath: train, outDir: dir, matchingFrom: json, sample: 2))
        #expect(s.labelFiles.count == 6 && s.sampleFiles.count == 2 && s.ids == "classes")
        // Names come from /names ("train/img_3" -> "train_img_3").
        #expect(s.labelFiles[3] == "labels/train_img_3.png")
        let preds = try LabelMapsFile(path: pred, expect: .predictions).map("predictions", count: 6, height: 32, width: 32, storePath: train)
        for i in 0..<6 {
            let png = try PNG.readGray(dir + "/" + s.labelFiles[i])
            #expect(png.width == 32 && png.height == 32)
            // Plain ids = the matched classes of the predictions.
            let expected = try preds.read(i).map { rep.result.matching[Int($0)] }.map { $0 < 0 ? UInt8(255) : UInt8($0) }
            #expect(png.pixels == expected, "image \(i)")
            let (idx, pal) = try PNG.readLabels(dir + "/" + s.colorFiles[i])
            #expect(idx.pixels == expected && pal != nil)
            _ = labels
        }
        for f in s.sampleFiles {
            let pic = try PNG.readRGB(dir + "/" + f)
            #expect(pic.width > 3 * 32 && pic.height > 32, "\(f): \(pic.width)x\(pic.height)")
        }
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.manifestPath))) as! [String: Any]
        let images = manifest["images"] as! [[String: Any]]
        #expect(images.count == 6 && manifest["ids"] as? String == "classes" && (manifest["matching"] as? [Int]) == rep.result.matching)
        #expect(images[3]["name"] as? String == "train/img_3" && images[3]["stem"] as? String == "train_img_3" && images[0]["sample"] as? String == "samples/train_img_0.png")

        // A matching of the wrong length is refused, naming both counts.
        try #"{"matching": [0, 1]}"#.write(toFile: json, atomically: true, encoding: .utf8)
        #expect(throws: StoreError.self) { try ExportJob.run(ExportOptions(predictionsPath: pred, storePath: train, outDir: dir, matchingFrom: json)) }
    }
}

@Suite struct DemoRecipeTests {
    /// The built-in demo recipe and Recipes/demo.yaml are the same recipe.
    @Test func builtInDemoRecipeMatchesTheFile() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Recipes/demo.yaml").path
        #expect(try Recipe.load(path: file) == Recipe.demo)
        #expect(Recipe.demo.baseline.stages == [.pcaInit, .cosineKMeans] && Recipe.demo.baseline.warmupEpochs == Recipe.demo.warmupEpochs)
    }
}
