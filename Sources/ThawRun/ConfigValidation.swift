// ConfigValidation: the range of every numeric key, and the combinations decoding cannot check.
//
// The bounds are wide enough never to refuse a real run and tight enough that nothing downstream
// multiplies its way into an overflow, or into an allocation no machine has: counts and widths are
// at most 2^20, images at most 4096 pixels a side, epochs at most 100,000, and every float must be
// finite (an infinite rate used to reach an encoder as raw `EncodingError` text). Whether a run's
// sizes fit in memory together is the memory estimate's question (MemoryEstimate.swift).
// Every message names the key path, the expected range and the value that was given.
import ThawTrainer
import ThawPlan

/// The largest values the size keys accept (see ``TrainingConfig/validate(file:)``).
public enum ConfigLimits {
    /// `training.batch_size`: samples per step over all ranks.
    public static let batchSize = 1 << 20
    /// `model.classes` and every index in `data.classes`.
    public static let classes = 1 << 20
    /// `data.image_size` and `data.crop_padding`, in pixels.
    public static let imageSize = 4096
    /// `training.epochs`, and epoch counts such as patience and checkpoint intervals.
    public static let epochs = 100_000
    /// Layer widths: `model.head_hidden`, `model.domain_adaptation.domain_hidden`.
    public static let width = 1 << 16
    /// `data.max_length`, in tokens.
    public static let tokens = 1 << 16
    /// Step counts: warmup steps.
    public static let steps = 1_000_000_000
    /// `training.blas_threads`.
    public static let threads = 1024
    /// Sizes in megabytes: buckets and the feature cache (16 TB).
    public static let megabytes: Double = 16 * 1_048_576
    /// `optimizer.learning_rate` and `optimizer.weight_decay`.
    public static let rate: Double = 1000
    /// Factors and coefficients: the discriminative factor, the slanted-triangular ratio, DANN's γ and λ_max.
    public static let factor: Double = 1_000_000
    /// Characters in a path or a name.
    public static let pathLength = 4096
}

extension TrainingConfig {
    /// Checks every value's range and the combinations that decoding cannot.
    /// - Parameter file: The configuration file, for messages.
    /// - Throws: ``ConfigError`` naming the file, the key path, the expected range and the value.
    public func validate(file: String = "<config>") throws(ConfigError) {
        let check = RangeCheck(file: file)
        try validateRunAndModel(check)
        try validateData(check)
        try validateTraining(check)
        try validateOptimizerAndSchedule(check)
        try validateUnfreezingAndCheckpoints(check)
    }

    private func validateRunAndModel(_ check: RangeCheck) throws(ConfigError) {
        try check.require(!run.name.isEmpty, "run.name", "expected a non-empty name")
        try check.require(!run.output.isEmpty, "run.output", "expected a directory path")
        for (key, value) in [("run.name", run.name), ("run.output", run.output), ("model.pretrained", model.pretrained),
                             ("model.bert_config", model.bertConfig), ("control.token_file", control.tokenFile),
                             ("coordinator.secret_file", coordinator.secretFile),
                             ("coordinator.curve_public_key_file", coordinator.curvePublicKeyFile),
                             ("coordinator.curve_secret_key_file", coordinator.curveSecretKeyFile)] {
            try check.text(value, key)
        }
        try check.integer(model.classes, "model.classes", 2...ConfigLimits.classes)
        try check.integer(model.headHidden, "model.head_hidden", 0...ConfigLimits.width, note: "0 means a linear head")
        try check.number(model.headDropout, "model.head_dropout", .probability)
        // The mlp has no dropout layer (so that data-parallel runs match one process exactly): refuse
        // the key rather than ignore it.
        try check.require(model.architecture != "mlp" || model.headDropout == 0, "model.head_dropout",
                          "the mlp architecture has no dropout (data-parallel runs match one process exactly); "
                          + "leave it at 0 or choose an architecture with a dropout head, got \(model.headDropout)")
        if let adaptation = model.domainAdaptation {
            try check.require(!data.target.isEmpty, "data.target", "model.domain_adaptation needs a target dataset (for example uci-digits)")
            try check.number(adaptation.lambdaGamma, "model.domain_adaptation.lambda_gamma", .nonNegative(upTo: ConfigLimits.factor))
            try check.number(adaptation.lambdaMax, "model.domain_adaptation.lambda_max", .nonNegative(upTo: ConfigLimits.factor))
            try check.integer(adaptation.domainHidden, "model.domain_adaptation.domain_hidden", 1...ConfigLimits.width)
        }
    }

