// Trainer: the data-parallel training loop.
//
// Each epoch reads as a straight line:
//   plan (agreed by every rank) → shard → forward → backward (stops at the boundary)
//   → all-reduce (trainable range only) → optimizer step → report.
// Everything clever (buckets and overlap) sits behind `GradientExchange` and can be
// switched to the plain reference path with `training.exchange: plain`.
import Foundation
import ThawCollective
import ThawCoordinator
import ThawPlan
import ThawData
import ThawKernels
import ThawNN
import ThawOptim

/// Something the trainer reports while it runs (rank 0 renders these).
public enum TrainingEvent {
    /// A new plan took effect at the start of an epoch, at this global optimizer step.
    case plan(TrainingPlan, step: Int)
    /// An optimizer step finished.
    case step(epoch: Int, step: Int, steps: Int, loss: Double, samplesPerSecond: Double)
    /// An epoch finished.
    case epoch(EpochRecord)
    /// Something people should know about the run (the frozen-prefix cache: built, dropped, or off and why).
    case note(String)
}

/// Decides the plan for each epoch. The local planner runs on rank 0; the coordinator client
/// (a later addition) asks the coordinator. Only rank 0's source is consulted.
public protocol PlanSource: AnyObject {
    /// The plan for `epoch`, given the validation loss of the previous epoch, if any.
    func plan(forEpoch epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan
}

/// A plan source that asks the coordinator (rank 0 only).
public final class CoordinatorPlanSource: PlanSource {
    private let client: CoordinatorClient

    /// Creates a source around a connected client.
    public init(client: CoordinatorClient) { self.client = client }

    /// Requests the plan, retrying while the coordinator is unreachable.
    public func plan(forEpoch epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan {
        try client.requestPlan(epoch: epoch, previousValidationLoss: previousValidationLoss)
    }
}

/// A plan source that runs the unfreezing planner in-process.
public final class LocalPlanSource: PlanSource {
    /// The planner, with its state (saved in checkpoints).
    public private(set) var planner: UnfreezingPlanner

    /// Creates a local source around a planner.
    public init(planner: UnfreezingPlanner) { self.planner = planner }

    /// Records the last validation loss, then plans.
    public func plan(forEpoch epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan {
        if let loss = previousValidationLoss { planner.record(validationLoss: loss) }
        return planner.plan(forEpoch: epoch)
    }
}

/// The part of an epoch already trained when a run stopped on request, so it can continue mid-epoch.
public struct PartialEpoch: Codable, Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// Optimizer steps of the epoch already taken.
    public var stepsDone: Int
    /// This rank's sums so far (rank-local; summed at the epoch's end): label loss, label correct, labelled
    /// rows, then domain loss, domain correct, domain rows and real rows (older checkpoints hold the first three).
    public var sums: [Double]
    /// Gradient bytes sent so far in the epoch.
    public var bytes: Int
    /// Seconds spent so far in the epoch.
    public var seconds: Double
}

/// Trains one model replica per rank on its shard of the data.
public final class Trainer {
    /// The run's configuration.
    public let config: TrainingConfig
    /// This rank's replica.
    public let model: Model
    /// The ranks training together.
    public let collective: any Collective
    /// The optimizer over the flat buffers.
    public let optimizer: Optimizer
    /// What training minimizes (from the configuration; see Objective.swift).
    public let objective: any TrainingObjective
    /// Called with progress on every rank; only rank 0 renders it for people.
    public var onEvent: (TrainingEvent) -> Void = { _ in }
    /// Called on every rank after each finished epoch (rank 0 writes checkpoints here).
    public var afterEpoch: (Trainer) throws -> Void = { _ in }
    /// Asked on rank 0 after every step whether to stop (an operator's `thaw ctl stop`); rank 0's answer
    /// is all-reduced each step, so all ranks stop at the same one.
    public var stopRequested: (() -> Bool)?
    /// Where the epoch stood when the run stopped on request (nil when it ran to the end).
    public private(set) var partial: PartialEpoch?
    /// When early stopping ended the run: the last epoch trained (0-based).
    public private(set) var stoppedEarlyAfter: Int?
    /// The best epoch by the early-stopping metric (nil without early stopping).
    public var bestEpoch: Int? { best?.epoch }
    /// The epoch whose weights were put back at the end (early stopping's `restore_best`), if any.
    public private(set) var restoredEpoch: Int?
    /// The best epoch so far by the early-stopping metric, with a copy of its parameters and state.
    private var best: (epoch: Int, value: Double, parameters: [Float], state: [Float])?
    private var randomLayers: [(index: UInt64, layer: any RandomLayer)] = []
    private var scheduledLayers: [any ProgressScheduledLayer] = []

