import Foundation
import Testing

/// `unseg-bench paper-run`'s bad starts: each a clear message on stderr naming what is wrong and
/// what to do, a non-zero exit (no trap), and nothing run.
@Suite struct PaperRunErrorTests {
    /// unseg-bench beside the unseg binary the tests run.
    func benchBinary() -> String { unsegBinary().deletingLastPathComponent().appendingPathComponent("unseg-bench").path }

    func repoRoot() -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    @Test func unknownDatasetIsNamed() throws {
        let bench = benchBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bench), "unseg-bench is not built beside \(unsegBinary().path)")
        let dir = scratchDir("paper-run-errors/dataset")
        let r = try runProcess(bench, ["paper-run", "--quick", "--dataset=pascal", "--dir=\(dir)"], cwd: repoRoot())
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("unknown --dataset=pascal") && r.stderr.contains("cityscapes27, cocostuff27"), "\(r.stderr)")
        #expect(!r.stderr.contains("Fatal error"), "\(r.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).isEmpty, "nothing is made")
    }

    /// `--help` prints the usage and runs nothing (it once started the full-size run); a misspelt
    /// option is refused instead of dropped.
    @Test func helpAndUnknownOptions() throws {
        let bench = benchBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bench))
        let dir = scratchDir("paper-run-errors/help")
        let help = try runProcess(bench, ["paper-run", "--help", "--dir=\(dir)"], cwd: repoRoot())
        #expect(help.status == 0, "\(help.stderr)")
        #expect(help.stdout.contains("usage: unseg-bench") && help.stdout.contains("paper-run"), "\(help.stdout)")
        #expect(!help.stdout.contains("corpus:"), "nothing runs: \(help.stdout)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).isEmpty, "nothing is made")
        let bad = try runProcess(bench, ["paper-run", "--quik", "--dir=\(dir)"], cwd: repoRoot())
        #expect(bad.status == 1 && bad.stderr.contains("unknown option '--quik'"), "\(bad.stderr)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).isEmpty, "nothing is made")
    }

    @Test func missingUnsegBinaryIsNamed() throws {
        let bench = benchBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bench))
        // A copy of unseg-bench with no unseg beside it.
        let dir = scratchDir("paper-run-errors/alone")
        let copy = dir + "/unseg-bench"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: bench, toPath: copy)
        let r = try runProcess(copy, ["paper-run", "--quick", "--dir=\(dir)/cache"], cwd: repoRoot())
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("\(dir)/unseg is not built") && r.stderr.contains("swift build -c release"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/cache"), "nothing is made")
    }

    @Test func outsideTheRepositoryTheRecipeIsNamed() throws {
        let bench = benchBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bench))
        let dir = scratchDir("paper-run-errors/cwd")
        let r = try runProcess(bench, ["paper-run", "--quick", "--dir=\(dir)/cache"], cwd: dir)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("Recipes/cityscapes27-dino_vits8.yaml not found") && r.stderr.contains("repository root"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/cache"), "nothing is made")
    }

    /// A cached corpus whose store is damaged: the error names the file; the step commands never run.
    @Test func damagedCachedStoreIsNamed() throws {
        let bench = benchBinary()
        try #require(FileManager.default.isExecutableFile(atPath: bench))
        let dir = scratchDir("paper-run-errors/damaged")
        // A working directory with the recipes but no generator sources: its fingerprint is FNV-1a's basis.
        try? FileManager.default.removeItem(atPath: dir + "/Recipes")
        try FileManager.default.createSymbolicLink(atPath: dir + "/Recipes", withDestinationPath: repoRoot() + "/Recipes")
        let root = dir + "/cache/cityscapes27-298"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try "synth 298 train / 50 val, seed 0, generator cbf29ce484222325".write(toFile: root + "/corpus.stamp", atomically: true, encoding: .utf8)
        try Data("not an HDF5 file".utf8).write(to: URL(fileURLWithPath: root + "/train.h5"))
        try Data("not an HDF5 file".utf8).write(to: URL(fileURLWithPath: root + "/val.h5"))
        let r = try runProcess(bench, ["paper-run", "--quick", "--dir=\(dir)/cache"], cwd: dir)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stdout.contains("corpus: cached"), "the stamp matched:\n\(r.stdout)")
        #expect(r.stderr.contains(root + "/train.h5"), "\(r.stderr)")
        #expect(!r.stderr.contains("Fatal error"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root + "/run/propose.log"), "no step ran")
        #expect(try Data(contentsOf: URL(fileURLWithPath: root + "/train.h5")) == Data("not an HDF5 file".utf8), "the input is untouched")
    }
}
