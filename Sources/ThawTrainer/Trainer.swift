// Trainer: the data-parallel training loop, as one straight line.
//
// Each epoch: the agreed plan (PlanAgreement) → for each step: batches (BatchSource: raw, or the
// frozen prefix's cache) → forward → loss (TrainingObjective) → backward, stopping at the boundary
// → exchange of the trainable range (GradientExchange) → optimizer step → observers (RunObserver)
// → one small all-reduce that agrees the step's loss and rank 0's stop → after the epoch, evaluation,
// checkpoint, observers, early stopping. Everything clever (buckets, overlap, caches) sits behind
// those parts and can be switched off (`training.exchange: plain`, `training.feature_cache.enabled`).
// The trainer reads no configuration: its parts arrive built (ThawRun's RunAssembly makes them).
import Foundation
import ThawCollective
import ThawData
import ThawKernels
import ThawNN
import ThawOptim
import ThawPlan

/// Trains one model replica per rank on its shard of the data.
public final class Trainer {
    /// The loop's settings.
    public let settings: TrainerSettings
    /// This rank's replica.
    public let model: Model
    /// The ranks training together.
    public let collective: any Collective
    /// The optimizer over the flat buffers.
    public let optimizer: Optimizer
    /// What training minimizes.
    public let objective: any TrainingObjective
    /// The plans of the run, agreed by every rank.
    public let plans: PlanAgreement
    /// Finished epochs.
    public private(set) var history: [EpochRecord] = []
    /// Where the epoch stood when the run stopped on request (nil when it ran to the end).
    public private(set) var partial: PartialEpoch?
    /// When early stopping ended the run: the last epoch trained (0-based).
    public private(set) var stoppedEarlyAfter: Int?
    /// The epoch whose weights were put back at the end (early stopping's `restore_best`), if any.
    public private(set) var restoredEpoch: Int?
    /// The per-rank trace of chosen steps, or nil (see "Note: trace off costs nothing").
    public let timeline: Timeline?

    private let data: TrainingData
    private let schedule: LearningRateSchedule
    private let exchange: any GradientExchange
    private let sampler: ShardedSampler
    private let augmentation: ImageAugmentation?
    private let checkpoints: CheckpointWriter?
    private let observers: [any RunObserver]
    private let buffers: BatchBuffers
    private let caching: FeatureCaching
    private let logitsGradient = Tensor(shape: [0])
    private var earlyStopping: EarlyStopping
    private var randomLayers: [(index: UInt64, layer: any RandomLayer)] = []
    private var scheduledLayers: [any ProgressScheduledLayer] = []
    private var globalStep = 0
    /// The run's first step's global loss, which divergence is judged against (kept in checkpoints).
    private var referenceLoss: Double?