    private let train: any Dataset
    private let validation: (any Dataset)?
    private let test: (any Dataset)?
    private let planSource: PlanSource?
    private let exchange: GradientExchange
    private let sampler: ShardedSampler
    private let schedule: LearningRateSchedule
    private let microBatchesPerStep: Int
    private let input: Tensor
    private let augmentation: ImageAugmentation?
    private let logitsGradient = Tensor(shape: [0])
    private let labels: UnsafeMutableBufferPointer<Int32>
    private let weights: UnsafeMutableBufferPointer<Float>
    /// Why the frozen-prefix cache can never be used in this run (nil when it can).
    private let cacheOffReason: String?
    private var announcedCacheOff = false
    /// The boundary last announced as too short-lived to cache (so the note is said once per boundary).
    private var announcedShortBoundary: Int?
    /// Whether the current boundary is scheduled to hold for this epoch only, so no cache is built for it.
    private var boundaryIsShortLived = false
    private var trainingFeatures: FeatureCache?
    private var evaluationFeatures: [String: FeatureCache] = [:]
    private let cachedInput = Tensor(shape: [0])
    private let labelWeights: UnsafeMutableBufferPointer<Float>
    private let domains: UnsafeMutableBufferPointer<Int32>
    private var plan: TrainingPlan?
    /// The run's first step's global loss, which divergence is judged against (kept in checkpoints).
    private var referenceLoss: Double?
    private var thawedAtStep: [String: Int] = [:]
    private var globalStep = 0
    /// Finished epochs.
    public private(set) var history: [EpochRecord] = []

    /// Prepares a run: checks that every rank has the same model layout (the configuration was agreed before),
    /// and makes rank 0's initial parameters, batch-norm state and optimizer state everyone's.
    /// - Parameters:
    ///   - config: The configuration (identical on every rank).
    ///   - model: This rank's replica.
    ///   - train: The training set (each rank reads only its shard).
    ///   - validation: An optional validation set, evaluated every epoch.
    ///   - test: An optional test set.
    ///   - collective: The ranks.
    ///   - planSource: Where plans come from (consulted on rank 0 only).
    ///   - checkpoint: A checkpoint to resume from; only rank 0 needs it (its state is broadcast).
    public init(config: TrainingConfig, model: Model, train: any Dataset, validation: (any Dataset)?, test: (any Dataset)?,
                collective: any Collective, planSource: PlanSource?, checkpoint: Checkpoint? = nil) throws {
        self.config = config
        self.model = model
        self.train = train
        self.validation = validation
        self.test = test
        self.collective = collective
        self.planSource = planSource
        guard train.sampleShape == model.sampleShape else {
            throw TrainingError.dataMismatch("data sample shape \(train.sampleShape) does not match the model input \(model.sampleShape)")
        }
        guard train.classCount <= config.model.classes else {
            throw TrainingError.dataMismatch("the data has \(train.classCount) classes but model.classes is \(config.model.classes)")
        }
        objective = TrainingObjectives.make(config)
        guard model.outputSampleShape == [objective.outputWidth] else {
            throw TrainingError.dataMismatch("the model's output \(model.outputSampleShape) does not fit the objective, which needs [\(objective.outputWidth)]")
        }
        guard config.training.earlyStopping.patience == 0 || validation != nil else {
            throw TrainingError.dataMismatch("training.early_stopping needs a validation set: set data.validation_size")
        }
        microBatchesPerStep = config.training.accumulationSteps
        let microBatch = config.training.batchSize / microBatchesPerStep
        sampler = ShardedSampler(datasetSize: train.count, worldSize: collective.worldSize, rank: collective.rank,
                                 globalBatchSize: microBatch, seed: config.run.seed, shuffle: true)
        let capacity = sampler.localBatchCapacity
        input = Tensor(shape: [capacity] + model.sampleShape)
        let imageAugmentation = ImageAugmentation(cropPadding: config.data.cropPadding, horizontalFlip: config.data.horizontalFlip, seed: config.run.seed)
        if !imageAugmentation.isIdentity {
            guard model.sampleShape.count == 3, model.sampleShape[1] > 2 * config.data.cropPadding, model.sampleShape[2] > 2 * config.data.cropPadding else {
                throw TrainingError.dataMismatch("data.crop_padding / data.horizontal_flip need [C, H, W] images larger than twice the padding; the data gives \(model.sampleShape)")
            }
            augmentation = imageAugmentation
        } else {
            augmentation = nil
        }
        if !config.training.featureCache.enabled {
            cacheOffReason = "training.feature_cache.enabled is false"
        } else if augmentation != nil {
            cacheOffReason = "data augmentation (data.crop_padding, data.horizontal_flip) changes the frozen groups' input every epoch"
        } else {
            cacheOffReason = nil
        }
        labels = .allocate(capacity: capacity)
        labels.initialize(repeating: 0)
        weights = .allocate(capacity: capacity)
        weights.initialize(repeating: 0)
        labelWeights = .allocate(capacity: capacity)
        labelWeights.initialize(repeating: 0)
        domains = .allocate(capacity: capacity)
        domains.initialize(repeating: 0)
        optimizer = try Optimizer(rule: UpdateRule(config.optimizer), weightDecay: Double(config.optimizer.weightDecay), store: model.store)
        schedule = LearningRateSchedule(config.schedule)
        do { try schedule.validate() } catch { throw ConfigError(file: "", key: "schedule", message: error.description) }
        exchange = GradientExchange(collective: collective, store: model.store, mode: config.training.exchange,
                                    bucketBytes: Int(config.training.bucketSizeMegabytes * 1_048_576))
        model.frozenBatchNormPolicy = config.model.frozenBatchNorm
        randomLayers = model.allLayers.enumerated().compactMap { item in
            (item.element as? RandomLayer).map { (index: UInt64(item.offset), layer: $0) }
        }
        scheduledLayers = model.allLayers.compactMap { $0 as? ProgressScheduledLayer }

        // The configuration itself was agreed at start-up (RankAgreement, in TrainingRun).
        try collective.verifyAgreement(on: fnv1a(Array(model.layoutDescription.utf8)), describing: "parameter layout (names, shapes, groups)")
        if collective.rank == 0, let checkpoint {
            try checkpoint.restore(into: model)
            try checkpoint.restore(into: optimizer)
        }
        try collective.broadcast(UnsafeMutableRawBufferPointer(model.store.parameters), root: 0)
        try collective.broadcast(UnsafeMutableRawBufferPointer(model.store.state), root: 0)
        for buffer in optimizer.stateBuffers { try collective.broadcast(UnsafeMutableRawBufferPointer(buffer.values), root: 0) }
        // Every rank learns whether there is a checkpoint, and its metadata, from rank 0.
        let resumed: CheckpointMetadata? = try broadcastJSON(collective.rank == 0 ? checkpoint?.metadata : nil)
        if let resumed {
            history = resumed.history
            globalStep = resumed.globalStep
            partial = resumed.partialEpoch
            plan = resumed.plan
            thawedAtStep = resumed.thawedAtStep
            referenceLoss = resumed.referenceLoss
            if let plan = resumed.plan { try model.setTrainableGroups(plan.trainableGroups) }
            do { try optimizer.restoreGroupState(stepCounts: resumed.optimizerStepCounts, hasState: resumed.optimizerHasState) } catch {
                throw TrainingError.io(path: "checkpoint", message: "optimizer state: \(error)")
            }
        }
    }

