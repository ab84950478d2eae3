// TrainingError: what can stop a run, each case naming where and why.

/// An error that stops training, with the context needed to act on it.
public enum TrainingError: Error, CustomStringConvertible {
    /// Gradients or loss stopped being finite (epoch and step counted from 1).
    case nonFinite(what: String, epoch: Int, step: Int)
    /// The loss grew past `factor` times the first step's (epoch and step counted from 1).
    case diverged(epoch: Int, step: Int, loss: Double, reference: Double, factor: Double, learningRate: Double)
    /// Rank 0 had no plan for an epoch (counted from 1) to broadcast.
    case noPlan(epoch: Int)
    /// A file could not be read or written.
    case io(path: String, message: String)

    /// One line naming the failure.
    public var description: String {
        switch self {
        case .nonFinite(let what, let epoch, let step):
            return "\(what) became NaN or infinite at epoch \(epoch), step \(step); "
                + "lower optimizer.learning_rate or set training.gradient_clip_norm; checkpoints written before are intact"
        case .diverged(let epoch, let step, let loss, let reference, let factor, let learningRate):
            return "training diverged at epoch \(epoch), step \(step): the loss is \(String(format: "%.3g", loss)), more than "
                + "\(String(format: "%g", factor)) × the first step's \(String(format: "%.3g", reference)) (training.divergence_factor); "
                + "lower optimizer.learning_rate (now \(String(format: "%g", learningRate))) or set training.gradient_clip_norm; "
                + "checkpoints written before are intact"
        case .noPlan(let epoch):
            return "rank 0 produced no plan for epoch \(epoch)"
        case .io(let path, let message):
            return "\(path): \(message)"
        }
    }
}
