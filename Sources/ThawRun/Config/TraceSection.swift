// TraceSection: `training.trace`: a per-rank timeline of the chosen steps in Chrome trace format.
import ThawPlan

/// The per-rank timeline (ThawTrainer/Timeline.swift): off unless `enabled`.
public struct TraceSection: ConfigSection {
    /// Whether to record a timeline and write `RUN/trace/rank-R.json`.
    public var enabled = false
    /// The first and last global optimizer step recorded (counted from 0, both included).
    public var steps = [0, 99]

    /// The defaults (off; steps 0–99 when turned on).
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<TraceSection>] { [.init("enabled", \.enabled), .init("steps", \.steps)] }

    /// Two steps, in order, in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.require(steps.count == 2, "\(keyPath).steps", "expected [FIRST, LAST] (two global steps), got \(steps.count) value(s)")
        try check.integer(steps[0], "\(keyPath).steps[0]", 0...ConfigLimits.steps)
        try check.integer(steps[1], "\(keyPath).steps[1]", steps[0]...ConfigLimits.steps, note: "the last step must not come before the first")
    }

    /// The steps recorded.
    public var stepRange: ClosedRange<Int> { steps[0]...max(steps[0], steps[1]) }
}