    deinit {
        labels.deallocate()
        weights.deallocate()
        labelWeights.deallocate()
        domains.deallocate()
    }

    /// Gradient bytes this rank sent in the last step (4 × trainable parameters with several ranks).
    public var bytesExchangedPerStep: Int { exchange.bytesLastStep }

    /// Optimizer steps per epoch (the same on every rank by construction).
    public var stepsPerEpoch: Int { (sampler.stepsPerEpoch + microBatchesPerStep - 1) / microBatchesPerStep }

    /// Runs every remaining epoch (all of them, or those after a resumed checkpoint) and returns
    /// the records of every epoch.
    public func run() throws -> [EpochRecord] {
        for epoch in history.count..<config.training.epochs {
            // A run stopped mid-epoch continues under the plan it had; otherwise the ranks agree a new one.
            let resumeFrom = partial?.epoch == epoch ? partial : nil
            let plan = try apply(resumeFrom.flatMap { _ in self.plan } ?? agreePlan(epoch: epoch))
            guard var record = try trainEpoch(epoch: epoch, plan: plan, resumeFrom: resumeFrom) else { return history }
            if let validation { record.validation = try evaluate(validation, cacheKey: "validation") }
            if let test, config.training.evaluateEveryEpoch || epoch == config.training.epochs - 1 {
                record.test = try evaluate(test, cacheKey: "test")
            }
            history.append(record)
            onEvent(.epoch(record))
            try afterEpoch(self)
            if shouldStopEarly(after: record) {
                stoppedEarlyAfter = epoch
                break
            }
        }
        try restoreBestIfAsked()
        // A run that stopped early, or whose weights were put back, gets its final test result now.
        if let test, stoppedEarlyAfter != nil || restoredEpoch != nil, !history.isEmpty {
            history[history.count - 1].test = try evaluate(test)
        }
        return history
    }