    private func validateData(_ check: RangeCheck) throws(ConfigError) {
        for (key, value) in [("data.dataset", data.dataset), ("data.directory", data.directory), ("data.train_features", data.trainFeatures),
                             ("data.train_labels", data.trainLabels), ("data.test_features", data.testFeatures),
                             ("data.test_labels", data.testLabels), ("data.train_texts", data.trainTexts), ("data.test_texts", data.testTexts),
                             ("data.vocabulary", data.vocabulary), ("data.target", data.target), ("data.target_directory", data.targetDirectory)] {
            try check.text(value, key)
        }
        try check.integer(data.trainLimit, "data.train_limit", 0...Int.max, note: "0 means all")
        try check.integer(data.testLimit, "data.test_limit", 0...Int.max, note: "0 means all")
        try check.integer(data.trainPerClass, "data.train_per_class", 0...Int.max, note: "0 means all")
        try check.require(data.classes.count <= ConfigLimits.classes && data.classes.allSatisfy { (0..<ConfigLimits.classes).contains($0) }
                          && Set(data.classes).count == data.classes.count, "data.classes",
                          "expected distinct class indices in 0..<\(ConfigLimits.classes), got \(String(describing: data.classes).prefix(200))")
        try check.require(data.trainPerClass == 0 || data.trainLimit == 0, "data.train_per_class",
                          "choose one of data.train_limit (the first N samples) and data.train_per_class (the first N of each class)")
        try check.integer(data.validationSize, "data.validation_size", 0...Int.max)
        try check.integer(data.imageSize, "data.image_size", 0...ConfigLimits.imageSize, note: "0 keeps the dataset's size")
        try check.integer(data.cropPadding, "data.crop_padding", 0...ConfigLimits.imageSize, note: "0 turns the random crop off")
        try check.require(["dataset", "imagenet"].contains(data.normalization), "data.normalization",
                          "expected dataset or imagenet, got '\(data.normalization.prefix(200))'")
        try check.integer(data.maxLength, "data.max_length", 2...ConfigLimits.tokens, note: "room for [CLS] and [SEP]")
        if DataSection.textDatasets.contains(data.dataset) {
            try check.require(!data.vocabulary.isEmpty, "data.vocabulary", "the \(data.dataset) dataset needs a WordPiece vocabulary (a BERT vocab.txt)")
            try check.require(data.imageSize == 0, "data.image_size", "applies to images; \(data.dataset) holds texts")
            try check.require(data.normalization == "dataset", "data.normalization", "applies to images; \(data.dataset) holds texts")
        }
        if data.dataset == "rotten-tomatoes" {
            try check.require(data.validationSize == 0, "data.validation_size", "rotten-tomatoes has a fixed validation split; leave this at 0")
            try check.require(data.trainPerClass == 0 && data.classes.isEmpty, data.classes.isEmpty ? "data.train_per_class" : "data.classes",
                              "rotten-tomatoes has fixed splits; use data.train_limit")
        }
        if data.dataset == "text-csv" {
            try check.require(!data.trainTexts.isEmpty, "data.train_texts", "the text-csv dataset needs a label,text training file")
        }
        if !data.target.isEmpty {
            try check.require(DatasetCatalog.imageDatasets.contains(data.target), "data.target",
                              "expected one of \(DatasetCatalog.imageDatasets.joined(separator: ", ")), got '\(data.target)'")
            try check.require(DatasetCatalog.imageDatasets.contains(data.dataset), "data.dataset",
                              "with data.target the source must be one of \(DatasetCatalog.imageDatasets.joined(separator: ", "))")
        }
    }

