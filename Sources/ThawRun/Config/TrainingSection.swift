// TrainingSection: the `training` section: epochs, batches, gradient handling, the exchange,
// early stopping and the frozen-prefix cache.
import ThawPlan
import ThawTrainer

/// How gradients are exchanged between ranks.
public enum ExchangeMode: String, Codable, Sendable, CaseIterable {
    /// One blocking all-reduce of the trainable range after backward: the reference path.
    case plain
    /// Non-blocking all-reduces of buckets started during backward, from the head down.
    case bucketed
}

/// Epochs, batches and gradient handling.
public struct TrainingSection: ConfigSection {
    /// Passes over the training data.
    public var epochs = 3
    /// The global batch size: samples per optimizer step summed over all ranks.
    public var batchSize = 64
    /// Micro-batches per step; gradients accumulate and are exchanged once per step.
    public var accumulationSteps = 1
    /// Label smoothing ε for the cross-entropy.
    public var labelSmoothing: Float = 0
    /// Clip gradients to this global norm (0 turns clipping off).
    public var gradientClipNorm: Float = 0
    /// Stop as diverged when a step's loss exceeds this many times the run's first step's loss
    /// (0 = stop only when it is not finite).
    public var divergenceFactor: Double = 1e4
    /// How gradients are exchanged.
    public var exchange: ExchangeMode = .bucketed
    /// Target bucket size for the bucketed exchange, in megabytes.
    public var bucketSizeMegabytes: Double = 4
    /// OpenBLAS threads per rank; 0 = the host's cores ÷ the ranks on that host (at least 1).
    public var blasThreads = 0
    /// Evaluate on the test set after every epoch (otherwise only at the end).
    public var evaluateEveryEpoch = true
    /// Stop when the validation metric stops improving (off unless `patience` > 0).
    public var earlyStopping = EarlyStoppingSection()
    /// The frozen-prefix activation cache.
    public var featureCache = FeatureCacheSection()
    /// The per-rank timeline of chosen steps (off by default).
    public var trace = TraceSection()

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<TrainingSection>] {
        [.init("epochs", \.epochs), .init("batch_size", \.batchSize), .init("accumulation_steps", \.accumulationSteps),
         .init("label_smoothing", \.labelSmoothing), .init("gradient_clip_norm", \.gradientClipNorm),
         .init("divergence_factor", \.divergenceFactor), .init("exchange", choice: \.exchange), .init("bucket_size_mb", \.bucketSizeMegabytes),
         .init("blas_threads", \.blasThreads), .init("evaluate_every_epoch", \.evaluateEveryEpoch),
         .init("early_stopping", \.earlyStopping), .init("feature_cache", \.featureCache),
         .init("trace", \.trace)]
    }

    /// Counts, rates and sizes in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.integer(epochs, "\(keyPath).epochs", 1...ConfigLimits.epochs)
        try check.integer(batchSize, "\(keyPath).batch_size", 1...ConfigLimits.batchSize)
        try check.integer(accumulationSteps, "\(keyPath).accumulation_steps", 1...ConfigLimits.batchSize)
        try check.require(batchSize % accumulationSteps == 0, "\(keyPath).accumulation_steps",
                          "must divide training.batch_size (\(batchSize)); got \(accumulationSteps)")
        try check.number(labelSmoothing, "\(keyPath).label_smoothing", .probability)
        try check.number(gradientClipNorm, "\(keyPath).gradient_clip_norm", .nonNegative(upTo: .greatestFiniteMagnitude), note: "0 turns clipping off")
        try check.require(divergenceFactor == 0 || (divergenceFactor > 1 && divergenceFactor.isFinite), "\(keyPath).divergence_factor",
                          "expected 0 (stop only on a non-finite loss) or a finite number > 1, got \(divergenceFactor)")
        try check.number(bucketSizeMegabytes, "\(keyPath).bucket_size_mb", .positive(upTo: ConfigLimits.megabytes))
        try check.integer(blasThreads, "\(keyPath).blas_threads", 0...ConfigLimits.threads, note: "0 = cores ÷ ranks on the host")
        try earlyStopping.validate(keyPath: "\(keyPath).early_stopping", check: check)
        try featureCache.validate(keyPath: "\(keyPath).feature_cache", check: check)
        try trace.validate(keyPath: "\(keyPath).trace", check: check)
    }
}

/// Early stopping: end training once the validation metric has not improved for `patience` epochs,
/// but never while the unfreezing schedule still has groups to thaw.
public struct EarlyStoppingSection: ConfigSection {
    /// Epochs without improvement before stopping (0 = off).
    public var patience = 0
    /// The metric watched.
    public var metric: EarlyStoppingMetric = .validationLoss
    /// The smallest change that counts as an improvement.
    public var minimumDelta: Double = 0
    /// Whether to put back the weights of the best epoch before the final test evaluation and export.
    public var restoreBest = true

    /// The defaults (off).
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<EarlyStoppingSection>] {
        [.init("patience", \.patience), .init("metric", choice: \.metric), .init("min_delta", \.minimumDelta), .init("restore_best", \.restoreBest)]
    }

    /// Patience and delta in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.integer(patience, "\(keyPath).patience", 0...ConfigLimits.epochs, note: "0 turns early stopping off")
        try check.number(minimumDelta, "\(keyPath).min_delta", .nonNegative(upTo: .greatestFiniteMagnitude))
    }
}

/// The frozen-prefix activation cache (ThawTrainer/FeatureCaching.swift).
public struct FeatureCacheSection: ConfigSection {
    /// Whether to compute the frozen groups' output once and reuse it while the boundary stays put.
    public var enabled = true
    /// Memory the caches of one rank may hold, in megabytes; beyond it they go to a file in the run directory.
    public var memoryMegabytes: Double = 2048

    /// The defaults (on, 2 GB).
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<FeatureCacheSection>] { [.init("enabled", \.enabled), .init("memory_mb", \.memoryMegabytes)] }

    /// The budget in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.number(memoryMegabytes, "\(keyPath).memory_mb", .nonNegative(upTo: ConfigLimits.megabytes), note: "0 puts every cache in a file")
    }
}
