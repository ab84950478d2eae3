// Metrics: what one epoch produced, and how numbers are written for people.
import Foundation

/// Loss and accuracy over a set of samples.
public struct Evaluation: Codable, Equatable, Sendable {
    /// Mean loss per real sample.
    public var loss: Double
    /// Fraction of real samples classified correctly.
    public var accuracy: Double
    /// How many real samples were counted (over all ranks).
    public var samples: Int
}

/// One epoch's results.
public struct EpochRecord: Codable, Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// The plan version the epoch trained under.
    public var planVersion: Int
    /// The trainable groups during the epoch.
    public var trainableGroups: [String]
    /// Groups thawed at the start of this epoch.
    public var newlyThawed: [String]
    /// Training loss and accuracy (over the real samples of all ranks).
    public var train: Evaluation
    /// Validation results, when a validation set exists.
    public var validation: Evaluation?
    /// Test results, when evaluated this epoch.
    public var test: Evaluation?
    /// Wall-clock seconds of the training part of the epoch.
    public var seconds: Double
    /// Gradient bytes each rank sent into all-reduces during the epoch.
    public var bytesExchanged: Int
    /// Optimizer steps taken.
    public var steps: Int
    /// Training samples per second over all ranks.
    public var samplesPerSecond: Double
    /// Seconds spent filling the frozen-prefix cache before the epoch (not part of `seconds`); nil when
    /// the epoch filled none. An epoch that read the cache has `fromCache` true.
    public var cacheFillSeconds: Double? = nil
    /// Whether the epoch ran only the trainable groups, on cached frozen-prefix features.
    public var fromCache: Bool? = nil
    /// Domain-adversarial training only: the domain classifier's loss and accuracy on the training rows
    /// (source and target) of the epoch; accuracy near ½ means the features no longer tell the domains apart.
    public var domain: Evaluation? = nil

    enum CodingKeys: String, CodingKey {
        case epoch, train, validation, test, seconds, steps, domain
        case cacheFillSeconds = "cache_fill_seconds"
        case fromCache = "from_cache"
        case planVersion = "plan_version"
        case trainableGroups = "trainable_groups"
        case newlyThawed = "newly_thawed"
        case bytesExchanged = "bytes_exchanged"
        case samplesPerSecond = "samples_per_second"
    }
}

/// A fraction as a percentage with two decimals.
public func percent(_ fraction: Double) -> String { String(format: "%.2f%%", fraction * 100) }

/// A byte count in B, KB, MB or GB.
public func bytes(_ count: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(count)
    var unit = 0
    while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
}