    /// Prepares a run from built parts: checks that every rank has the same model layout, and makes
    /// rank 0's parameters, batch-norm state, optimizer state and (when resuming) checkpoint everyone's.
    /// - Parameters:
    ///   - settings: The loop's settings.
    ///   - model: This rank's replica.
    ///   - optimizer: The optimizer over the model's store.
    ///   - schedule: The learning-rate schedule.
    ///   - exchange: How gradients are summed over ranks.
    ///   - sampler: Which training rows this rank reads at each step.
    ///   - data: The datasets.
    ///   - augmentation: Training augmentation, if any.
    ///   - objective: What training minimizes.
    ///   - planSource: Where rank 0 gets each epoch's plan.
    ///   - collective: The ranks.
    ///   - checkpoint: A checkpoint to resume from; only rank 0 needs it (its state is broadcast).
    ///   - checkpoints: Writes checkpoints after epochs (rank 0), or nil.
    ///   - observers: Told about plans, steps and epochs.
    ///   - timeline: Records the chosen steps' spans, or nil.
    public init(settings: TrainerSettings, model: Model, optimizer: Optimizer, schedule: LearningRateSchedule, exchange: any GradientExchange,
                sampler: ShardedSampler, data: TrainingData, augmentation: ImageAugmentation?, objective: any TrainingObjective,
                planSource: any PlanSource, collective: any Collective, checkpoint: Checkpoint? = nil, checkpoints: CheckpointWriter? = nil,
                observers: [any RunObserver] = [], timeline: Timeline? = nil) throws {
        self.settings = settings
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.exchange = exchange
        self.sampler = sampler
        self.data = data
        self.augmentation = augmentation
        self.objective = objective
        self.collective = collective
        self.checkpoints = checkpoints
        self.observers = observers
        self.timeline = timeline
        plans = PlanAgreement(collective: collective, model: model, optimizer: optimizer, exchange: exchange, source: planSource)
        earlyStopping = EarlyStopping(settings: settings.earlyStopping)
        buffers = BatchBuffers(capacity: sampler.localBatchCapacity, sampleShape: model.sampleShape)
        caching = FeatureCaching(settings: settings.featureCache, augmented: augmentation != nil, model: model, collective: collective,
                                 buffers: buffers, localCapacity: sampler.localBatchCapacity,
                                 note: { text in observers.forEach { $0.note(text) } })
        model.frozenBatchNormPolicy = settings.frozenBatchNorm
        randomLayers = model.allLayers.enumerated().compactMap { item in
            (item.element as? RandomLayer).map { (index: UInt64(item.offset), layer: $0) }
        }
        scheduledLayers = model.allLayers.compactMap { $0 as? ProgressScheduledLayer }

        // The configuration and launch options were agreed at start-up (RankAgreement); the layout is checked here.
        try collective.verifyAgreement(on: fnv1a(Array(model.layoutDescription.utf8)), describing: "parameter layout (names, shapes, groups)")
        if collective.rank == 0, let checkpoint {
            try checkpoint.restore(into: model)
            try checkpoint.restore(into: optimizer)
        }
        try collective.broadcast(UnsafeMutableRawBufferPointer(model.store.parameters), root: 0)
        try collective.broadcast(UnsafeMutableRawBufferPointer(model.store.state), root: 0)
        for buffer in optimizer.stateBuffers { try collective.broadcast(UnsafeMutableRawBufferPointer(buffer.values), root: 0) }
        // Every rank learns whether there is a checkpoint, and its metadata, from rank 0.
        if let resumed = try collective.broadcastJSON(collective.rank == 0 ? checkpoint?.metadata : nil) {
            history = resumed.history
            globalStep = resumed.globalStep
            partial = resumed.partialEpoch
            referenceLoss = resumed.referenceLoss
            try plans.restore(plan: resumed.plan, thawedAtStep: resumed.thawedAtStep)
            do { try optimizer.restoreGroupState(stepCounts: resumed.optimizerStepCounts, hasState: resumed.optimizerHasState) } catch {
                throw TrainingError.io(path: "checkpoint", message: "optimizer state: \(error)")
            }
        }
        if let timeline {
            timeline.groupNames = model.groups.map(\.name)
            model.groupTimer = timeline
            exchange.timeline = timeline
            caching.timeline = timeline
            try timeline.alignClock(collective)
        }
    }

    /// Gradient bytes this rank sent in the last step (4 × trainable parameters with several ranks).
    public var bytesExchangedPerStep: Int { exchange.bytesLastStep }
    /// Optimizer steps per epoch (the same on every rank by construction).
    public var stepsPerEpoch: Int { (sampler.stepsPerEpoch + settings.accumulationSteps - 1) / settings.accumulationSteps }
    /// The best epoch by the early-stopping metric (nil without early stopping).
    public var bestEpoch: Int? { earlyStopping.bestEpoch }
    /// The most bytes the feature caches held in memory at once during the run.
    public var peakFeatureCacheBytes: Int { caching.peakBytes }