    /// Tracks the best epoch and decides whether to stop: the metric has not improved for `patience`
    /// epochs (counted from the later of the best epoch and the last thaw, so a newly thawed group gets
    /// its full chance), and the unfreezing schedule has nothing left to thaw. Every rank holds the same
    /// all-reduced validation results, so every rank decides the same.
    func shouldStopEarly(after record: EpochRecord) -> Bool {
        let settings = config.training.earlyStopping
        guard settings.patience > 0, let validation = record.validation else { return false }
        let value = settings.metric == .validationLoss ? validation.loss : validation.accuracy
        let improved = best.map { settings.metric == .validationLoss ? value < $0.value - settings.minimumDelta
                                                                     : value > $0.value + settings.minimumDelta } ?? true
        if improved {
            best = (record.epoch, value, Array(model.store.parameters), Array(model.store.state))
        }
        let lastThaw = history.last { !$0.newlyThawed.isEmpty }?.epoch ?? 0
        let stale = record.epoch - max(best?.epoch ?? record.epoch, lastThaw)
        return stale >= settings.patience && thawingIsExhausted(after: record.epoch)
    }

    /// Whether no group is left to thaw: every group trains, or the schedule changes no more.
    private func thawingIsExhausted(after epoch: Int) -> Bool {
        if (plan?.trainableGroups.count ?? 0) == model.groupNames.count { return true }
        guard config.unfreezing.policy != .plateau, let unfreezingSchedule else { return false }
        return unfreezingSchedule.nextChange(after: epoch, epochs: config.training.epochs) == nil
    }

    /// The configured unfreezing schedule, to look ahead in (`nextChange`); nil if it does not fit the model.
    private lazy var unfreezingSchedule = try? UnfreezingPlanner(settings: config.unfreezing, groupNames: model.groupNames,
                                                       baseLearningRate: config.optimizer.learningRate,
                                                       batchNormPolicy: config.model.frozenBatchNorm.rawValue)

    /// With early stopping and `restore_best`, puts back the best epoch's weights (the last record's
    /// test result is then evaluated on the restored model).
    private func restoreBestIfAsked() throws {
        guard config.training.earlyStopping.restoreBest, let best, let last = history.last, best.epoch != last.epoch else { return }
        best.parameters.withUnsafeBufferPointer { model.store.parameters.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
        best.state.withUnsafeBufferPointer { model.store.state.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
        restoredEpoch = best.epoch
        dropFeatureCaches(because: nil)   // the restored frozen groups may differ from the cached ones
    }

    /// The non-tensor state a checkpoint needs to continue this run exactly.
    public func checkpointMetadata() -> CheckpointMetadata {
        CheckpointMetadata(
            epochsCompleted: history.count, globalStep: globalStep, configDigest: hex(config.digest),
            layoutDigest: hex(fnv1a(Array(model.layoutDescription.utf8))), worldSize: collective.worldSize,
            architecture: config.model.architecture, plan: plan, planner: (planSource as? LocalPlanSource)?.planner,
            thawedAtStep: thawedAtStep, optimizerStepCounts: optimizer.stepCounts, optimizerHasState: optimizer.hasState,
            history: history, partialEpoch: partial, referenceLoss: referenceLoss,
            configuration: String(decoding: config.canonicalJSON, as: UTF8.self))
    }

    /// Rank 0's value, JSON-encoded and broadcast; every rank returns the same value (nil if rank 0 had none).
    func broadcastJSON<Value: Codable>(_ value: Value?) throws -> Value? {
        var bytes: [UInt8] = []
        if collective.rank == 0, let value { bytes = Array(try JSONEncoder().encode(value)) }
        var length = UInt64(bytes.count)
        try withUnsafeMutableBytes(of: &length) { try collective.broadcast($0, root: 0) }
        guard length > 0 else { return nil }
        if collective.rank != 0 { bytes = Array(repeating: 0, count: Int(length)) }
        try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: 0) }
        return try JSONDecoder().decode(Value.self, from: Data(bytes))
    }

    /// Rank 0 obtains the plan and broadcasts it; every rank returns the same plan.
    func agreePlan(epoch: Int) throws -> TrainingPlan {
        var proposal: TrainingPlan?
        if collective.rank == 0 {
            proposal = try planSource?.plan(forEpoch: epoch, previousValidationLoss: history.last?.validation?.loss)
                ?? TrainingPlan(version: 1, epoch: epoch, trainableGroups: model.groupNames,
                                learningRates: Dictionary(uniqueKeysWithValues: model.groupNames.map { ($0, config.optimizer.learningRate) }),
                                batchNormPolicy: config.model.frozenBatchNorm.rawValue, warmupSteps: 0,
                                newlyThawed: plan == nil ? model.groupNames : [])
        }
        guard let agreed = try broadcastJSON(proposal) else {
            throw TrainingError.dataMismatch("rank 0 produced no plan for epoch \(epoch)")
        }
        return agreed
    }

