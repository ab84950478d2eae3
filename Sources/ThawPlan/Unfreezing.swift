// Unfreezing: the progressive-unfreezing policies and the versioned training plan.
//
// The planner is a pure function of (policy, epoch, validation history). The coordinator
// runs it and serves its plans; a run without a coordinator runs the same planner on rank 0.
// Either way rank 0 broadcasts the plan and every rank applies it at the same step.
import Foundation

/// What every rank trains during one epoch: agreed, versioned and applied at the same step.
public struct TrainingPlan: Codable, Equatable, Sendable {
    /// Increases by one every time the trainable set changes; the first plan is version 1.
    public var version: Int
    /// The epoch (0-based) this plan is for.
    public var epoch: Int
    /// The trainable groups, input side first; always a top slice of the model's groups.
    public var trainableGroups: [String]
    /// The base learning rate of each trainable group, before the schedule's multiplier.
    public var learningRates: [String: Float]
    /// What frozen groups' batch norm does (`running_statistics` or `batch_statistics`).
    public var batchNormPolicy: String
    /// Warmup steps for the groups thawed by this plan.
    public var warmupSteps: Int
    /// Groups that became trainable with this plan (empty when the set did not change).
    public var newlyThawed: [String]
    /// The next epoch at which the trainable set is scheduled to change; nil when no change is
    /// scheduled before the run ends, or when the policy cannot know (see `scheduleIsKnown`).
    public var nextChange: Int?
    /// Whether the policy knows its future (fixed, gradual, none), so `nextChange` can be relied on;
    /// false under plateau, whose next thaw depends on validation losses not yet seen.
    public var scheduleIsKnown: Bool

    enum CodingKeys: String, CodingKey {
        case version, epoch
        case trainableGroups = "trainable_groups"
        case learningRates = "learning_rates"
        case batchNormPolicy = "batch_norm_policy"
        case warmupSteps = "warmup_steps"
        case newlyThawed = "newly_thawed"
        case nextChange = "next_change"
        case scheduleIsKnown = "schedule_is_known"
    }

    /// Decodes a plan; plans written before the look-ahead existed know no schedule.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        epoch = try c.decode(Int.self, forKey: .epoch)
        trainableGroups = try c.decode([String].self, forKey: .trainableGroups)
        learningRates = try c.decode([String: Float].self, forKey: .learningRates)
        batchNormPolicy = try c.decode(String.self, forKey: .batchNormPolicy)
        warmupSteps = try c.decode(Int.self, forKey: .warmupSteps)
        newlyThawed = try c.decode([String].self, forKey: .newlyThawed)
        nextChange = try c.decodeIfPresent(Int.self, forKey: .nextChange)
        scheduleIsKnown = try c.decodeIfPresent(Bool.self, forKey: .scheduleIsKnown) ?? false
    }

    /// How many epochs from this plan's epoch on the trainable set is scheduled to hold (the run
    /// having `epochs` epochs), or nil when the policy cannot know.
    public func epochsTheSetHolds(epochs: Int) -> Int? {
        scheduleIsKnown ? (nextChange ?? epochs) - epoch : nil
    }

    /// Whether no group is left to thaw: every one of `groupCount` groups trains, or the schedule changes no more.
    public func thawingIsExhausted(groupCount: Int) -> Bool {
        trainableGroups.count == groupCount || (scheduleIsKnown && nextChange == nil)
    }

    /// Creates a plan.
    public init(version: Int, epoch: Int, trainableGroups: [String], learningRates: [String: Float],
                batchNormPolicy: String, warmupSteps: Int, newlyThawed: [String], nextChange: Int? = nil, scheduleIsKnown: Bool = false) {
        self.nextChange = nextChange
        self.scheduleIsKnown = scheduleIsKnown
        self.version = version
        self.epoch = epoch
        self.trainableGroups = trainableGroups
        self.learningRates = learningRates
        self.batchNormPolicy = batchNormPolicy
        self.warmupSteps = warmupSteps
        self.newlyThawed = newlyThawed
    }

    /// A digest of the trainable set and version, compared across ranks before the first
    /// all-reduce under this plan.
    public var trainableSetDigest: UInt64 {
        fnv1a(Array("\(version)|\(trainableGroups.joined(separator: ","))".utf8))
    }
}