    /// Runs every remaining epoch (all of them, or those after a resumed checkpoint) and returns the
    /// records of every epoch. A run stopped on request returns early with `partial` set.
    public func run() throws -> [EpochRecord] {
        for epoch in history.count..<settings.epochs {
            // A run stopped mid-epoch continues under the plan it had; otherwise the ranks agree a new one.
            let resumeFrom = partial?.epoch == epoch ? partial : nil
            let proposed = try resumeFrom.flatMap { _ in plans.current }
                ?? plans.propose(epoch: epoch, previousValidationLoss: history.last?.validation?.loss)
            let plan = try plans.apply(proposed, atStep: globalStep)
            caching.planApplied()
            for observer in observers { observer.planApplied(plan, atStep: globalStep) }
            guard var record = try trainEpoch(epoch: epoch, plan: plan, resumeFrom: resumeFrom) else { return history }
            if let validation = data.validation {
                record.validation = try timeline.span("evaluation validation", category: "evaluation") { try evaluate(validation, cacheKey: "validation") }
            }
            if let test = data.test, settings.evaluateEveryEpoch || epoch == settings.epochs - 1 {
                record.test = try timeline.span("evaluation test", category: "evaluation") { try evaluate(test, cacheKey: "test") }
            }
            history.append(record)
            let checkpoint = try timeline.span("checkpoint", category: "checkpoint") { try checkpoints?.afterEpoch(self) }
            for observer in observers { observer.epochFinished(record, checkpoint: checkpoint) }
            let lastThaw = history.last { !$0.newlyThawed.isEmpty }?.epoch ?? 0
            if earlyStopping.shouldStop(after: record, lastThaw: lastThaw, thawingIsExhausted: plan.thawingIsExhausted(groupCount: model.plannableGroupNames.count),
                                        store: model.store) {
                stoppedEarlyAfter = epoch
                break
            }
        }
        if let last = history.last, let restored = earlyStopping.restoreBest(into: model.store, lastEpoch: last.epoch) {
            restoredEpoch = restored
            caching.drop(because: nil)   // the restored frozen groups may differ from the cached ones
        }
        // A run that stopped early, or whose weights were put back, gets its final test result now.
        if let test = data.test, stoppedEarlyAfter != nil || restoredEpoch != nil, !history.isEmpty {
            history[history.count - 1].test = try evaluate(test)
        }
        return history
    }

