// TrainerSettings: the few values the training loop reads, and the data it reads them over. The run
// (ThawRun's `RunAssembly`) makes them from the configuration; tests make them directly.
import ThawData
import ThawNN

/// The values the training loop itself needs; everything else reaches it as a built part.
public struct TrainerSettings: Sendable {
    /// Passes over the training data.
    public var epochs: Int
    /// Micro-batches per optimizer step (gradients accumulate, and are exchanged once per step).
    public var accumulationSteps: Int
    /// Clip gradients to this global norm (0 = off).
    public var gradientClipNorm: Float
    /// Stop as diverged when a step's loss exceeds this many times the first step's (0 = only when not finite).
    public var divergenceFactor: Double
    /// The seed dropout is reseeded from, with the step, rank and layer.
    public var seed: UInt64
    /// Evaluate on the test set after every epoch (otherwise only at the end).
    public var evaluateEveryEpoch: Bool
    /// Early stopping on the validation set.
    public var earlyStopping: EarlyStoppingSettings
    /// The frozen-prefix cache.
    public var featureCache: FeatureCacheSettings
    /// What frozen groups' batch norm does until a plan says otherwise.
    public var frozenBatchNorm: FrozenBatchNormPolicy
    /// The head's base learning rate (named in the divergence message).
    public var learningRate: Float
    /// What checkpoints record about the run that wrote them.
    public var identity: RunIdentity

    /// Creates settings.
    public init(epochs: Int, accumulationSteps: Int = 1, gradientClipNorm: Float = 0, divergenceFactor: Double = 1e4, seed: UInt64,
                evaluateEveryEpoch: Bool = true, earlyStopping: EarlyStoppingSettings = EarlyStoppingSettings(),
                featureCache: FeatureCacheSettings, frozenBatchNorm: FrozenBatchNormPolicy = .runningStatistics, learningRate: Float,
                identity: RunIdentity) {
        self.epochs = epochs
        self.accumulationSteps = accumulationSteps
        self.gradientClipNorm = gradientClipNorm
        self.divergenceFactor = divergenceFactor
        self.seed = seed
        self.evaluateEveryEpoch = evaluateEveryEpoch
        self.earlyStopping = earlyStopping
        self.featureCache = featureCache
        self.frozenBatchNorm = frozenBatchNorm
        self.learningRate = learningRate
        self.identity = identity
    }
}

/// What a checkpoint records about the run that wrote it.
public struct RunIdentity: Sendable, Equatable {
    /// The architecture name.
    public var architecture: String
    /// Hex digest of the configuration.
    public var configDigest: String
    /// The configuration as canonical JSON, so a resume can say what changed.
    public var configuration: String

    /// Creates an identity.
    public init(architecture: String, configDigest: String, configuration: String) {
        self.architecture = architecture
        self.configDigest = configDigest
        self.configuration = configuration
    }
}

/// The datasets of a run.
public struct TrainingData {
    /// The training set (each rank reads the rows the sampler gives it).
    public var train: any Dataset
    /// The validation set, evaluated every epoch, if any.
    public var validation: (any Dataset)?
    /// The test set, if any.
    public var test: (any Dataset)?

    /// Creates the data.
    public init(train: any Dataset, validation: (any Dataset)? = nil, test: (any Dataset)? = nil) {
        self.train = train
        self.validation = validation
        self.test = test
    }
}
