// TrainingError: what can stop a run, each case naming where and why.

/// An error that stops training, with the context needed to act on it.
public enum TrainingError: Error, CustomStringConvertible {
    /// Gradients or loss stopped being finite.
    case nonFinite(what: String, epoch: Int, step: Int)
    /// A file could not be read or written.
    case io(path: String, message: String)
    /// The configuration names something that does not exist.
    case unknown(key: String, value: String, choices: [String])
    /// The data does not fit the model.
    case dataMismatch(String)

    /// One line naming the failure.
    public var description: String {
        switch self {
        case .nonFinite(let what, let epoch, let step):
            return "\(what) became NaN or infinite at epoch \(epoch), step \(step); "
                + "lower optimizer.learning_rate or set training.gradient_clip_norm"
        case .io(let path, let message):
            return "\(path): \(message)"
        case .unknown(let key, let value, let choices):
            return "\(key): unknown value '\(value)'; expected one of \(choices.joined(separator: ", "))"
        case .dataMismatch(let message):
            return message
        }
    }
}