    /// Trains one epoch (from `resumeFrom` when continuing a stopped one). Returns nil when the run
    /// stopped on request; `partial` then says where.
    func trainEpoch(epoch: Int, plan: TrainingPlan, resumeFrom: PartialEpoch?) throws -> EpochRecord? {
        timeline?.enter(step: globalStep, epoch: epoch)
        let (source, fillSeconds) = try caching.trainingSource(plan: plan, epochs: settings.epochs, dataset: data.train, augmentation: augmentation)
        let started = Date().addingTimeInterval(-(resumeFrom?.seconds ?? 0))
        // Rank-local until the epoch's end; a resumed epoch's earlier sums (over every rank) count once, on rank 0.
        var sums = collective.rank == 0 ? resumeFrom?.sums ?? ObjectiveResult() : ObjectiveResult()
        var bytes = resumeFrom?.bytes ?? 0
        partial = nil
        let steps = stepsPerEpoch
        let trainable = model.trainableRange
        for step in (resumeFrom?.stepsDone ?? 0)..<steps {
            timeline?.enter(step: globalStep, epoch: epoch)
            prepareRandomAndScheduledLayers(totalSteps: steps * settings.epochs)
            model.store.zeroGradients(in: trainable)
            let before = sums
            let micro = (step * settings.accumulationSteps)..<min((step + 1) * settings.accumulationSteps, sampler.stepsPerEpoch)
            let normalizers = stepNormalizers(epoch: epoch, samplerSteps: micro)
            for samplerStep in micro {
                // Only the real rows run: padding rows would enter trainable batch norm's statistics.
                // A rank with no sample in this step joins the exchange with zero gradients.
                let indices = Array(sampler.localBatch(epoch: epoch, step: samplerStep).prefix { $0 != nil })
                guard !indices.isEmpty else { continue }
                let isLast = samplerStep == micro.upperBound - 1
                let outputs = try source.forward(indices, of: data.train, model: model, buffers: buffers, epoch: epoch, training: true,
                                                 timeline: timeline)
                sums += objective.evaluate(outputs: outputs, targets: buffers.targets(rows: indices.count), normalizers: normalizers,
                                           outputGradient: logitsGradient)
                try model.backward(logitsGradient) { group in if isLast { try exchange.groupFinished(group) } }
            }
            try exchange.finish(trainableRange: trainable)
            bytes += exchange.bytesLastStep
            try timeline.span("optimizer step", category: "optimizer") { try updateParameters(trainable, epoch: epoch, step: step) }
            let report = StepReport(epoch: epoch, step: step + 1, steps: steps, globalStep: globalStep,
                                    loss: sums.labelled > 0 ? sums.labelLossSum / sums.labelled : 0,
                                    samplesPerSecond: sums.rows * Double(collective.worldSize) / max(Date().timeIntervalSince(started), 1e-9),
                                    bytesExchanged: exchange.bytesLastStep)
            let command = observers.stepFinished(report)
            let stop = try agreeOnStep(loss: sums.labelLossSum - before.labelLossSum, labelled: sums.labelled - before.labelled,
                                       stop: command == .stop && step + 1 < steps, epoch: epoch, step: step)
            if stop {
                partial = PartialEpoch(epoch: epoch, stepsDone: step + 1, sums: try sums.summed(over: collective), bytes: bytes,
                                       seconds: Date().timeIntervalSince(started))
                return nil
            }
        }
        let totals = try sums.summed(over: collective)
        let seconds = Date().timeIntervalSince(started)
        return EpochRecord(epoch: epoch, planVersion: plan.version, trainableGroups: plan.trainableGroups, newlyThawed: plan.newlyThawed,
                           train: totals.labelEvaluation, validation: nil, test: nil, seconds: seconds, bytesExchanged: bytes,
                           steps: steps, samplesPerSecond: totals.rows / max(seconds, 1e-9),
                           cacheFillSeconds: fillSeconds, fromCache: { if case .cached = source { return true } else { return false } }(),
                           domain: totals.domainEvaluation)
    }

    /// Scheduled layers (gradient reversal's λ) follow the global step alone, and dropout draws depend
    /// only on (seed, step, rank, layer), so a run can resume at any step exactly.
    private func prepareRandomAndScheduledLayers(totalSteps: Int) {
        for layer in scheduledLayers { layer.setTrainingProgress(Double(globalStep) / Double(max(totalSteps, 1))) }
        for (index, layer) in randomLayers { layer.reseed(SplitMix64.mix(settings.seed, UInt64(globalStep), UInt64(collective.rank), index)) }
    }

    /// Checks the summed gradients, clips them if asked, and takes the optimizer step.
    private func updateParameters(_ trainable: Range<Int>, epoch: Int, step: Int) throws {
        let gradients = UnsafeMutableBufferPointer(rebasing: model.store.gradients[trainable])
        guard GradientTools.allFinite(gradients) else { throw TrainingError.nonFinite(what: "gradients", epoch: epoch + 1, step: step + 1) }
        if settings.gradientClipNorm > 0 { _ = GradientTools.clipByGlobalNorm(gradients, maxNorm: settings.gradientClipNorm) }
        let multiplier = schedule.multiplier(step: globalStep, totalSteps: stepsPerEpoch * settings.epochs)
        optimizer.step(store: model.store, groups: model.firstTrainableGroup..<model.parameterGroups.count,
                       learningRates: plans.learningRates(atStep: globalStep, multiplier: multiplier))
        globalStep += 1
    }

