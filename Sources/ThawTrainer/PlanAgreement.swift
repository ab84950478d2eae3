// PlanAgreement: the plan of each epoch, proposed by rank 0's plan source, broadcast, and applied by
// every rank at the same step: the new trainable set, fresh optimizer state for newly thawed groups
// (a named step), new exchange buckets, and a cross-rank check of the trainable set before the
// first all-reduce under it. It also gives each step its per-group learning rates.
import Foundation
import ThawCollective
import ThawNN
import ThawOptim
import ThawPlan

/// Decides the plan for each epoch. Only rank 0's source is consulted.
public protocol PlanSource: AnyObject {
    /// The plan for `epoch`, given the previous epoch's validation loss, if any.
    func plan(forEpoch epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan
    /// The planner's state, for checkpoints, when plans are made in this process (nil otherwise).
    var plannerState: UnfreezingPlanner? { get }
}

/// A plan source that runs the unfreezing planner in-process.
public final class LocalPlanSource: PlanSource {
    /// The planner, with its state (saved in checkpoints).
    public private(set) var planner: UnfreezingPlanner
    private let epochs: Int

    /// Creates a local source around a planner for a run of `epochs` epochs.
    public init(planner: UnfreezingPlanner, epochs: Int) {
        self.planner = planner
        self.epochs = epochs
    }

    /// Records the last validation loss, then plans.
    public func plan(forEpoch epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan {
        if let loss = previousValidationLoss { planner.record(validationLoss: loss) }
        return planner.plan(forEpoch: epoch, epochs: epochs)
    }

    /// The planner.
    public var plannerState: UnfreezingPlanner? { planner }
}

/// Agrees each epoch's plan across ranks and applies it to the model, optimizer and exchange.
public final class PlanAgreement {
    private let collective: any Collective
    private let model: Model
    private let optimizer: Optimizer
    private let exchange: any GradientExchange
    /// Where rank 0 gets plans.
    public let source: any PlanSource
    /// The plan in force (nil before the first).
    public private(set) var current: TrainingPlan?
    /// The global step at which each group was last thawed (for thaw warmup).
    public private(set) var thawedAtStep: [String: Int] = [:]

    /// Creates the agreement for one model replica.
    public init(collective: any Collective, model: Model, optimizer: Optimizer, exchange: any GradientExchange, source: any PlanSource) {
        self.collective = collective
        self.model = model
        self.optimizer = optimizer
        self.exchange = exchange
        self.source = source
    }

    /// Puts back the plan and thaw steps of a resumed run (every rank, before the first epoch).
    func restore(plan: TrainingPlan?, thawedAtStep: [String: Int]) throws {
        current = plan
        self.thawedAtStep = thawedAtStep
        if let plan { try model.setTrainableGroups(plan.trainableGroups) }
    }

    /// Rank 0 obtains the plan for `epoch` from the source and broadcasts it; every rank returns the same plan.
    public func propose(epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan {
        let proposal = collective.rank == 0 ? try source.plan(forEpoch: epoch, previousValidationLoss: previousValidationLoss) : nil
        guard let agreed = try collective.broadcastJSON(proposal) else { throw TrainingError.noPlan(epoch: epoch + 1) }
        return agreed
    }

    /// Applies `proposed` before optimizer step `step`.
    /// - Returns: The plan as applied: its `newlyThawed` lists the groups that were frozen under the
    ///   previous plan (derived here, not trusted, so a resume or a restarted coordinator never resets
    ///   live optimizer state). Re-applying the plan of an epoch resumed mid-way thaws nothing.
    @discardableResult
    public func apply(_ proposed: TrainingPlan, atStep step: Int) throws -> TrainingPlan {
        var plan = proposed
        let resumingEpoch = current.map { $0.epoch == plan.epoch && $0.version == plan.version } ?? false
        let previous = Set(current?.trainableGroups ?? [])
        let thawedNow = resumingEpoch ? [] : plan.trainableGroups.filter { !previous.contains($0) }
        plan.newlyThawed = resumingEpoch ? current?.newlyThawed ?? [] : thawedNow
        try model.setTrainableGroups(plan.trainableGroups)
        if let policy = FrozenBatchNormPolicy(rawValue: plan.batchNormPolicy) { model.frozenBatchNormPolicy = policy }
        optimizer.initializeState(forNewlyTrainableGroups: thawedNow.compactMap { model.groupNames.firstIndex(of: $0) }, store: model.store)
        for group in thawedNow { thawedAtStep[group] = step }
        exchange.prepare(firstTrainableGroup: model.firstTrainableGroup)
        try collective.verifyAgreement(on: plan.trainableSetDigest, describing: "trainable set of plan version \(plan.version)")
        current = plan
        return plan
    }

    /// Per-group learning rates for optimizer step `step`: plan rate × `multiplier` (the schedule's)
    /// × the warmup of newly thawed groups.
    public func learningRates(atStep step: Int, multiplier: Float) -> [Float] {
        guard let plan = current else { return model.groupNames.map { _ in 0 } }
        return model.groupNames.map { group in
            guard let base = plan.learningRates[group] else { return 0 }
            var rate = base * multiplier
            if plan.warmupSteps > 0, let since = thawedAtStep[group] {
                rate *= min(1, Float(step - since + 1) / Float(plan.warmupSteps))
            }
            return rate
        }
    }
}

extension Collective {
    /// Rank 0's value, JSON-encoded and broadcast (an 8-byte length, then the bytes); every rank
    /// returns the same value, or nil if rank 0 had none.
    public func broadcastJSON<Value: Codable>(_ value: Value?) throws -> Value? {
        var bytes: [UInt8] = []
        if rank == 0, let value { bytes = Array(try JSONEncoder().encode(value)) }
        var length = UInt64(bytes.count)
        try withUnsafeMutableBytes(of: &length) { try broadcast($0, root: 0) }
        guard length > 0 else { return nil }
        if rank != 0 { bytes = Array(repeating: 0, count: Int(length)) }
        try bytes.withUnsafeMutableBytes { try broadcast($0, root: 0) }
        return try JSONDecoder().decode(Value.self, from: Data(bytes))
    }
}
