// LearningRateSchedule: how the learning rate changes over a run, and per-group rates
// (discriminative rates, warmup of newly thawed groups).
//
// Note: step convention. `step` counts optimizer steps from 0 (the first update is step 0) and
// `totalSteps` is the number of updates in the run. A schedule gives a multiplier of the base
// rate; steps at or past `totalSteps` keep the schedule's final value.
import Foundation

/// A learning-rate schedule: a multiplier of the base rate as a function of the step.
///
/// Codable with Swift's synthesized form, for example `{"cosine": {"warmupSteps": 100, "finalFraction": 0.01}}`.
public enum LearningRateSchedule: Sendable, Equatable, Codable {
    /// The base rate throughout: multiplier 1.
    case constant
    /// Linear warmup over `steps` steps, then constant: `min(1, (step + 1) / steps)`.
    case linearWarmup(steps: Int)
    /// Optional linear warmup, then cosine decay to `finalFraction` of the base rate.
    ///
    /// During warmup as ``linearWarmup(steps:)``. After it, with `s = step − warmupSteps` and
    /// `S = totalSteps − warmupSteps`: `f + (1 − f)·(1 + cos(π·min(1, s/S)))/2` where `f` is
    /// `finalFraction`. Without warmup this is PyTorch's `CosineAnnealingLR(T_max: totalSteps,
    /// eta_min: f·base)`: 1 at step 0, `f` reached at step `totalSteps`.
    case cosine(warmupSteps: Int = 0, finalFraction: Float = 0)
    /// One-cycle, exactly PyTorch's `OneCycleLR` with `anneal_strategy="cos"`, `three_phase=False`
    /// (the learning rate only; momentum is not cycled).
    ///
    /// The base rate is the peak (`max_lr`). With `T = totalSteps`, `a = peakFraction·T − 1` and
    /// `b = T − 1`: from `1/initialDivisor` at step 0, cosine-annealed up to 1 at step `a`, then
    /// cosine-annealed down to `1/(initialDivisor·finalDivisor)` at step `b`, where
    /// cosine annealing from `x` to `y` at fraction `q` is `y + (x − y)·(1 + cos(π·q))/2`.
    case oneCycle(peakFraction: Float = 0.3, initialDivisor: Float = 25, finalDivisor: Float = 1e4)
    /// ULMFiT's slanted triangular schedule (Howard & Ruder 2018, eq. 3).
    ///
    /// With `T = totalSteps`, `cut = max(1, ⌊T·cutFraction⌋)` and `t = step`:
    /// `p = t/cut` for `t < cut`, else `p = max(0, 1 − (t − cut)/(cut·(1/cutFraction − 1)))`;
    /// the multiplier is `(1 + p·(ratio − 1))/ratio`: `1/ratio` at step 0, 1 at step `cut`,
    /// back to `1/ratio` at step `T`.
    case slantedTriangular(cutFraction: Float = 0.1, ratio: Float = 32)

    /// The multiplier of the base rate at `step` of a run of `totalSteps` steps.
    /// - Parameters:
    ///   - step: The optimizer step about to be taken, from 0.
    ///   - totalSteps: The number of optimizer steps in the run (at least 1).
    public func multiplier(step: Int, totalSteps: Int) -> Float {
        precondition(step >= 0, "step must be ≥ 0, got \(step)")
        let total = Double(max(totalSteps, 1))
        let t = Double(step)
        switch self {
        case .constant:
            return 1
        case .linearWarmup(let steps):
            return Float(Self.warmup(t, steps: steps))
        case .cosine(let warmupSteps, let finalFraction):
            if step < warmupSteps { return Float(Self.warmup(t, steps: warmupSteps)) }
            let span = total - Double(warmupSteps)
            let progress = span > 0 ? min(1, (t - Double(warmupSteps)) / span) : 1
            let floor = Double(finalFraction)
            return Float(floor + (1 - floor) * (1 + cos(Double.pi * progress)) / 2)
        case .oneCycle(let peakFraction, let initialDivisor, let finalDivisor):
            let initial = 1 / Double(initialDivisor)
            let minimum = initial / Double(finalDivisor)
            let peakStep = Double(peakFraction) * total - 1
            let lastStep = total - 1
            let s = min(t, lastStep)
            if s <= peakStep {
                return Float(Self.cosineAnneal(from: initial, to: 1, fraction: peakStep > 0 ? s / peakStep : 1))
            }
            let span = lastStep - peakStep
            return Float(Self.cosineAnneal(from: 1, to: minimum, fraction: span > 0 ? (s - peakStep) / span : 1))
        case .slantedTriangular(let cutFraction, let ratio):
            // ⌊T·cutFraction⌋ in Float, so 10 × 0.7 gives 7 as written in the config, not 6.
            let cut = max(1, Double((Float(total) * cutFraction).rounded(.down)))
            let fraction = Double(cutFraction)
            let p = t < cut ? t / cut : max(0, 1 - (t - cut) / (cut * (1 / fraction - 1)))
            return Float((1 + p * (Double(ratio) - 1)) / Double(ratio))
        }
    }