    /// Applies a plan at an epoch boundary: the new trainable set, fresh optimizer state for
    /// newly thawed groups, new buckets, and a cross-rank check of the trainable set.
    /// - Returns: The plan as applied: its `newlyThawed` lists the groups that were frozen under the
    ///   previous agreed plan (derived here, not trusted, so a resume or a restarted coordinator never
    ///   resets live optimizer state).
    @discardableResult
    func apply(_ proposed: TrainingPlan) throws -> TrainingPlan {
        var plan = proposed
        // Re-applying the plan of an epoch resumed mid-way thaws nothing new; its record keeps what
        // the epoch thawed when it began.
        let resumingEpoch = self.plan.map { $0.epoch == plan.epoch && $0.version == plan.version } ?? false
        let previous = Set(self.plan?.trainableGroups ?? [])
        let thawedNow = resumingEpoch ? [] : plan.trainableGroups.filter { !previous.contains($0) }
        plan.newlyThawed = resumingEpoch ? self.plan?.newlyThawed ?? [] : thawedNow
        try model.setTrainableGroups(plan.trainableGroups)
        if let policy = FrozenBatchNormPolicy(rawValue: plan.batchNormPolicy) { model.frozenBatchNormPolicy = policy }
        if let cached = trainingFeatures ?? evaluationFeatures.values.first, cached.boundary != model.firstTrainableGroup
            || model.frozenBatchNormPolicy == .batchStatistics {
            dropFeatureCaches(because: "the trainable boundary moved (\(model.trainableGroups.first ?? "nothing") now trains)")
        }
        optimizer.initializeState(forNewlyTrainableGroups: thawedNow.compactMap { model.groupNames.firstIndex(of: $0) }, store: model.store)
        for group in thawedNow { thawedAtStep[group] = globalStep }
        exchange.prepare(firstTrainableGroup: model.firstTrainableGroup)
        try collective.verifyAgreement(on: plan.trainableSetDigest, describing: "trainable set of plan version \(plan.version)")
        self.plan = plan
        onEvent(.plan(plan, step: globalStep))
        return plan
    }


    /// One pass over this rank's shard.
    /// Trains one epoch (from `resumeFrom` when continuing a stopped one). Returns nil when the run
    /// stopped on request; `partial` then says where.
    func trainEpoch(epoch: Int, plan: TrainingPlan, resumeFrom: PartialEpoch?) throws -> EpochRecord? {
        let fillStarted = Date()
        let hadCache = trainingFeatures != nil
        let cache = try trainingCache(epoch: epoch)
        let fillSeconds = cache != nil && !hadCache ? Date().timeIntervalSince(fillStarted) : nil
        let needsRawInput = cache.map { model.needsRawInput(belowGroup: $0.boundary) } ?? false
        let started = Date().addingTimeInterval(-(resumeFrom?.seconds ?? 0))
        // [label loss, label correct, labelled, domain loss, domain correct, domain rows, real rows], rank-local.
        var sums = [Double](repeating: 0, count: 7)
        for (index, value) in (resumeFrom?.sums ?? []).prefix(sums.count).enumerated() { sums[index] = value }
        var bytes = resumeFrom?.bytes ?? 0
        partial = nil
        let steps = stepsPerEpoch
        let trainable = model.trainableRange
        let totalSteps = steps * config.training.epochs
        for step in (resumeFrom?.stepsDone ?? 0)..<steps {
            // Scheduled layers (gradient reversal's λ) follow the global step alone, like dropout seeds.
            for layer in scheduledLayers { layer.setTrainingProgress(Double(globalStep) / Double(max(totalSteps, 1))) }
            // Dropout draws depend only on (seed, step, rank), so a run can resume at any step exactly.
            for (index, layer) in randomLayers {
                layer.reseed(SplitMix64.mix(config.run.seed, UInt64(globalStep), UInt64(collective.rank), index))
            }
            model.store.zeroGradients(in: trainable)
            let stepStart = (loss: sums[0], labelled: sums[2])
            let micro = (step * microBatchesPerStep)..<min((step + 1) * microBatchesPerStep, sampler.stepsPerEpoch)
            let normalizers = stepNormalizers(epoch: epoch, samplerSteps: micro)
            for samplerStep in micro {
                // Only the real rows run: padding rows would enter the batch statistics of trainable batch norm
                // (and its running statistics) on an epoch's last, short step.
                let indices = Array(sampler.localBatch(epoch: epoch, step: samplerStep).prefix { $0 != nil })
                let isLast = samplerStep == micro.upperBound - 1
                // No sample for this rank in this step: it joins the exchange with zero gradients
                // (`finish` starts the buckets backward would have started).
                guard !indices.isEmpty else { continue }
                let outputs: Tensor
                if let cache {
                    outputs = try forwardFromCache(cache, indices, of: train, needsRawInput: needsRawInput, training: true)
                } else {
                    try assemble(indices, from: train)
                    augmentation?.apply(to: input.data, sampleShape: model.sampleShape, sampleIndices: indices, epoch: epoch)
                    outputs = try model.forward(input, training: true)
                }
                let result = objective.evaluate(outputs: outputs, targets: targets(rows: indices.count), normalizers: normalizers,
                                                outputGradient: logitsGradient)
                sums[0] += result.labelLossSum; sums[1] += result.labelCorrect; sums[2] += result.labelled
                sums[3] += result.domainLossSum; sums[4] += result.domainCorrect; sums[5] += result.domainRows
                sums[6] += Double(indices.count)
                try model.backward(logitsGradient) { group in if isLast { try exchange.groupFinished(group) } }
            }
            try exchange.finish(trainableRange: trainable)
            bytes += exchange.bytesLastStep
            let gradients = UnsafeMutableBufferPointer(rebasing: model.store.gradients[trainable])
            guard GradientTools.allFinite(gradients) else {
                throw TrainingError.nonFinite(what: "gradients", epoch: epoch + 1, step: step + 1)
            }
            // One small all-reduce every step, on every rank alike: the step's global loss (so that all
            // ranks judge divergence the same) and rank 0's stop decision (an operator's `thaw ctl stop`).
            let wantsStop = collective.rank == 0 && step + 1 < steps && (stopRequested?() ?? false)
            var agreed = [sums[0] - stepStart.loss, sums[2] - stepStart.labelled, wantsStop ? 1 : 0]
            try agreed.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
            if agreed[1] > 0 { try checkDivergence(loss: agreed[0] / agreed[1], epoch: epoch, step: step) }
            if config.training.gradientClipNorm > 0 {
                _ = GradientTools.clipByGlobalNorm(gradients, maxNorm: config.training.gradientClipNorm)
            }
            optimizer.step(store: model.store, groups: model.firstTrainableGroup..<model.groups.count,
                           learningRates: learningRates(plan: plan, totalSteps: steps * config.training.epochs))
            globalStep += 1
            let elapsed = Date().timeIntervalSince(started)
            onEvent(.step(epoch: epoch, step: step + 1, steps: steps, loss: sums[2] > 0 ? sums[0] / sums[2] : 0,
                          samplesPerSecond: sums[6] * Double(collective.worldSize) / max(elapsed, 1e-9)))
            if agreed[2] > 0 {
                partial = PartialEpoch(epoch: epoch, stepsDone: step + 1, sums: sums, bytes: bytes,
                                       seconds: Date().timeIntervalSince(started))
                return nil
            }
        }
        var totals = sums
        try totals.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        let seconds = Date().timeIntervalSince(started)
        let trainEvaluation = Evaluation(loss: totals[0] / max(totals[2], 1), accuracy: totals[1] / max(totals[2], 1), samples: Int(totals[2]))
        let domainEvaluation = totals[5] > 0
            ? Evaluation(loss: totals[3] / totals[5], accuracy: totals[4] / totals[5], samples: Int(totals[5])) : nil
        return EpochRecord(epoch: epoch, planVersion: plan.version, trainableGroups: plan.trainableGroups, newlyThawed: plan.newlyThawed,
                           train: trainEvaluation, validation: nil, test: nil, seconds: seconds, bytesExchanged: bytes,
                           steps: steps, samplesPerSecond: totals[6] / max(seconds, 1e-9),
                           cacheFillSeconds: fillSeconds, fromCache: cache != nil, domain: domainEvaluation)
    }

