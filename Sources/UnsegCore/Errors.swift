/// A bad input to a shared kernel (k-means, a label protocol), phrased for the user: what was
/// wrong, with the values involved, and what to do.
public struct KernelError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Errors of `KMeans` (scikit-learn's phrasing: "n_samples=3 should be >= n_clusters=5").
public typealias KMeansError = KernelError

/// Finiteness checks shared by every algorithm that must refuse NaN / inf input.
public enum Finite {
    /// Index of the first non-finite value of `data`, or nil when all are finite. O(n).
    public static func firstNonFinite(_ data: [Float]) -> Int? {
        data.withUnsafeBufferPointer { p -> Int? in
            for i in 0..<p.count where !p[i].isFinite { return i }
            return nil
        }
    }

    /// "has a non-finite value (nan) at row 3, column 7" for `data` `[n, cols]`, or nil.
    public static func describeFirstNonFinite(_ data: [Float], cols: Int) -> String? {
        guard let i = firstNonFinite(data) else { return nil }
        let c = max(cols, 1)
        return "has a non-finite value (\(data[i])) at row \(i / c), column \(i % c)"
    }
}

/// Checks that every value of `data` `[n, cols]` is finite; `what` names the input in the message.
func checkFinite(_ data: [Float], _ what: String, cols: Int) throws {
    if let d = Finite.describeFirstNonFinite(data, cols: cols) {
        throw KMeansError("\(what) \(d); remove or repair NaN/inf rows before fitting")
    }
}