    private func validateTraining(_ check: RangeCheck) throws(ConfigError) {
        try check.integer(training.epochs, "training.epochs", 1...ConfigLimits.epochs)
        try check.integer(training.batchSize, "training.batch_size", 1...ConfigLimits.batchSize)
        try check.integer(training.accumulationSteps, "training.accumulation_steps", 1...ConfigLimits.batchSize)
        try check.require(training.batchSize % training.accumulationSteps == 0, "training.accumulation_steps",
                          "must divide training.batch_size (\(training.batchSize)); got \(training.accumulationSteps)")
        try check.number(training.labelSmoothing, "training.label_smoothing", .probability)
        try check.number(training.gradientClipNorm, "training.gradient_clip_norm", .nonNegative(upTo: .greatestFiniteMagnitude),
                         note: "0 turns clipping off")
        try check.require(training.divergenceFactor == 0 || (training.divergenceFactor > 1 && training.divergenceFactor.isFinite),
                          "training.divergence_factor",
                          "expected 0 (stop only on a non-finite loss) or a finite number > 1, got \(training.divergenceFactor)")
        try check.number(training.bucketSizeMegabytes, "training.bucket_size_mb", .positive(upTo: ConfigLimits.megabytes))
        try check.number(training.featureCache.memoryMegabytes, "training.feature_cache.memory_mb", .nonNegative(upTo: ConfigLimits.megabytes),
                         note: "0 puts every cache in a file")
        try check.integer(training.blasThreads, "training.blas_threads", 0...ConfigLimits.threads, note: "0 = cores ÷ ranks on the host")
        try check.integer(training.earlyStopping.patience, "training.early_stopping.patience", 0...ConfigLimits.epochs,
                          note: "0 turns early stopping off")
        try check.number(training.earlyStopping.minimumDelta, "training.early_stopping.min_delta", .nonNegative(upTo: .greatestFiniteMagnitude))
    }

    private func validateOptimizerAndSchedule(_ check: RangeCheck) throws(ConfigError) {
        // The same ranges the optimizer enforces (Optimizer.init), checked first so that the message has the key.
        try check.number(optimizer.learningRate, "optimizer.learning_rate", .positive(upTo: ConfigLimits.rate))
        try check.number(optimizer.weightDecay, "optimizer.weight_decay", .nonNegative(upTo: ConfigLimits.rate))
        try check.number(optimizer.momentum, "optimizer.momentum", .probability)
        try check.require(optimizer.kind != .sgd || !optimizer.nesterov || optimizer.momentum > 0, "optimizer.nesterov",
                          "Nesterov momentum needs optimizer.momentum > 0, got \(optimizer.momentum)")
        try check.number(optimizer.beta1, "optimizer.beta1", .probability)
        try check.number(optimizer.beta2, "optimizer.beta2", .probability)
        try check.number(optimizer.epsilon, "optimizer.epsilon", .nonNegative(upTo: 1))
        // The same ranges LearningRateSchedule.validate enforces, with the keys.
        try check.integer(schedule.warmupSteps, "schedule.warmup_steps", 0...ConfigLimits.steps)
        try check.number(schedule.finalFraction, "schedule.final_fraction", .unitInterval)
        try check.number(schedule.peakFraction, "schedule.peak_fraction", .openUnitInterval)
        try check.number(schedule.ratio, "schedule.ratio", .atLeastOne(upTo: ConfigLimits.factor))
    }