    /// Stops the run on every rank when a step's global loss is not finite, or is more than
    /// `training.divergence_factor` times the run's first step's loss (every rank sees the same
    /// all-reduced loss, so every rank stops at the same step; checkpoints already written stay).
    private func checkDivergence(loss: Double, epoch: Int, step: Int) throws {
        guard loss.isFinite else { throw TrainingError.nonFinite(what: "the training loss", epoch: epoch + 1, step: step + 1) }
        guard let reference = referenceLoss else {
            if loss > 0 { referenceLoss = loss }
            return
        }
        let factor = config.training.divergenceFactor
        if factor > 0 && loss > factor * reference {
            throw TrainingError.diverged(epoch: epoch + 1, step: step + 1, loss: loss, reference: reference, factor: factor,
                                         learningRate: Double(config.optimizer.learningRate))
        }
    }

    /// Per-group learning rates for the current step: plan rate × schedule × warmup of newly thawed groups.
    func learningRates(plan: TrainingPlan, totalSteps: Int) -> [Float] {
        let multiplier = schedule.multiplier(step: globalStep, totalSteps: totalSteps)
        return model.groupNames.map { group in
            guard let base = plan.learningRates[group] else { return 0 }
            var rate = base * multiplier
            if plan.warmupSteps > 0, let since = thawedAtStep[group] {
                rate *= min(1, Float(globalStep - since + 1) / Float(plan.warmupSteps))
            }
            return rate
        }
    }

