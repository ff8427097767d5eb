/// Receives progress of long work over many images (a terminal bar, a log, nothing).
public protocol ProgressSink: AnyObject, Sendable {
    /// `done` of `total` items finished; `note` is a short status (e.g. "loss 0.42").
    func update(done: Int, total: Int, note: String?)
    /// The work ended (successfully or not); a terminal display ends its line.
    func finish()
}
