/// Errors of the evaluation module: bad user input, never a programming error.
///
/// Every message says what happened, with the values involved, and what to do.
public struct EvaluationError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A short machine-readable kind, e.g. `"non-finite-cost"`.
    public let kind: String
    /// The full human-readable message.
    public let message: String

    /// Makes an error of `kind` with the full `message`.
    public init(_ kind: String, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
