// Config: the one configuration file (YAML or JSON) that describes a run.
//
// Every section rejects keys it does not know, and every error names the key path and
// what was expected, so a typo never silently falls back to a default.
// docs/configuration.md and README.md list every key; keep them in step with this file.
import Foundation
import ThawTrainer
import ThawPlan
import ThawNN
import Yams

/// A whole run's configuration.
public struct TrainingConfig: Codable, Equatable, Sendable {
    /// Run identity, seed and output directory.
    public var run: RunSection
    /// Architecture, class count and frozen batch-norm policy.
    public var model: ModelSection
    /// Dataset and subsets.
    public var data: DataSection
    /// Epochs, batch size and gradient handling.
    public var training: TrainingSection
    /// The optimizer.
    public var optimizer: OptimizerSection
    /// The learning-rate schedule.
    public var schedule: ScheduleSection
    /// Which groups train when.
    public var unfreezing: UnfreezingSection
    /// When checkpoints are written and how many are kept.
    public var checkpoint: CheckpointSection
    /// Who may send control commands to the coordinator.
    public var control: ControlSection
    /// Encryption of coordinator traffic.
    public var coordinator: CoordinatorSection

    enum CodingKeys: String, CodingKey, CaseIterable {
        case run, model, data, training, optimizer, schedule, unfreezing, checkpoint, control, coordinator
    }

    /// Decodes every section; missing sections take their defaults.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        run = try c.decodeIfPresent(RunSection.self, forKey: .run) ?? RunSection()
        model = try c.decodeIfPresent(ModelSection.self, forKey: .model) ?? ModelSection()
        data = try c.decodeIfPresent(DataSection.self, forKey: .data) ?? DataSection()
        training = try c.decodeIfPresent(TrainingSection.self, forKey: .training) ?? TrainingSection()
        optimizer = try c.decodeIfPresent(OptimizerSection.self, forKey: .optimizer) ?? OptimizerSection()
        schedule = try c.decodeIfPresent(ScheduleSection.self, forKey: .schedule) ?? ScheduleSection()
        unfreezing = try c.decodeIfPresent(UnfreezingSection.self, forKey: .unfreezing) ?? UnfreezingSection()
        checkpoint = try c.decodeIfPresent(CheckpointSection.self, forKey: .checkpoint) ?? CheckpointSection()
        control = try c.decodeIfPresent(ControlSection.self, forKey: .control) ?? ControlSection()
        coordinator = try c.decodeIfPresent(CoordinatorSection.self, forKey: .coordinator) ?? CoordinatorSection()
    }

    /// A configuration with every default.
    public init() {
        run = RunSection(); model = ModelSection(); data = DataSection(); training = TrainingSection()
        optimizer = OptimizerSection(); schedule = ScheduleSection(); unfreezing = UnfreezingSection()
        checkpoint = CheckpointSection()
        control = ControlSection()
        coordinator = CoordinatorSection()
    }

    /// Loads and validates a YAML or JSON file, then applies `key.path=value` overrides.
    /// - Parameters:
    ///   - path: The file; nil means every default.
    ///   - overrides: Command-line overrides such as `training.epochs=2`; values are read as YAML scalars.
    /// - Throws: ``ConfigError`` naming the file, the key path and what was expected.
    public static func load(path: String?, overrides: [String] = []) throws(ConfigError) -> TrainingConfig {
        let text = try path.map { path throws(ConfigError) in try ConfigInput.read(path) } ?? ""
        return try parse(text, file: path ?? "<defaults>", overrides: overrides)
    }

    /// Parses and validates configuration text, then applies `key.path=value` overrides.
    public static func parse(_ text: String, file: String = "<config>", overrides: [String] = []) throws(ConfigError) -> TrainingConfig {
        try ConfigInput.check(text, file: file, overrides: overrides)   // bounds, nesting and repeated keys, before Yams parses
        let config: TrainingConfig
        do {
            var source = text
            if !overrides.isEmpty {
                var tree = (try Yams.load(yaml: text) as? [String: Any]) ?? [:]
                for override in overrides {
                    guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                        throw ConfigError(file: "--set", key: override, message: "expected key.path=value")
                    }
                    let path = override[..<equals].split(separator: ".").map(String.init)
                    let value = try Yams.load(yaml: String(override[override.index(after: equals)...])) ?? ""
                    tree = setting(tree, path: path[...], to: value)
                }
                source = try Yams.dump(object: tree)
            }
            config = try YAMLDecoder().decode(TrainingConfig.self, from: source.isEmpty ? "{}" : source)
        } catch let error as DecodingError {
            // Yams wraps errors thrown by our own init(from:) as "not valid YAML"; unwrap them.
            if case .dataCorrupted(let context) = error, let inner = context.underlyingError as? ConfigError {
                throw ConfigError(file: file, key: inner.key, message: inner.message)
            }
            throw ConfigError(file: file, decodingError: error)
        } catch let error as ConfigError {
            throw ConfigError(file: file, key: error.key, message: error.message)
        } catch {
            throw ConfigError(file: file, key: "", message: "not valid YAML or JSON: \(error)")
        }
        try config.validate(file: file)
        return config
    }

    private static func setting(_ tree: [String: Any], path: ArraySlice<String>, to value: Any) -> [String: Any] {
        var tree = tree
        guard let key = path.first else { return tree }
        if path.count == 1 {
            tree[key] = value
        } else {
            tree[key] = setting(tree[key] as? [String: Any] ?? [:], path: path.dropFirst(), to: value)
        }
        return tree
    }

    /// The job secret's file: `coordinator.secret_file`, or `job.secret` in the run directory.
    public var jobSecretPath: String {
        coordinator.secretFile.isEmpty ? (run.output as NSString).appendingPathComponent("job.secret") : coordinator.secretFile
    }

    /// The configuration as JSON with sorted keys (what the digest hashes, and checkpoints record).
    public var canonicalJSON: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// A stable digest of the configuration, used to check that every rank runs the same one.
    public var digest: UInt64 { fnv1a(canonicalJSON) }
}