    /// The learning rate at `step`: `base × multiplier(step:totalSteps:)`.
    public func learningRate(base: Float, step: Int, totalSteps: Int) -> Float {
        base * multiplier(step: step, totalSteps: totalSteps)
    }

    /// Checks the schedule's parameters, naming the first one out of range.
    public func validate() throws(ScheduleError) {
        func require(_ ok: Bool, _ name: String, _ value: Double, _ expected: String) throws(ScheduleError) {
            if !ok { throw ScheduleError(parameter: name, value: value, expected: expected) }
        }
        switch self {
        case .constant:
            break
        case .linearWarmup(let steps):
            try require(steps >= 0, "steps", Double(steps), "≥ 0")
        case .cosine(let warmupSteps, let finalFraction):
            try require(warmupSteps >= 0, "warmupSteps", Double(warmupSteps), "≥ 0")
            try require((0...1).contains(finalFraction), "finalFraction", Double(finalFraction), "in [0, 1]")
        case .oneCycle(let peakFraction, let initialDivisor, let finalDivisor):
            try require(peakFraction > 0 && peakFraction < 1, "peakFraction", Double(peakFraction), "in (0, 1)")
            try require(initialDivisor >= 1, "initialDivisor", Double(initialDivisor), "≥ 1")
            try require(finalDivisor >= 1, "finalDivisor", Double(finalDivisor), "≥ 1")
        case .slantedTriangular(let cutFraction, let ratio):
            try require(cutFraction > 0 && cutFraction < 1, "cutFraction", Double(cutFraction), "in (0, 1)")
            try require(ratio >= 1, "ratio", Double(ratio), "≥ 1")
        }
    }

    /// Linear warmup: `(t + 1)/steps`, capped at 1; 1 when there is no warmup.
    private static func warmup(_ t: Double, steps: Int) -> Double {
        steps <= 0 ? 1 : min(1, (t + 1) / Double(steps))
    }

    /// PyTorch's `_annealing_cos`: from `start` at fraction 0 to `end` at fraction 1.
    private static func cosineAnneal(from start: Double, to end: Double, fraction: Double) -> Double {
        end + (start - end) / 2 * (cos(Double.pi * fraction) + 1)
    }
}

/// A schedule parameter out of range.
public struct ScheduleError: Error, CustomStringConvertible, Equatable {
    /// The parameter's name.
    public var parameter: String
    /// Its value.
    public var value: Double
    /// What was expected instead.
    public var expected: String

    /// Creates a schedule error.
    public init(parameter: String, value: Double, expected: String) {
        self.parameter = parameter
        self.value = value
        self.expected = expected
    }

    /// One line naming the parameter.
    public var description: String { "learning-rate schedule \(parameter) = \(value) is invalid: expected \(expected)" }
}

/// Per-group learning rates: discriminative rates and warmup of newly thawed groups.
public enum GroupLearningRates {
    /// ULMFiT's discriminative rates: the head (last group) gets `headRate`, and each group
    /// gets the rate of the group above it divided by `factor`.
    /// - Parameters:
    ///   - groupCount: The number of groups, input side first.
    ///   - headRate: The rate of the top group.
    ///   - factor: How much smaller each group's rate is than the next one's (ULMFiT: 2.6).
    /// - Returns: One rate per group, indexed like the groups.
    public static func discriminative(groupCount: Int, headRate: Float, factor: Float = 2.6) -> [Float] {
        precondition(factor > 0, "factor must be positive, got \(factor)")
        var rates = Array(repeating: headRate, count: groupCount)
        for group in stride(from: groupCount - 2, through: 0, by: -1) { rates[group] = rates[group + 1] / factor }
        return rates
    }

    /// Discriminative rates by group name (names in model order, input side first).
    public static func discriminative(groupNames: [String], headRate: Float, factor: Float = 2.6) -> [String: Float] {
        let rates = discriminative(groupCount: groupNames.count, headRate: headRate, factor: factor)
        return Dictionary(zip(groupNames, rates), uniquingKeysWith: { first, _ in first })
    }

    /// The warmup multiplier of a newly thawed group: `min(1, (stepsSinceThaw + 1)/warmupSteps)`,
    /// so it ramps linearly from `1/warmupSteps` on the group's first step to 1; 1 when
    /// `warmupSteps` is 0.
    /// - Parameters:
    ///   - stepsSinceThaw: Steps the group has taken since it was thawed, before this one
    ///     (``Optimizer/stepCounts`` of the group before the step).
    ///   - warmupSteps: The length of the ramp.
    public static func thawWarmupMultiplier(stepsSinceThaw: Int, warmupSteps: Int) -> Float {
        warmupSteps <= 0 ? 1 : min(1, Float(stepsSinceThaw + 1) / Float(warmupSteps))
    }
}