    private func validateUnfreezingAndCheckpoints(_ check: RangeCheck) throws(ConfigError) {
        try check.number(unfreezing.discriminativeFactor, "unfreezing.discriminative_factor", .atLeastOne(upTo: ConfigLimits.factor),
                         note: "1 turns discriminative rates off")
        try check.integer(unfreezing.initialGroups, "unfreezing.initial_groups", 1...ConfigLimits.width)
        try check.integer(unfreezing.every, "unfreezing.every", 1...ConfigLimits.epochs)
        try check.integer(unfreezing.patience, "unfreezing.patience", 1...ConfigLimits.epochs)
        try check.number(unfreezing.delta, "unfreezing.delta", .nonNegative(upTo: .greatestFiniteMagnitude))
        try check.integer(unfreezing.warmupSteps, "unfreezing.warmup_steps", 0...ConfigLimits.steps)
        // The table's shape; which groups it may name is known once the model is (UnfreezingPlanner).
        for (epoch, groups) in unfreezing.table.sorted(by: { $0.key < $1.key }) {
            let key = "unfreezing.table.\(epoch.prefix(64))"
            try check.require(Int(epoch).map { (0..<ConfigLimits.epochs).contains($0) } ?? false, key,
                              "expected an epoch number in 0..<\(ConfigLimits.epochs) as the key")
            try check.require(!groups.isEmpty && groups.count <= ConfigLimits.width, key, "expected a non-empty list of group names")
        }
        if unfreezing.policy == .fixed {
            try check.require(unfreezing.table["0"] != nil, "unfreezing.table", "the fixed policy needs an entry for epoch 0")
        }
        try check.integer(checkpoint.everyEpochs, "checkpoint.every_epochs", 0...ConfigLimits.epochs, note: "0 turns checkpoints off")
        try check.integer(checkpoint.keepLast, "checkpoint.keep_last", 1...ConfigLimits.epochs)
    }
}

/// An interval a floating-point key must lie in; every interval excludes infinities and NaN.
struct NumberRange {
    var lower: Double
    var lowerIncluded: Bool
    var upper: Double
    var upperIncluded: Bool

    /// [0, 1): probabilities, smoothing, momentum and β.
    static let probability = NumberRange(lower: 0, lowerIncluded: true, upper: 1, upperIncluded: false)
    /// [0, 1].
    static let unitInterval = NumberRange(lower: 0, lowerIncluded: true, upper: 1, upperIncluded: true)
    /// (0, 1).
    static let openUnitInterval = NumberRange(lower: 0, lowerIncluded: false, upper: 1, upperIncluded: false)
    /// [0, upper].
    static func nonNegative(upTo upper: Double) -> NumberRange { NumberRange(lower: 0, lowerIncluded: true, upper: upper, upperIncluded: true) }
    /// (0, upper].
    static func positive(upTo upper: Double) -> NumberRange { NumberRange(lower: 0, lowerIncluded: false, upper: upper, upperIncluded: true) }
    /// [1, upper].
    static func atLeastOne(upTo upper: Double) -> NumberRange { NumberRange(lower: 1, lowerIncluded: true, upper: upper, upperIncluded: true) }

    func contains(_ value: Double) -> Bool {
        value.isFinite && (lowerIncluded ? value >= lower : value > lower) && (upperIncluded ? value <= upper : value < upper)
    }

    /// `a finite number ≥ 0`, or `a number in [0, 1)`.
    var description: String {
        if upper == .greatestFiniteMagnitude { return "a finite number \(lowerIncluded ? "≥" : ">") \(format(lower))" }
        return "a number in \(lowerIncluded ? "[" : "(")\(format(lower)), \(format(upper))\(upperIncluded ? "]" : ")")"
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
    }
}

/// The checks of one validation, all naming `file`.
struct RangeCheck {
    let file: String

    func require(_ condition: Bool, _ key: String, _ message: String) throws(ConfigError) {
        if !condition { throw ConfigError(file: file, key: key, message: message) }
    }

    func integer(_ value: Int, _ key: String, _ range: ClosedRange<Int>, note: String = "") throws(ConfigError) {
        let expected = range.upperBound == Int.max ? "an integer ≥ \(range.lowerBound)" : "an integer in \(range.lowerBound)...\(range.upperBound)"
        try require(range.contains(value), key, "expected \(expected)\(note.isEmpty ? "" : " (\(note))"), got \(value)")
    }

    func number<Value: BinaryFloatingPoint>(_ value: Value, _ key: String, _ range: NumberRange, note: String = "") throws(ConfigError) {
        try require(range.contains(Double(value)), key, "expected \(range.description)\(note.isEmpty ? "" : " (\(note))"), got \(value)")
    }

    func text(_ value: String, _ key: String) throws(ConfigError) {
        try require(value.utf8.count <= ConfigLimits.pathLength && !value.utf8.contains(0), key,
                    "expected at most \(ConfigLimits.pathLength) bytes without NUL characters, got \(value.utf8.count) bytes")
    }
}