/// Run identity, seed and where results go.
public struct RunSection: Codable, Equatable, Sendable {
    /// A short name for logs and status.
    public var name = "thaw-run"
    /// The output directory: logs, metrics, checkpoints.
    public var output = "runs/thaw-run"
    /// The seed for initialization, shuffling, dropout and augmentation.
    public var seed: UInt64 = 42
    /// Whether every rank writes its own log file in the output directory.
    public var logPerRank = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, output, seed
        case logPerRank = "log_per_rank"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
        output = try c.decodeIfPresent(String.self, forKey: .output) ?? "runs/\(name)"
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        logPerRank = try c.decodeIfPresent(Bool.self, forKey: .logPerRank) ?? logPerRank
    }
}

/// How workers prove themselves to the coordinator, and CURVE encryption of its traffic.
public struct CoordinatorSection: Codable, Equatable, Sendable {
    /// The job secret every worker message is signed with (mode 0600); empty = `job.secret` in the
    /// run directory. `thaw coordinator` creates it when it is missing; workers wait for it.
    public var secretFile = ""
    /// Workers: the coordinator's CURVE public key file (from `thaw keygen`); empty = plain TCP.
    public var curvePublicKeyFile = ""
    /// The coordinator: its CURVE secret key file; empty = plain TCP.
    public var curveSecretKeyFile = ""

    enum CodingKeys: String, CodingKey, CaseIterable {
        case secretFile = "secret_file"
        case curvePublicKeyFile = "curve_public_key_file"
        case curveSecretKeyFile = "curve_secret_key_file"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        secretFile = try c.decodeIfPresent(String.self, forKey: .secretFile) ?? secretFile
        curvePublicKeyFile = try c.decodeIfPresent(String.self, forKey: .curvePublicKeyFile) ?? curvePublicKeyFile
        curveSecretKeyFile = try c.decodeIfPresent(String.self, forKey: .curveSecretKeyFile) ?? curveSecretKeyFile
    }
}

/// Who may send control commands (`thaw ctl`) to the coordinator.
public struct ControlSection: Codable, Equatable, Sendable {
    /// A file holding the shared token; empty turns control off (status stays available).
    public var tokenFile = ""

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tokenFile = "token_file"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        tokenFile = try c.decodeIfPresent(String.self, forKey: .tokenFile) ?? tokenFile
    }
}

/// When checkpoints are written and how many are kept.
public struct CheckpointSection: Codable, Equatable, Sendable {
    /// Write a checkpoint every this many epochs, and after the last (0 = never).
    public var everyEpochs = 1
    /// How many epoch checkpoints to keep (the newest).
    public var keepLast = 3
    /// Also keep `best.safetensors`: the epoch with the lowest validation loss (training loss without a validation set).
    public var keepBest = true

