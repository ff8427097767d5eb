import Foundation
import Synchronization
import UnsegCore
import UnsegStore

/// A progress line on stderr: count, rate, ETA and a status note, redrawn in place.
///
/// Off when stderr is not a terminal (logs and CI stay clean) unless `force` is set.
/// Redraws at most 10 times a second.
public final class TerminalProgress: ProgressSink, Sendable {
    public let label: String
    public let unit: String
    private let enabled: Bool
    private let start = Date()
    private struct DrawState { var lastDraw = Date.distantPast; var drewSomething = false }
    private let state = Mutex(DrawState())

    public init(label: String, unit: String = "img", force: Bool = false) {
        self.label = label
        self.unit = unit
        // Under mpirun only rank 0 draws (the job's progress is its share's, the slowest alike).
        self.enabled = Distributed.isLead && (force || isatty(STDERR_FILENO) != 0)
    }

    public func update(done: Int, total: Int, note: String?) {
        guard enabled else { return }
        state.withLock { st in
        let now = Date()
        if done < total && now.timeIntervalSince(st.lastDraw) < 0.1 { return }
        st.lastDraw = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let pct = total > 0 ? 100 * done / total : 100
        var line = "\(label) \(done)/\(total) (\(pct)%) \(String(format: "%.1f", rate)) \(unit)/s ETA \(Self.clock(eta))"
        if let n = note { line += "  \(n)" }
        FileHandle.standardError.write(("\r\u{1B}[K" + line).data(using: .utf8)!)
        st.drewSomething = true
        }
    }

    public func finish() {
        guard enabled else { return }
        state.withLock { st in
            if st.drewSomething { FileHandle.standardError.write("\n".data(using: .utf8)!) }
            st.drewSomething = false
        }
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