    /// Evaluates on a dataset sharded across ranks; every sample counts exactly once.
    /// - Parameter cacheKey: Names the dataset for the frozen-prefix cache (nil: no cache). Evaluation
    ///   shards never move, so each rank caches its own rows as it first meets them.
    public func evaluate(_ dataset: any Dataset, cacheKey: String? = nil) throws -> Evaluation {
        let shard = EvaluationSharder(datasetSize: dataset.count, worldSize: collective.worldSize, rank: collective.rank,
                                      localBatchCapacity: sampler.localBatchCapacity)
        let cache = try cacheKey.flatMap { try evaluationCache(key: $0, count: dataset.count) }
        let needsRawInput = cache.map { model.needsRawInput(belowGroup: $0.boundary) } ?? false
        var totals = [0.0, 0.0, 0.0]
        for step in 0..<shard.stepCount {
            let indices = shard.localBatch(step: step)
            let outputs: Tensor
            if let cache, cache.holds(indices) {
                outputs = try forwardFromCache(cache, indices, of: dataset, needsRawInput: needsRawInput, training: false)
            } else if let cache {
                try assemble(indices, from: dataset)
                let features = model.forward(input, groups: 0..<cache.boundary, training: false)
                cache.store(features, indices: indices)
                outputs = model.forward(features, fromGroup: cache.boundary, training: false)
            } else {
                try assemble(indices, from: dataset)
                outputs = try model.forward(input, training: false)
            }
            let result = objective.evaluate(outputs: outputs, targets: targets(rows: indices.count),
                                            normalizers: StepNormalizers(labelled: 1, samples: 1), outputGradient: nil)
            totals[0] += result.labelLossSum; totals[1] += result.labelCorrect; totals[2] += result.labelled
        }
        try totals.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        return Evaluation(loss: totals[0] / max(totals[2], 1), accuracy: totals[1] / max(totals[2], 1), samples: Int(totals[2]))
    }

    // MARK: - The frozen-prefix cache

    /// Runs only the groups above `cache.boundary`, on the cached rows of `indices` (their targets
    /// assembled; the raw batch too when a layer above needs it, such as BERT's padding mask).
    private func forwardFromCache(_ cache: FeatureCache, _ indices: [Int?], of dataset: any Dataset,
                                  needsRawInput: Bool, training: Bool) throws -> Tensor {
        assembleTargets(indices, from: dataset)
        cache.load(indices, into: cachedInput)
        if needsRawInput {
            try assemble(indices, from: dataset)
            model.observeRawInput(input, belowGroup: cache.boundary)
        }
        return model.forward(cachedInput, fromGroup: cache.boundary, training: training)
    }

    /// The most bytes the feature caches held in memory at once during the run.
    public private(set) var peakFeatureCacheBytes = 0

    /// Bytes of feature caches held in memory (not in files).
    public var featureCacheBytes: Int {
        ([trainingFeatures].compactMap { $0 } + Array(evaluationFeatures.values)).filter { $0.backing == .memory }.reduce(0) { $0 + $1.byteCount }
    }

    /// Why the cache cannot be used right now, or nil.
    private func cacheBlocker() -> String? {
        if let cacheOffReason { return cacheOffReason }
        if model.frozenBatchNormPolicy == .batchStatistics {
            return "frozen batch norm uses batch statistics (model.frozen_batch_norm), so the frozen groups' output changes as they run"
        }
        return nil
    }

    /// How many epochs from `epoch` on the current trainable set is scheduled to hold, when the
    /// schedule is known in advance (the fixed and gradual policies); nil otherwise (plateau, none).
    /// Every rank computes it alike from the configuration, so they agree on building the cache.
    private func epochsTheBoundaryHolds(from epoch: Int) -> Int? {
        guard config.unfreezing.policy == .fixed || config.unfreezing.policy == .gradual, let unfreezingSchedule else { return nil }
        return (unfreezingSchedule.nextChange(after: epoch, epochs: config.training.epochs) ?? config.training.epochs) - epoch
    }