    enum CodingKeys: String, CodingKey, CaseIterable {
        case everyEpochs = "every_epochs"
        case keepLast = "keep_last"
        case keepBest = "keep_best"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        everyEpochs = try c.decodeIfPresent(Int.self, forKey: .everyEpochs) ?? everyEpochs
        keepLast = try c.decodeIfPresent(Int.self, forKey: .keepLast) ?? keepLast
        keepBest = try c.decodeIfPresent(Bool.self, forKey: .keepBest) ?? keepBest
    }
}

/// The network.
public struct ModelSection: Codable, Equatable, Sendable {
    /// The architecture name; `thaw models` lists them.
    public var architecture = "small-cnn"
    /// The number of target classes (the new head's width).
    public var classes = 10
    /// What frozen groups' batch norm does while training.
    public var frozenBatchNorm: FrozenBatchNormPolicy = .runningStatistics
    /// Dropout before the head (0 turns it off).
    public var headDropout: Float = 0
    /// Pretrained weights to start from: a safetensors or PyTorch `.pth` file, or a directory holding
    /// `model.safetensors` (a Hugging Face model directory) (empty = random init).
    public var pretrained = ""
    /// Whether any missing (outside the head), unexpected or mis-shaped tensor stops the run.
    public var strictLoad = false
    /// For `bert`: the Hugging Face `config.json` with the sizes; empty takes `config.json` from the
    /// `pretrained` directory.
    public var bertConfig = ""
    /// For `bert`: how token vectors become one sentence vector, `mean` (over real tokens) or `cls` (first token).
    public var pooling: BERTPooling = .mean
    /// For `bert`: the width of a hidden layer in the head (0 = a linear head).
    public var headHidden = 0
    /// Domain-adversarial training (DANN) against `data.target`; nil (the default) trains on the source alone.
    public var domainAdaptation: DomainAdaptationSection?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case architecture, classes, pretrained, pooling
        case domainAdaptation = "domain_adaptation"
        case frozenBatchNorm = "frozen_batch_norm"
        case headDropout = "head_dropout"
        case strictLoad = "strict_load"
        case bertConfig = "bert_config"
        case headHidden = "head_hidden"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decodeIfPresent(String.self, forKey: .architecture) ?? architecture
        classes = try c.decodeIfPresent(Int.self, forKey: .classes) ?? classes
        frozenBatchNorm = try decodeEnum(c, .frozenBatchNorm) ?? frozenBatchNorm
        headDropout = try c.decodeIfPresent(Float.self, forKey: .headDropout) ?? headDropout
        pretrained = try c.decodeIfPresent(String.self, forKey: .pretrained) ?? pretrained
        strictLoad = try c.decodeIfPresent(Bool.self, forKey: .strictLoad) ?? strictLoad
        bertConfig = try c.decodeIfPresent(String.self, forKey: .bertConfig) ?? bertConfig
        pooling = try decodeEnum(c, .pooling) ?? pooling
        headHidden = try c.decodeIfPresent(Int.self, forKey: .headHidden) ?? headHidden
        domainAdaptation = try c.decodeIfPresent(DomainAdaptationSection.self, forKey: .domainAdaptation)
    }
}

/// Domain-adversarial training (DANN): a domain classifier behind gradient reversal on the head's input.
public struct DomainAdaptationSection: Codable, Equatable, Sendable {
    /// γ of the λ schedule λ_p = λ_max · (2 / (1 + exp(−γ·p)) − 1), p the fraction of training done.
    public var lambdaGamma: Double = 10
    /// λ_max: the gradient-reversal coefficient λ approaches at the end of training.
    public var lambdaMax: Double = 1
    /// The width of the domain classifier's hidden layer.
    public var domainHidden = 100

    enum CodingKeys: String, CodingKey, CaseIterable {
        case lambdaGamma = "lambda_gamma"
        case lambdaMax = "lambda_max"
        case domainHidden = "domain_hidden"
    }

    /// The defaults (the DANN paper's γ = 10, λ_max = 1, hidden width 100).
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lambdaGamma = try c.decodeIfPresent(Double.self, forKey: .lambdaGamma) ?? lambdaGamma
        lambdaMax = try c.decodeIfPresent(Double.self, forKey: .lambdaMax) ?? lambdaMax
        domainHidden = try c.decodeIfPresent(Int.self, forKey: .domainHidden) ?? domainHidden
    }
}