/// Turns an unfreezing policy into one plan per epoch.
///
/// Discriminative rates: the top group trains at the base rate, and each group below trains at
/// the rate of the group above divided by `discriminative_factor` (ULMFiT uses 2.6).
public struct UnfreezingPlanner: Codable, Sendable {
    /// The policy settings from the configuration.
    public let settings: UnfreezingSection
    /// The model's groups, input side first.
    public let groupNames: [String]
    /// The top group's base learning rate.
    public let baseLearningRate: Float
    /// The frozen batch-norm policy to put in every plan.
    public let batchNormPolicy: String
    /// The plan handed out last, if any.
    public private(set) var current: TrainingPlan?
    /// Validation loss per finished epoch, in order.
    public private(set) var validationLosses: [Double] = []
    /// For `plateau`: how many top groups train now.
    private var plateauCount: Int
    /// For `plateau`: the epoch at which the count last changed.
    private var plateauChangedAt = 0
    /// Top groups an operator has thawed with `thaw ctl thaw`; the plan never trains fewer.
    public private(set) var minimumTrainable = 0

    /// Creates a planner, validating the policy against the model's groups.
    /// - Throws: ``ConfigError`` naming the `unfreezing` key at fault.
    public init(settings: UnfreezingSection, groupNames: [String], baseLearningRate: Float, batchNormPolicy: String) throws(ConfigError) {
        self.settings = settings
        self.groupNames = groupNames
        self.baseLearningRate = baseLearningRate
        self.batchNormPolicy = batchNormPolicy
        let initialGroups = settings.policy.initialGroups ?? 1
        self.plateauCount = min(max(initialGroups, 1), groupNames.count)
        guard initialGroups >= 1, initialGroups <= groupNames.count else {
            throw ConfigError(file: "", key: "unfreezing.initial_groups",
                              message: "expected 1...\(groupNames.count) (the model has groups \(groupNames.joined(separator: ", ")))")
        }
        if case .fixed(let table) = settings.policy {
            guard table["0"] != nil else {
                throw ConfigError(file: "", key: "unfreezing.table", message: "the fixed policy needs an entry for epoch 0")
            }
            for (epoch, groups) in table {
                guard let e = Int(epoch), e >= 0 else {
                    throw ConfigError(file: "", key: "unfreezing.table.\(epoch)", message: "expected a non-negative epoch number as the key")
                }
                for group in groups where !groupNames.contains(group) {
                    throw ConfigError(file: "", key: "unfreezing.table.\(e)",
                                      message: "unknown group '\(group)'; the model's groups are \(groupNames.joined(separator: ", "))")
                }
                let count = Set(groups).count
                guard count >= 1, Set(groupNames.suffix(count)) == Set(groups) else {
                    throw ConfigError(file: "", key: "unfreezing.table.\(e)",
                                      message: "groups must be a top slice of \(groupNames.joined(separator: ", ")) (Thaw unfreezes from the head down)")
                }
            }
        }
    }

    /// How many top groups train in `epoch` under the policy.
    func trainableCount(epoch: Int) -> Int {
        max(policyCount(epoch: epoch), minimumTrainable)
    }

    /// Thaws `groups` (and every group above them, so the trainable set stays a top slice) from the
    /// next plan on.
    /// - Throws: ``MessageError`` naming an unknown group.
    public mutating func thaw(groups: [String]) throws(MessageError) {
        var lowest = groupNames.count
        for group in groups {
            guard let index = groupNames.firstIndex(of: group) else {
                throw MessageError(field: "groups", message: "unknown group '\(group)'; the model has \(groupNames.joined(separator: ", "))")
            }
            lowest = min(lowest, index)
        }
        minimumTrainable = max(minimumTrainable, groupNames.count - lowest)
    }

