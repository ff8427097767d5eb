/// A problem with a feature store or an output file, phrased for the user:
/// which file, which dataset, what is wrong, what to do.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var dataset: String?
    public var message: String

    public init(file: String, dataset: String? = nil, _ message: String) {
        self.file = file
        self.dataset = dataset
        self.message = message
    }

    public var description: String {
        let place = dataset.map { "\(file):\($0)" } ?? file
        return "\(place): \(message)"
    }
}
