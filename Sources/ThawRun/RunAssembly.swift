// RunAssembly: the one place the configuration becomes the trainer's parts: settings, objective,
// optimizer, schedule, gradient exchange, sampler and augmentation, with the checks that the data,
// the model and the configuration fit together.
import Foundation
import ThawCollective
import ThawData
import ThawNN
import ThawOptim
import ThawPlan
import ThawTrainer

/// The objective a configuration asks for.
public enum TrainingObjectives {
    /// DANN's objective when `model.domain_adaptation` is set, else plain classification.
    public static func make(_ config: TrainingConfig) -> any TrainingObjective {
        if config.model.domainAdaptation != nil {
            return DomainAdversarialObjective(classes: config.model.classes, labelSmoothing: config.training.labelSmoothing)
        }
        return ClassificationObjective(classes: config.model.classes, labelSmoothing: config.training.labelSmoothing)
    }
}

/// Builds a trainer from a configuration and its already loaded parts.
public enum RunAssembly {
    /// The trainer's settings from the configuration.
    public static func settings(_ config: TrainingConfig) -> TrainerSettings {
        let training = config.training
        let stopping = training.earlyStopping
        return TrainerSettings(
            epochs: training.epochs, accumulationSteps: training.accumulationSteps, gradientClipNorm: training.gradientClipNorm,
            divergenceFactor: training.divergenceFactor, seed: config.run.seed, evaluateEveryEpoch: training.evaluateEveryEpoch,
            earlyStopping: EarlyStoppingSettings(patience: stopping.patience, metric: stopping.metric, minimumDelta: stopping.minimumDelta,
                                                 restoreBest: stopping.restoreBest),
            featureCache: FeatureCacheSettings(enabled: training.featureCache.enabled,
                                               memoryBytes: Int(training.featureCache.memoryMegabytes * 1_048_576), spillDirectory: config.run.output),
            frozenBatchNorm: config.model.frozenBatchNorm, learningRate: config.optimizer.learningRate,
            identity: RunIdentity(architecture: config.model.architecture, configDigest: String(config.digest, radix: 16),
                                  configuration: String(decoding: config.canonicalJSON, as: UTF8.self)))
    }

    /// The in-process planner the configuration describes, for a model with `groups`; a resumed run's
    /// planner keeps its history and takes the configuration's (possibly changed) settings and rates.
    public static func planner(_ config: TrainingConfig, groups: [String], resumed: UnfreezingPlanner?) throws -> UnfreezingPlanner {
        if let resumed {
            return try resumed.adopting(settings: config.unfreezing, baseLearningRate: config.optimizer.learningRate,
                                        batchNormPolicy: config.model.frozenBatchNorm.rawValue)
        }
        return try UnfreezingPlanner(settings: config.unfreezing, groupNames: groups, baseLearningRate: config.optimizer.learningRate,
                                     batchNormPolicy: config.model.frozenBatchNorm.rawValue)
    }

    /// Checks that the data, the model and the configuration fit, and builds the trainer.
    /// - Throws: ``RunMismatch`` naming what does not fit and the key to change; or a part's own error.
    public static func trainer(_ config: TrainingConfig, model: Model, data: TrainingData, collective: any Collective,
                               planSource: any PlanSource, checkpoint: Checkpoint?, checkpoints: CheckpointWriter?,
                               observers: [any RunObserver]) throws -> Trainer {
        guard data.train.sampleShape == model.sampleShape else {
            throw RunMismatch.sampleShape(data: data.train.sampleShape, model: model.sampleShape)
        }
        guard data.train.classCount <= config.model.classes else {
            throw RunMismatch.classCount(data: data.train.classCount, configured: config.model.classes)
        }
        let objective = TrainingObjectives.make(config)
        guard model.outputSampleShape == [objective.outputWidth] else {
            throw RunMismatch.outputWidth(model: model.outputSampleShape, objective: objective.outputWidth)
        }
        guard config.training.earlyStopping.patience == 0 || data.validation != nil else { throw RunMismatch.earlyStoppingNeedsValidation }
        let sampler = ShardedSampler(datasetSize: data.train.count, worldSize: collective.worldSize, rank: collective.rank,
                                     globalBatchSize: config.training.batchSize / config.training.accumulationSteps,
                                     seed: config.run.seed, shuffle: true)
        let augmentation = ImageAugmentation(cropPadding: config.data.cropPadding, horizontalFlip: config.data.horizontalFlip, seed: config.run.seed)
        if !augmentation.isIdentity {
            let shape = model.sampleShape
            guard shape.count == 3, shape[1] > 2 * config.data.cropPadding, shape[2] > 2 * config.data.cropPadding else {
                throw RunMismatch.augmentation(sampleShape: shape, padding: config.data.cropPadding)
            }
        }
        let optimizer = try Optimizer(rule: UpdateRule(config.optimizer), weightDecay: Double(config.optimizer.weightDecay), store: model.store)
        let schedule = LearningRateSchedule(config.schedule)
        do { try schedule.validate() } catch { throw ConfigError(file: "", key: "schedule", message: error.description) }
        let exchange: any GradientExchange = switch config.training.exchange {
        case .plain: PlainExchange(collective: collective, gradients: model.store.gradients)
        case .bucketed: BucketedExchange(collective: collective, gradients: model.store.gradients, groupRanges: model.store.groupRanges,
                                         bucketBytes: Int(config.training.bucketSizeMegabytes * 1_048_576))
        }
        return try Trainer(settings: settings(config), model: model, optimizer: optimizer, schedule: schedule, exchange: exchange,
                           sampler: sampler, data: data, augmentation: augmentation.isIdentity ? nil : augmentation, objective: objective,
                           planSource: planSource, collective: collective, checkpoint: checkpoint, checkpoints: checkpoints, observers: observers,
                           timeline: config.training.trace.enabled ? Timeline(rank: collective.rank, steps: config.training.trace.stepRange) : nil)
    }
}

/// Data, a model and a configuration that do not fit together.
public enum RunMismatch: Error, CustomStringConvertible, Equatable {
    /// The data's samples are not the model's input.
    case sampleShape(data: [Int], model: [Int])
    /// The data has more classes than `model.classes`.
    case classCount(data: Int, configured: Int)
    /// The model's output row does not have the objective's width.
    case outputWidth(model: [Int], objective: Int)
    /// Early stopping was asked for without a validation set.
    case earlyStoppingNeedsValidation
    /// Augmentation was asked for on samples it cannot crop.
    case augmentation(sampleShape: [Int], padding: Int)

    /// What does not fit, and the key to change.
    public var description: String {
        switch self {
        case .sampleShape(let data, let model):
            return "data sample shape \(data) does not match the model input \(model) (data.image_size, data.normalization)"
        case .classCount(let data, let configured):
            return "model.classes: the data has \(data) classes but model.classes is \(configured)"
        case .outputWidth(let model, let objective):
            return "the model's output \(model) does not fit the objective, which needs [\(objective)] (model.classes, model.domain_adaptation)"
        case .earlyStoppingNeedsValidation:
            return "training.early_stopping needs a validation set: set data.validation_size"
        case .augmentation(let shape, let padding):
            return "data.crop_padding / data.horizontal_flip need [C, H, W] images larger than twice the padding (\(padding)); the data gives \(shape)"
        }
    }
}