    /// The training set's cache for the current boundary, built on first use; nil when the cache does
    /// not apply (every group trains, or a blocker, announced once) or does not pay: when the schedule
    /// moves the boundary after this one epoch, filling the cache would compute the frozen groups'
    /// output once, which is the work it saves, and add a broadcast and memory. Every rank computes a
    /// 1/W slice of the samples and broadcasts it (see FeatureCache.swift).
    private func trainingCache(epoch: Int) throws -> FeatureCache? {
        let boundary = model.firstTrainableGroup
        boundaryIsShortLived = false
        guard boundary > 0, boundary < model.groups.count else { return nil }
        if let trainingFeatures, trainingFeatures.boundary == boundary { return trainingFeatures }
        if let reason = cacheBlocker() {
            if !announcedCacheOff { onEvent(.note("feature cache: off: \(reason)")) }
            announcedCacheOff = true
            return nil
        }
        if let holds = epochsTheBoundaryHolds(from: epoch), holds < 2 {
            boundaryIsShortLived = true
            if announcedShortBoundary != boundary {
                onEvent(.note("feature cache: not built for epoch \(epoch + 1): the schedule moves the boundary after it, "
                              + "so computing the frozen groups' output once would only repeat the work it saves"))
            }
            announcedShortBoundary = boundary
            return nil
        }
        let cache = try newCache(boundary: boundary, count: train.count, name: "train")
        let world = collective.worldSize
        func slice(_ rank: Int) -> Range<Int> { (train.count * rank / world)..<(train.count * (rank + 1) / world) }
        let mine = Array(slice(collective.rank))
        var start = 0
        while start < mine.count {
            let indices: [Int?] = Array(mine[start..<min(start + sampler.localBatchCapacity, mine.count)])
            try assemble(indices, from: train)
            cache.store(model.forward(input, groups: 0..<boundary, training: false), indices: indices)
            start += indices.count
        }
        for rank in 0..<world { try cache.broadcast(rows: slice(rank), root: rank, collective: collective) }
        cache.markAllFilled()
        trainingFeatures = cache
        let frozen = model.frozenGroups
        let place = switch cache.backing {
        case .memory: "in memory"
        case .file: "in a file in \(config.run.output) (beyond training.feature_cache.memory_mb)"
        }
        onEvent(.note("feature cache: the output of \(frozen.count > 1 ? "\(frozen[0])…\(frozen[frozen.count - 1])" : frozen[0]) "
                      + "computed once for \(train.count) training samples, \(bytes(cache.byteCount)) \(place); "
                      + "only the trainable groups run until the boundary moves"))
        return cache
    }

    /// The cache for an evaluation set at the current boundary (rows fill as they are met), or nil.
    private func evaluationCache(key: String, count: Int) throws -> FeatureCache? {
        let boundary = model.firstTrainableGroup
        // Evaluation never augments, so only the switch and batch-statistics batch norm rule it out.
        guard boundary > 0, boundary < model.groups.count, config.training.featureCache.enabled, !boundaryIsShortLived,
              model.frozenBatchNormPolicy == .runningStatistics else { return nil }
        if let existing = evaluationFeatures[key], existing.boundary == boundary { return existing }
        let cache = try newCache(boundary: boundary, count: count, name: key)
        evaluationFeatures[key] = cache
        return cache
    }

    private func newCache(boundary: Int, count: Int, name: String) throws -> FeatureCache {
        let budget = Int(config.training.featureCache.memoryMegabytes * 1_048_576) - featureCacheBytes
        var shape = [1] + model.sampleShape
        for index in 0..<boundary { shape = try model.groups[index].body.outputShape(for: shape) }
        let cache = try FeatureCache(boundary: boundary, rowShape: Array(shape.dropFirst()), count: count, budgetBytes: budget,
                                     spillDirectory: config.run.output, name: "feature-cache-\(name)-rank\(collective.rank)")
        peakFeatureCacheBytes = max(peakFeatureCacheBytes, featureCacheBytes + (cache.backing == .memory ? cache.byteCount : 0))
        return cache
    }

    /// Drops every cache (the boundary moved, or the frozen weights changed); `reason` is announced when given.
    private func dropFeatureCaches(because reason: String?) {
        if let reason, trainingFeatures != nil { onEvent(.note("feature cache: dropped: \(reason)")) }
        trainingFeatures = nil
        evaluationFeatures = [:]
    }

    /// Fills only the target buffers (labels, weights, label weights, domains) for one local batch; the
    /// features come from a cache.
    private func assembleTargets(_ indices: [Int?], from dataset: any Dataset) {
        BatchAssembler.fillTargets(from: dataset, indices: indices, labels: labels, weights: weights,
                                   labelWeights: labelWeights, domains: domains)
    }

    /// Fills the input, label, weight and domain buffers for one local batch (padding gets weight 0;
    /// unlabelled rows get label weight 0 and their labels are never read).
    private func assemble(_ indices: [Int?], from dataset: any Dataset) throws {
        input.resize(to: [indices.count] + model.sampleShape)
        BatchAssembler.fill(from: dataset, indices: indices, features: input.data, labels: labels, weights: weights,
                            labelWeights: labelWeights, domains: domains)
    }

    /// The assembled batch's targets.
    private func targets(rows: Int) -> BatchTargets {
        BatchTargets(labels: labels.baseAddress!, labelWeights: labelWeights.baseAddress!, sampleWeights: weights.baseAddress!,
                     domains: domains.baseAddress!, rows: rows)
    }

    /// The step's global labelled and real sample counts. Every rank computes them alike from the
    /// global batches (no message): the sampler's order and the dataset's `isLabelled` are the same everywhere.
    private func stepNormalizers(epoch: Int, samplerSteps: Range<Int>) -> StepNormalizers {
        var labelled = 0, samples = 0
        for step in samplerSteps {
            for index in sampler.globalBatch(epoch: epoch, step: step) where train.isLabelled(index) { labelled += 1 }
            samples += sampler.globalRealCount(epoch: epoch, step: step)
        }
        return StepNormalizers(labelled: Float(labelled), samples: Float(samples))
    }
}
