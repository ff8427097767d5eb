import Foundation
import Testing

/// Debian's OpenBLAS 0.3.21 does not know every CPU it runs on (it takes Sapphire Rapids for a
/// Prescott, SSE3 kernels at a third of the sgemm speed). `unseg` then starts itself again with
/// `OPENBLAS_CORETYPE` set to a family the CPU runs; a family the user set stands.
@Suite struct BLASKernelChoiceTests {
    /// The "Core: ..." lines OpenBLAS prints at each load with OPENBLAS_VERBOSE=2.
    func coreLines(_ r: CLIResult) -> [String] {
        (r.stdout + "\n" + r.stderr).split(separator: "\n").map(String.init).filter { $0.hasPrefix("Core: ") }
    }

    func environment(coreType: String?) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_CORETYPE"] = coreType
        env["UNSEG_BLAS_CORE_CHOSEN"] = nil
        env["OPENBLAS_VERBOSE"] = "2"
        return env
    }

    @Test func theUsersFamilyStands() throws {
        let r = try runUnseg(["--version"], environment: environment(coreType: "Prescott"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(coreLines(r) == ["Core: Prescott"], "one load, no restart: \(r.stdout) \(r.stderr)")
    }

    @Test func aFamilyThisCPURunsIsChosen() throws {
        #if arch(x86_64)
        let r = try runUnseg(["--version"], environment: environment(coreType: nil))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("0.1"), "the command still runs after a restart: \(r.stdout)")
        let cores = coreLines(r).map { $0.dropFirst(6).lowercased() }
        try #require(cores.count == 1 || cores.count == 2, "\(r.stdout) \(r.stderr)")
        if cores.count == 2 { #expect(cores[0] != cores[1], "a restart changes the family") }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        let final = cores.last!
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) {
            #expect(["skylakex", "cooperlake", "sapphirerapids"].contains(final), "AVX-512 CPU on \(final) kernels")
        } else if flags.contains("avx2") && flags.contains("fma") {
            #expect(["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"].contains(final), "AVX2 CPU on \(final) kernels")
        }
        #endif
    }
}
