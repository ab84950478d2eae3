// ConfigChecks: the ranges configuration values must lie in, and the checks every section's
// `validate(keyPath:check:)` uses. The bounds are wide enough never to refuse a real run and tight
// enough that nothing downstream multiplies its way into an overflow, or into an allocation no
// machine has: counts and widths are at most 2^20, images at most 4096 pixels a side, epochs at most
// 100,000, and every float must be finite. Whether a run's sizes fit in memory together is the
// memory estimate's question (ThawRun/MemoryEstimate.swift). Every message names the key path, the
// expected range and the value given.

/// The largest values the size keys accept.
public enum ConfigLimits {
    /// `training.batch_size`: samples per step over all ranks.
    public static let batchSize = 1 << 20
    /// `model.classes` and every index in `data.classes`.
    public static let classes = 1 << 20
    /// `data.image_size` and `data.crop_padding`, in pixels.
    public static let imageSize = 4096
    /// `training.epochs`, and epoch counts such as patience and checkpoint intervals.
    public static let epochs = 100_000
    /// Layer widths: `model.head_hidden`, `model.domain_adaptation.domain_hidden`.
    public static let width = 1 << 16
    /// `data.max_length`, in tokens.
    public static let tokens = 1 << 16
    /// Step counts: warmup steps.
    public static let steps = 1_000_000_000
    /// `training.blas_threads`.
    public static let threads = 1024
    /// Sizes in megabytes: buckets and the feature cache (16 TB).
    public static let megabytes: Double = 16 * 1_048_576
    /// `optimizer.learning_rate` and `optimizer.weight_decay`.
    public static let rate: Double = 1000
    /// Factors and coefficients: the discriminative factor, the slanted-triangular ratio, DANN's γ and λ_max.
    public static let factor: Double = 1_000_000
    /// Characters in a path or a name.
    public static let pathLength = 4096
}

/// An interval a floating-point key must lie in; every interval excludes infinities and NaN.
public struct NumberRange: Sendable {
    /// The lower end.
    public var lower: Double
    /// Whether the lower end is in the range.
    public var lowerIncluded: Bool
    /// The upper end.
    public var upper: Double
    /// Whether the upper end is in the range.
    public var upperIncluded: Bool

    /// [0, 1): probabilities, smoothing, momentum and β.
    public static let probability = NumberRange(lower: 0, lowerIncluded: true, upper: 1, upperIncluded: false)
    /// [0, 1].
    public static let unitInterval = NumberRange(lower: 0, lowerIncluded: true, upper: 1, upperIncluded: true)
    /// (0, 1).
    public static let openUnitInterval = NumberRange(lower: 0, lowerIncluded: false, upper: 1, upperIncluded: false)
    /// [0, upper].
    public static func nonNegative(upTo upper: Double) -> NumberRange { NumberRange(lower: 0, lowerIncluded: true, upper: upper, upperIncluded: true) }
    /// (0, upper].
    public static func positive(upTo upper: Double) -> NumberRange { NumberRange(lower: 0, lowerIncluded: false, upper: upper, upperIncluded: true) }
    /// [1, upper].
    public static func atLeastOne(upTo upper: Double) -> NumberRange { NumberRange(lower: 1, lowerIncluded: true, upper: upper, upperIncluded: true) }

    /// Whether `value` is finite and in the range.
    public func contains(_ value: Double) -> Bool {
        value.isFinite && (lowerIncluded ? value >= lower : value > lower) && (upperIncluded ? value <= upper : value < upper)
    }

    /// `a finite number ≥ 0`, or `a number in [0, 1)`.
    public var description: String {
        if upper == .greatestFiniteMagnitude { return "a finite number \(lowerIncluded ? "≥" : ">") \(format(lower))" }
        return "a number in \(lowerIncluded ? "[" : "(")\(format(lower)), \(format(upper))\(upperIncluded ? "]" : ")")"
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
    }
}

/// The checks of one validation, all naming `file`.
public struct RangeCheck: Sendable {
    /// The configuration file, for messages.
    public let file: String

    /// Checks that name `file`.
    public init(file: String) { self.file = file }

    /// Throws `message` about `key` unless `condition` holds.
    public func require(_ condition: Bool, _ key: String, _ message: String) throws(ConfigError) {
        if !condition { throw ConfigError(file: file, key: key, message: message) }
    }

    /// Throws unless `value` is in `range`.
    public func integer(_ value: Int, _ key: String, _ range: ClosedRange<Int>, note: String = "") throws(ConfigError) {
        let expected = range.upperBound == Int.max ? "an integer ≥ \(range.lowerBound)" : "an integer in \(range.lowerBound)...\(range.upperBound)"
        try require(range.contains(value), key, "expected \(expected)\(note.isEmpty ? "" : " (\(note))"), got \(value)")
    }

    /// Throws unless `value` is in `range` (finite).
    public func number<Value: BinaryFloatingPoint>(_ value: Value, _ key: String, _ range: NumberRange, note: String = "") throws(ConfigError) {
        try require(range.contains(Double(value)), key, "expected \(range.description)\(note.isEmpty ? "" : " (\(note))"), got \(value)")
    }

    /// Throws unless `value` is a plausible path or name (bounded length, no NUL).
    public func text(_ value: String, _ key: String) throws(ConfigError) {
        try require(value.utf8.count <= ConfigLimits.pathLength && !value.utf8.contains(0), key,
                    "expected at most \(ConfigLimits.pathLength) bytes without NUL characters, got \(value.utf8.count) bytes")
    }
}
