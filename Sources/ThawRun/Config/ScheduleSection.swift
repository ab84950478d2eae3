// ScheduleSection: the `schedule` section: the learning-rate schedule's shape.
import ThawPlan

/// The learning-rate schedule kind.
public enum ScheduleKind: String, Codable, Sendable, CaseIterable {
    /// The base rate throughout.
    case constant
    /// Linear warmup over `warmup_steps`, then constant.
    case warmup
    /// Optional warmup, then cosine decay to `final_fraction` of the base rate.
    case cosine
    /// One-cycle: warm up over `peak_fraction` of the run, then anneal.
    case oneCycle = "one_cycle"
    /// ULMFiT's slanted triangular schedule.
    case slantedTriangular = "slanted_triangular"
}

/// The learning-rate schedule.
public struct ScheduleSection: ConfigSection {
    /// The schedule's shape.
    public var kind: ScheduleKind = .constant
    /// Warmup steps for `warmup` and `cosine`.
    public var warmupSteps = 0
    /// The final rate as a fraction of the base for `cosine`.
    public var finalFraction: Float = 0
    /// Where the peak sits, as a fraction of the run, for `one_cycle` and `slanted_triangular`.
    public var peakFraction: Float = 0.1
    /// How much smaller the lowest rate is than the peak, for `slanted_triangular` (ULMFiT's ratio).
    public var ratio: Float = 32

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<ScheduleSection>] {
        [.init("kind", choice: \.kind), .init("warmup_steps", \.warmupSteps), .init("final_fraction", \.finalFraction),
         .init("peak_fraction", \.peakFraction), .init("ratio", \.ratio)]
    }

    /// The ranges `LearningRateSchedule.validate` enforces, with the keys.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.integer(warmupSteps, "\(keyPath).warmup_steps", 0...ConfigLimits.steps)
        try check.number(finalFraction, "\(keyPath).final_fraction", .unitInterval)
        try check.number(peakFraction, "\(keyPath).peak_fraction", .openUnitInterval)
        try check.number(ratio, "\(keyPath).ratio", .atLeastOne(upTo: ConfigLimits.factor))
    }
}