/// The dataset.
public struct DataSection: Codable, Equatable, Sendable {
    /// The dataset name: `fashion-mnist`, `rotten-tomatoes`, `npy` for your own arrays or
    /// `text-csv` for your own `label,text` files.
    public var dataset = "fashion-mnist"
    /// For `npy`: the training features, float32 or uint8, shaped [N, ...sample shape].
    public var trainFeatures = ""
    /// For `npy`: the training labels, int64 or uint8, shaped [N].
    public var trainLabels = ""
    /// For `npy`: the test features (optional).
    public var testFeatures = ""
    /// For `npy`: the test labels (optional).
    public var testLabels = ""
    /// For `text-csv`: the training texts, a `label,text` CSV file (RFC 4180 quoting).
    public var trainTexts = ""
    /// For `text-csv`: the test texts, a `label,text` CSV file (optional).
    public var testTexts = ""
    /// For text datasets: the WordPiece vocabulary, a BERT `vocab.txt`.
    public var vocabulary = ""
    /// For text datasets: tokens per sample, [CLS] and [SEP] included; longer texts are cut.
    public var maxLength = 64
    /// Where the dataset files are; empty means the dataset's default location.
    public var directory = ""
    /// Use only the first N training samples (0 means all).
    public var trainLimit = 0
    /// Use only the first N test samples (0 means all).
    public var testLimit = 0
    /// Use only the first N training samples of each class, in file order (0 means all): a class-balanced
    /// subset. Cannot be combined with `train_limit`.
    public var trainPerClass = 0
    /// Keep only samples of these classes in every split, labels unchanged (empty keeps all): for
    /// training a backbone on some classes and holding the others out (`thaw fewshot`).
    public var classes: [Int] = []
    /// Samples held out of the training set for validation (taken from its end).
    public var validationSize = 0
    /// Resize images to this height and width on the fly (0 keeps the dataset's size).
    public var imageSize = 0
    /// `dataset` (the dataset's own statistics) or `imagenet` (3 channels, torchvision's ImageNet
    /// statistics, as pretrained backbones expect; grayscale is repeated).
    public var normalization = "dataset"
    /// Training augmentation: pad each image by this many pixels (repeating the border) and crop a
    /// random window of the original size back out (0 = off). Keyed by (seed, epoch, sample).
    public var cropPadding = 0
    /// Training augmentation: flip each image left-right with probability ½.
    public var horizontalFlip = false
    /// Domain adaptation: the target-domain dataset (`uci-digits`, …). Its test split is the test set;
    /// with `model.domain_adaptation` its training images (never their labels) train too. Empty = none.
    public var target = ""
    /// Where the target dataset's files are; empty means its default location.
    public var targetDirectory = ""

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cropPadding = "crop_padding"
        case horizontalFlip = "horizontal_flip"
        case target
        case targetDirectory = "target_directory"
        case dataset, directory
        case trainFeatures = "train_features"
        case trainLabels = "train_labels"
        case testFeatures = "test_features"
        case testLabels = "test_labels"
        case trainTexts = "train_texts"
        case testTexts = "test_texts"
        case vocabulary
        case maxLength = "max_length"
        case trainLimit = "train_limit"
        case testLimit = "test_limit"
        case trainPerClass = "train_per_class"
        case classes
        case validationSize = "validation_size"
        case imageSize = "image_size"
        case normalization
    }

    /// The datasets of texts, which `vocabulary` and `max_length` apply to.
    public static let textDatasets = ["rotten-tomatoes", "text-csv"]

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dataset = try c.decodeIfPresent(String.self, forKey: .dataset) ?? dataset
        directory = try c.decodeIfPresent(String.self, forKey: .directory) ?? directory
        trainFeatures = try c.decodeIfPresent(String.self, forKey: .trainFeatures) ?? trainFeatures
        trainLabels = try c.decodeIfPresent(String.self, forKey: .trainLabels) ?? trainLabels
        testFeatures = try c.decodeIfPresent(String.self, forKey: .testFeatures) ?? testFeatures
        testLabels = try c.decodeIfPresent(String.self, forKey: .testLabels) ?? testLabels
        trainTexts = try c.decodeIfPresent(String.self, forKey: .trainTexts) ?? trainTexts
        testTexts = try c.decodeIfPresent(String.self, forKey: .testTexts) ?? testTexts
        vocabulary = try c.decodeIfPresent(String.self, forKey: .vocabulary) ?? vocabulary
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? maxLength
        trainLimit = try c.decodeIfPresent(Int.self, forKey: .trainLimit) ?? trainLimit
        testLimit = try c.decodeIfPresent(Int.self, forKey: .testLimit) ?? testLimit
        trainPerClass = try c.decodeIfPresent(Int.self, forKey: .trainPerClass) ?? trainPerClass
        classes = try c.decodeIfPresent([Int].self, forKey: .classes) ?? classes
        validationSize = try c.decodeIfPresent(Int.self, forKey: .validationSize) ?? validationSize
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? imageSize
        normalization = try c.decodeIfPresent(String.self, forKey: .normalization) ?? normalization
        cropPadding = try c.decodeIfPresent(Int.self, forKey: .cropPadding) ?? cropPadding
        horizontalFlip = try c.decodeIfPresent(Bool.self, forKey: .horizontalFlip) ?? horizontalFlip
        target = try c.decodeIfPresent(String.self, forKey: .target) ?? target
        targetDirectory = try c.decodeIfPresent(String.self, forKey: .targetDirectory) ?? targetDirectory
    }
}

