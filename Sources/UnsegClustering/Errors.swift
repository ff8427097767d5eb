import UnsegCore

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
    if let d = Finite.describeFirstNonFinite(data, cols: cols) {
        throw ClusteringError("\(what) \(d); remove or repair NaN/inf rows before fitting")
    }
}
