// GroupPassTimer: what a model tells a timeline about each layer group's forward and backward pass.
// A model without one (the default) checks one optional per group and nothing else.

/// Which pass over a layer group.
public enum GroupPass: Sendable {
    /// The forward pass.
    case forward
    /// The backward pass.
    case backward
}

/// Times layer groups' passes (ThawTrainer's `Timeline`).
public protocol GroupPassTimer: AnyObject {
    /// The current time, in the timer's own unit.
    func now() -> UInt64
    /// Group `group`'s `pass` ran from `began` (a ``now()``) until now.
    func groupPassFinished(_ pass: GroupPass, group: Int, began: UInt64)
}

extension Model {
    /// Runs `body`, a `pass` over layer group `index`, timed when the model has a ``groupTimer``.
    @inline(__always)
    func timed<T>(_ pass: GroupPass, group index: Int, _ body: () -> T) -> T {
        guard let groupTimer else { return body() }
        let began = groupTimer.now()
        defer { groupTimer.groupPassFinished(pass, group: index, began: began) }
        return body()
    }
}