/// How gradients are exchanged between ranks.
public enum ExchangeMode: String, Codable, Sendable, CaseIterable {
    /// One blocking all-reduce of the trainable range after backward: the reference path.
    case plain
    /// Non-blocking all-reduces of buckets started during backward, from the head down.
    case bucketed
}

/// Epochs, batches and gradient handling.
public struct TrainingSection: Codable, Equatable, Sendable {
    /// Passes over the training data.
    public var epochs = 3
    /// The global batch size: samples per optimizer step summed over all ranks.
    public var batchSize = 64
    /// Micro-batches per step; gradients accumulate and are exchanged once per step.
    public var accumulationSteps = 1
    /// Label smoothing ε for the cross-entropy.
    public var labelSmoothing: Float = 0
    /// Clip gradients to this global norm (0 turns clipping off).
    public var gradientClipNorm: Float = 0
    /// Stop as diverged when a step's loss exceeds this many times the run's first step's loss
    /// (0 = stop only when it is not finite).
    public var divergenceFactor: Double = 1e4
    /// How gradients are exchanged.
    public var exchange: ExchangeMode = .bucketed
    /// Target bucket size for the bucketed exchange, in megabytes.
    public var bucketSizeMegabytes: Double = 4
    /// OpenBLAS threads per rank; 0 = the host's cores ÷ the ranks on that host (at least 1).
    public var blasThreads = 0
    /// Evaluate on the test set after every epoch (otherwise only at the end).
    public var evaluateEveryEpoch = true
    /// Stop when the validation metric stops improving (off unless `patience` > 0).
    public var earlyStopping = EarlyStoppingSection()
    /// The frozen-prefix activation cache.
    public var featureCache = FeatureCacheSection()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case epochs, exchange
        case batchSize = "batch_size"
        case accumulationSteps = "accumulation_steps"
        case labelSmoothing = "label_smoothing"
        case gradientClipNorm = "gradient_clip_norm"
        case divergenceFactor = "divergence_factor"
        case bucketSizeMegabytes = "bucket_size_mb"
        case blasThreads = "blas_threads"
        case evaluateEveryEpoch = "evaluate_every_epoch"
        case earlyStopping = "early_stopping"
        case featureCache = "feature_cache"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? epochs
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? batchSize
        accumulationSteps = try c.decodeIfPresent(Int.self, forKey: .accumulationSteps) ?? accumulationSteps
        labelSmoothing = try c.decodeIfPresent(Float.self, forKey: .labelSmoothing) ?? labelSmoothing
        gradientClipNorm = try c.decodeIfPresent(Float.self, forKey: .gradientClipNorm) ?? gradientClipNorm
        divergenceFactor = try c.decodeIfPresent(Double.self, forKey: .divergenceFactor) ?? divergenceFactor
        exchange = try decodeEnum(c, .exchange) ?? exchange
        bucketSizeMegabytes = try c.decodeIfPresent(Double.self, forKey: .bucketSizeMegabytes) ?? bucketSizeMegabytes
        blasThreads = try c.decodeIfPresent(Int.self, forKey: .blasThreads) ?? blasThreads
        evaluateEveryEpoch = try c.decodeIfPresent(Bool.self, forKey: .evaluateEveryEpoch) ?? evaluateEveryEpoch
        earlyStopping = try c.decodeIfPresent(EarlyStoppingSection.self, forKey: .earlyStopping) ?? earlyStopping
        featureCache = try c.decodeIfPresent(FeatureCacheSection.self, forKey: .featureCache) ?? featureCache
    }
}