    func policyCount(epoch: Int) -> Int {
        let total = groupNames.count
        switch settings.policy {
        case .none:
            return total
        case .gradual(let initialGroups, let every):
            return min(total, initialGroups + epoch / every)
        case .plateau:
            return plateauCount
        case .fixed(let table):
            let key = table.keys.compactMap(Int.init).filter { $0 <= epoch }.max() ?? 0
            return Set(table[String(key)] ?? []).count
        }
    }

    /// Records an epoch's validation loss (drives the `plateau` policy).
    public mutating func record(validationLoss: Double) {
        validationLosses.append(validationLoss)
        guard case .plateau(_, let patience, let delta) = settings.policy, plateauCount < groupNames.count else { return }
        // Compare the best loss of the last `patience` epochs with the best before them,
        // counting only epochs since the last thaw.
        let since = Array(validationLosses.dropFirst(plateauChangedAt))
        guard since.count > patience else { return }
        let recent = since.suffix(patience).min() ?? .infinity
        let before = since.dropLast(patience).min() ?? .infinity
        if recent > before - Double(delta) {
            plateauCount += 1
            plateauChangedAt = validationLosses.count
        }
    }

    /// The plan for `epoch` of a run of `epochs` epochs. The version increases only when the trainable
    /// set changes; the plan says when the set is next scheduled to change.
    public mutating func plan(forEpoch epoch: Int, epochs: Int) -> TrainingPlan {
        let count = trainableCount(epoch: epoch)
        let trainable = Array(groupNames.suffix(count))
        let previous = current?.trainableGroups ?? []
        let changed = trainable != previous
        var rates: [String: Float] = [:]
        var rate = baseLearningRate
        for group in trainable.reversed() {
            rates[group] = rate
            rate /= settings.discriminativeFactor
        }
        let plan = TrainingPlan(
            version: (current?.version ?? 0) + (changed ? 1 : 0), epoch: epoch, trainableGroups: trainable,
            learningRates: rates, batchNormPolicy: batchNormPolicy, warmupSteps: settings.warmupSteps,
            newlyThawed: trainable.filter { !previous.contains($0) },
            nextChange: nextChange(after: epoch, epochs: epochs), scheduleIsKnown: settings.policy.kind != .plateau)
        current = plan
        return plan
    }

    /// This planner under new settings and rates (a resumed run whose configuration changed): what it
    /// has handed out and recorded is kept (the current plan, so versions keep counting; operator
    /// thaws; validation losses, replayed under the new policy), and the next plan follows the new settings.
    /// - Throws: ``ConfigError`` when the new settings do not fit the model's groups.
    public func adopting(settings: UnfreezingSection, baseLearningRate: Float, batchNormPolicy: String) throws(ConfigError) -> UnfreezingPlanner {
        var planner = try UnfreezingPlanner(settings: settings, groupNames: groupNames, baseLearningRate: baseLearningRate, batchNormPolicy: batchNormPolicy)
        planner.current = current
        planner.minimumTrainable = minimumTrainable
        for loss in validationLosses { planner.record(validationLoss: loss) }
        return planner
    }

    /// Whether `adopting` these values would change anything.
    public func differs(settings: UnfreezingSection, baseLearningRate: Float, batchNormPolicy: String) -> Bool {
        settings != self.settings || baseLearningRate != self.baseLearningRate || batchNormPolicy != self.batchNormPolicy
    }

    /// The next epoch after `epoch` at which the trainable set is scheduled to change, if known in advance.
    public func nextChange(after epoch: Int, epochs: Int) -> Int? {
        guard settings.policy.kind == .gradual || settings.policy.kind == .fixed else { return nil }
        let now = trainableCount(epoch: epoch)
        return ((epoch + 1)..<max(epoch + 1, epochs)).first { trainableCount(epoch: $0) != now }
    }
}
