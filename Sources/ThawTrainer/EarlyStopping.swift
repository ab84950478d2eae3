// EarlyStopping: ends training once the validation metric has stopped improving, but never while
// the unfreezing schedule still has groups to thaw, and can put back the best epoch's weights.
//
// Every rank holds the same all-reduced validation results, so every rank decides the same after
// the same epoch, with no message.
import ThawNN

/// The validation metric early stopping watches.
public enum EarlyStoppingMetric: String, Codable, Sendable, CaseIterable {
    /// Lower is better.
    case validationLoss = "validation_loss"
    /// Higher is better.
    case validationAccuracy = "validation_accuracy"
}

/// How early stopping decides.
public struct EarlyStoppingSettings: Equatable, Sendable {
    /// Epochs without improvement before stopping (0 = off).
    public var patience: Int
    /// The metric watched.
    public var metric: EarlyStoppingMetric
    /// The smallest change that counts as an improvement.
    public var minimumDelta: Double
    /// Whether to put back the weights of the best epoch at the end.
    public var restoreBest: Bool

    /// Creates settings; the defaults are off.
    public init(patience: Int = 0, metric: EarlyStoppingMetric = .validationLoss, minimumDelta: Double = 0, restoreBest: Bool = true) {
        self.patience = patience
        self.metric = metric
        self.minimumDelta = minimumDelta
        self.restoreBest = restoreBest
    }
}

/// The best epoch so far and the decision to stop.
public struct EarlyStopping {
    /// How it decides.
    public let settings: EarlyStoppingSettings
    /// The best epoch so far by the metric, with a copy of its parameters and batch-norm state.
    private(set) var best: (epoch: Int, value: Double, weights: ParameterStore.Snapshot)?

    /// Creates the tracker.
    public init(settings: EarlyStoppingSettings) { self.settings = settings }

    /// The best epoch so far (nil when off or before the first validation).
    public var bestEpoch: Int? { best?.epoch }

    /// Records an epoch (copying the store's weights when it is the best so far) and says whether to
    /// stop: the metric has not improved for `patience` epochs, counted from the later of the best
    /// epoch and `lastThaw` (so a newly thawed group gets its full chance), and nothing is left to thaw.
    public mutating func shouldStop(after record: EpochRecord, lastThaw: Int, thawingIsExhausted: Bool, store: ParameterStore) -> Bool {
        guard settings.patience > 0, let validation = record.validation else { return false }
        let value = settings.metric == .validationLoss ? validation.loss : validation.accuracy
        let improved = best.map { settings.metric == .validationLoss ? value < $0.value - settings.minimumDelta
                                                                     : value > $0.value + settings.minimumDelta } ?? true
        if improved { best = (record.epoch, value, store.snapshot()) }
        let stale = record.epoch - max(best?.epoch ?? record.epoch, lastThaw)
        return stale >= settings.patience && thawingIsExhausted
    }

    /// With `restoreBest`, puts the best epoch's weights back into `store` unless the best is
    /// `lastEpoch` itself; returns the epoch restored.
    public func restoreBest(into store: ParameterStore, lastEpoch: Int) -> Int? {
        guard settings.restoreBest, let best, best.epoch != lastEpoch else { return nil }
        store.restore(best.weights)
        return best.epoch
    }
}