    /// One small all-reduce every step, on every rank alike: the step's label loss and labelled rows (so
    /// every rank judges divergence the same) and rank 0's stop decision. Returns whether to stop.
    /// - Throws: ``TrainingError`` when the loss is not finite, or more than `divergenceFactor` × the
    ///   run's first step's loss (every rank throws at the same step; earlier checkpoints stay).
    private func agreeOnStep(loss: Double, labelled: Double, stop: Bool, epoch: Int, step: Int) throws -> Bool {
        var agreed = [loss, labelled, collective.rank == 0 && stop ? 1 : 0]
        try agreed.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        if agreed[1] > 0 {
            let mean = agreed[0] / agreed[1]
            guard mean.isFinite else { throw TrainingError.nonFinite(what: "the training loss", epoch: epoch + 1, step: step + 1) }
            if let reference = referenceLoss {
                if settings.divergenceFactor > 0 && mean > settings.divergenceFactor * reference {
                    throw TrainingError.diverged(epoch: epoch + 1, step: step + 1, loss: mean, reference: reference,
                                                 factor: settings.divergenceFactor, learningRate: Double(settings.learningRate))
                }
            } else if mean > 0 {
                referenceLoss = mean
            }
        }
        return agreed[2] > 0
    }

    /// Evaluates on a dataset sharded across ranks; every sample counts exactly once.
    /// - Parameter cacheKey: Names the dataset for the frozen-prefix cache (nil: no cache). Evaluation
    ///   shards never move, so each rank caches its own rows as it first meets them.
    public func evaluate(_ dataset: any Dataset, cacheKey: String? = nil) throws -> Evaluation {
        let shard = EvaluationSharder(datasetSize: dataset.count, worldSize: collective.worldSize, rank: collective.rank,
                                      localBatchCapacity: sampler.localBatchCapacity)
        let source = try cacheKey.map { try caching.evaluationSource(key: $0, count: dataset.count) } ?? .raw(augmentation: nil)
        var totals = ObjectiveResult()
        for step in 0..<shard.stepCount {
            let indices = shard.localBatch(step: step)
            let outputs = try source.forward(indices, of: dataset, model: model, buffers: buffers, epoch: 0, training: false)
            totals += objective.evaluate(outputs: outputs, targets: buffers.targets(rows: indices.count),
                                         normalizers: StepNormalizers(labelled: 1, samples: 1), outputGradient: nil)
        }
        return try totals.summed(over: collective).labelEvaluation
    }

    /// The non-tensor state a checkpoint needs to continue this run exactly.
    public func checkpointMetadata() -> CheckpointMetadata {
        CheckpointMetadata(
            epochsCompleted: history.count, globalStep: globalStep, configDigest: settings.identity.configDigest,
            layoutDigest: hex(fnv1a(Array(model.layoutDescription.utf8))), worldSize: collective.worldSize,
            architecture: settings.identity.architecture, plan: plans.current, planner: plans.source.plannerState,
            thawedAtStep: plans.thawedAtStep, optimizerStepCounts: optimizer.stepCounts, optimizerHasState: optimizer.hasState,
            history: history, partialEpoch: partial, referenceLoss: referenceLoss, configuration: settings.identity.configuration)
    }

    /// The step's global labelled and real sample counts. Every rank computes them alike from the
    /// global batches (no message): the sampler's order and the dataset's `isLabelled` are the same everywhere.
    private func stepNormalizers(epoch: Int, samplerSteps: Range<Int>) -> StepNormalizers {
        var labelled = 0, samples = 0
        for step in samplerSteps {
            for index in sampler.globalBatch(epoch: epoch, step: step) where data.train.isLabelled(index) { labelled += 1 }
            samples += sampler.globalRealCount(epoch: epoch, step: step)
        }
        return StepNormalizers(labelled: Float(labelled), samples: Float(samples))
    }
}
