/// Errors from the clustering and prototype-fitting algorithms (bad user input).
///
/// Each message states what was wrong, with the values involved, and what to do.
public struct ClusteringError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Checks that every value of `data` is finite; `what` names the input in the message.
func checkFinite(_ data: [Float], _ what: String, cols: Int) throws {
    let bad = data.withUnsafeBufferPointer { p -> Int? in
        for i in 0..<p.count where !p[i].isFinite { return i }
        return nil
    }
    if let i = bad {
        let c = max(cols, 1)
        throw ClusteringError("\(what) has a non-finite value (\(data[i])) at row \(i / c), column \(i % c); remove or repair NaN/inf rows before fitting")
    }
}
