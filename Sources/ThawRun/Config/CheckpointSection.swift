// CheckpointSection: the `checkpoint` section: when checkpoints are written and how many are kept.
import ThawPlan

/// When checkpoints are written and how many are kept.
public struct CheckpointSection: ConfigSection {
    /// Write a checkpoint every this many epochs, and after the last (0 = never).
    public var everyEpochs = 1
    /// How many epoch checkpoints to keep (the newest).
    public var keepLast = 3
    /// Also keep `best.safetensors`: the epoch with the lowest validation loss (training loss without a validation set).
    public var keepBest = true

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<CheckpointSection>] {
        [.init("every_epochs", \.everyEpochs), .init("keep_last", \.keepLast), .init("keep_best", \.keepBest)]
    }

    /// Counts in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.integer(everyEpochs, "\(keyPath).every_epochs", 0...ConfigLimits.epochs, note: "0 turns checkpoints off")
        try check.integer(keepLast, "\(keyPath).keep_last", 1...ConfigLimits.epochs)
    }
}