/// Early stopping: end training once the validation metric has not improved for `patience` epochs,
/// but never while the unfreezing schedule still has groups to thaw.
public struct EarlyStoppingSection: Codable, Equatable, Sendable {
    /// Epochs without improvement before stopping (0 = off).
    public var patience = 0
    /// The metric watched.
    public var metric: EarlyStoppingMetric = .validationLoss
    /// The smallest change that counts as an improvement.
    public var minimumDelta: Double = 0
    /// Whether to put back the weights of the best epoch before the final test evaluation and export.
    public var restoreBest = true

    enum CodingKeys: String, CodingKey, CaseIterable {
        case patience, metric
        case minimumDelta = "min_delta"
        case restoreBest = "restore_best"
    }

    /// The defaults (off).
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        patience = try c.decodeIfPresent(Int.self, forKey: .patience) ?? patience
        metric = try decodeEnum(c, .metric) ?? metric
        minimumDelta = try c.decodeIfPresent(Double.self, forKey: .minimumDelta) ?? minimumDelta
        restoreBest = try c.decodeIfPresent(Bool.self, forKey: .restoreBest) ?? restoreBest
    }
}

/// The frozen-prefix activation cache (FeatureCache.swift).
public struct FeatureCacheSection: Codable, Equatable, Sendable {
    /// Whether to compute the frozen groups' output once and reuse it while the boundary stays put.
    public var enabled = true
    /// Memory the caches of one rank may hold, in megabytes; beyond it they go to a file in the run directory.
    public var memoryMegabytes: Double = 2048

    enum CodingKeys: String, CodingKey, CaseIterable {
        case enabled
        case memoryMegabytes = "memory_mb"
    }

    /// The defaults (on, 2 GB).
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? enabled
        memoryMegabytes = try c.decodeIfPresent(Double.self, forKey: .memoryMegabytes) ?? memoryMegabytes
    }
}

/// The optimizer kind.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// Stochastic gradient descent with optional momentum and Nesterov.
    case sgd
    /// Adam with decoupled weight decay.
    case adamw
}

/// The optimizer.
public struct OptimizerSection: Codable, Equatable, Sendable {
    /// The update rule.
    public var kind: OptimizerKind = .adamw
    /// The head's learning rate; lower groups get it divided by the discriminative factor.
    public var learningRate: Float = 1e-3
    /// Weight decay (decoupled for AdamW, L2 for SGD).
    public var weightDecay: Float = 0
    /// SGD momentum.
    public var momentum: Float = 0.9
    /// SGD Nesterov momentum.
    public var nesterov = false
    /// AdamW β1.
    public var beta1: Float = 0.9
    /// AdamW β2.
    public var beta2: Float = 0.999
    /// AdamW ε.
    public var epsilon: Float = 1e-8

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, momentum, nesterov, beta1, beta2, epsilon
        case learningRate = "learning_rate"
        case weightDecay = "weight_decay"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try decodeEnum(c, .kind) ?? kind
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? learningRate
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? weightDecay
        momentum = try c.decodeIfPresent(Float.self, forKey: .momentum) ?? momentum
        nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? nesterov
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? beta1
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? beta2
        epsilon = try c.decodeIfPresent(Float.self, forKey: .epsilon) ?? epsilon
    }
}

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
public struct ScheduleSection: Codable, Equatable, Sendable {
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

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, ratio
        case warmupSteps = "warmup_steps"
        case finalFraction = "final_fraction"
        case peakFraction = "peak_fraction"
    }

    /// The defaults.
    public init() {}

    /// Decodes the section, rejecting unknown keys.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try decodeEnum(c, .kind) ?? kind
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? warmupSteps
        finalFraction = try c.decodeIfPresent(Float.self, forKey: .finalFraction) ?? finalFraction
        peakFraction = try c.decodeIfPresent(Float.self, forKey: .peakFraction) ?? peakFraction
        ratio = try c.decodeIfPresent(Float.self, forKey: .ratio) ?? ratio
    }
}

