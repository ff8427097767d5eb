import Foundation
import Testing
import UnsegClustering
import UnsegCore
import UnsegStore
import UnsegSynthetic
@testable import UnsegPipeline

/// `primaps-em.consistency_weight`: the multi-scale consistency in the fit, on a synth store with crops.
@Suite struct ConsistencyFitTests {
    func store(_ name: String, crops: Bool) throws -> String {
        let path = scratch(name)
        try? FileManager.default.removeItem(atPath: path)
        var config = SyntheticConfig(imageCount: 12, imageSize: 64, patchSize: 8, channels: 32, classes: 27, seed: 5)
        config.smallObjects = 4
        try Synthesize.writeStore(config: config, path: path, crops: crops ? CropViews(count: 2) : nil, threads: 2)
        return path
    }

    func recipe(weight: Double) -> Recipe {
        var r = smallRecipe(classes: 27, warmup: 1, epochs: 3, batch: 4)
        r.proposals = .primapsUnrefined
        r.primapsEM.consistencyWeight = weight
        return r
    }

    @Test func deterministicOverThreadsAndResumableAndItChangesTheFit() throws {
        let train = try store("cons-train.h5", crops: true)
        var results: [FitCheckpoint] = []
        for threads in [1, 2] {
            let ck = scratch("cons-ck\(threads).h5")
            try? FileManager.default.removeItem(atPath: ck)
            results.append(try FitJob.run(FitOptions(recipe: recipe(weight: 1), storePath: train, checkpointPath: ck, threads: threads)).checkpoint)
        }
        #expect(results[0].momentum == results[1].momentum && results[0].emLoss == results[1].emLoss, "1 and 2 threads differ")
        let part = scratch("cons-part.h5")
        try? FileManager.default.removeItem(atPath: part)
        var o = FitOptions(recipe: recipe(weight: 1), storePath: train, checkpointPath: part, threads: 2)
        o.stopAfterStep = 5
        _ = try FitJob.run(o)
        o.stopAfterStep = nil
        o.resume = true
        let resumed = try FitJob.run(o).checkpoint
        #expect(resumed.momentum == results[0].momentum && resumed.emLoss == results[0].emLoss, "resumed after step 5 differs")
        let off = scratch("cons-off.h5")
        try? FileManager.default.removeItem(atPath: off)
        let plain = try FitJob.run(FitOptions(recipe: recipe(weight: 0), storePath: train, checkpointPath: off, threads: 2)).checkpoint
        #expect(plain.momentum != results[0].momentum, "the consistency term changed nothing")
        #expect(zip(plain.emLoss, results[0].emLoss).allSatisfy { $0 <= $1 }, "the consistency term adds a non-negative loss")
    }

    /// A checkpoint written before the consistency keys existed (its recipe text lacks them) resumes:
    /// recipes are compared as recipes, missing keys being their defaults.
    @Test func aCheckpointFromBeforeTheKeysResumes() throws {
        let train = try store("cons-old.h5", crops: false)
        let ck = scratch("cons-old-ck.h5")
        try? FileManager.default.removeItem(atPath: ck)
        var o = FitOptions(recipe: recipe(weight: 0), storePath: train, checkpointPath: ck, threads: 2)
        o.stopAfterStep = 3
        _ = try FitJob.run(o)
        var saved = try FitCheckpoint.load(path: ck)
        saved.recipeYAML = saved.recipeYAML.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("consistency_") }.joined(separator: "\n")
        #expect(!saved.recipeYAML.contains("consistency"))
        try saved.write(to: ck)
        o.stopAfterStep = nil
        o.resume = true
        #expect(try FitJob.run(o).checkpoint.isDone)
        // A real difference is still refused.
        try? FileManager.default.removeItem(atPath: ck)
        o.resume = false
        o.stopAfterStep = 3
        _ = try FitJob.run(o)
        o.stopAfterStep = nil
        o.resume = true
        o.recipe.primapsEM.consistencyTarget = .hard
        #expect(throws: RecipeError.self) { _ = try FitJob.run(o) }
    }

    @Test func withoutCropViewsTheFitSaysWhatToDo() throws {
        let train = try store("cons-nocrops.h5", crops: false)
        let ck = scratch("cons-nocrops-ck.h5")
        try? FileManager.default.removeItem(atPath: ck)
        do {
            _ = try FitJob.run(FitOptions(recipe: recipe(weight: 1), storePath: train, checkpointPath: ck))
            Issue.record("a fit with consistency_weight on a store without crops ran")
        } catch let e as StoreError {
            #expect("\(e)".contains("/features_crops") && "\(e)".contains("--crops") && "\(e)".contains("consistency_weight"), "\(e)")
        }
        let done = FileManager.default.fileExists(atPath: ck) ? try FitCheckpoint.load(path: ck).isDone : false
        #expect(!done)
    }

    @Test func recipeKeysParseAndAreChecked() throws {
        #expect(try Recipe.parse(Recipe.demo.yaml()) == Recipe.demo)
        let r = try Recipe.parse("primaps-em:\n  consistency_weight: 0.5\n  consistency_teacher: momentum\n  consistency_target: hard\n")
        #expect(try Recipe.parse(r.yaml()) == r)
        #expect(r.primapsEM.consistencyWeight == 0.5 && r.primapsEM.consistencyTeacher == .momentum && r.primapsEM.consistencyTarget == .hard)
        let c = r.emConfig(threads: 1)
        #expect(c.consistencyWeight == 0.5 && c.consistencyTeacher == .momentum && c.consistencyTarget == .hard)
        for bad in ["consistency_weight: -1", "consistency_teacher: ema", "consistency_target: fuzzy"] {
            let key = String(bad.split(separator: ":")[0])
            do { _ = try Recipe.parse("primaps-em:\n  \(bad)\n"); Issue.record("\(bad) accepted") } catch let e as RecipeError {
                #expect(e.message.contains(key), "\(e.message)")
            }
        }
    }
}
