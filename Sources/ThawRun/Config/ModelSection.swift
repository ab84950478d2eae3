// ModelSection: the `model` section: the architecture, the new head, pretrained weights, and
// optional domain-adversarial training and adapters.
import ThawNN
import ThawPlan

/// The network.
public struct ModelSection: ConfigSection {
    /// The architecture name; `thaw models` lists them (ModelZoo's `Architecture` descriptors).
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
    /// Parameter-efficient fine-tuning (LoRA, BitFit); nil (the default) trains whole groups.
    public var adapters: AdapterSection?

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<ModelSection>] {
        [.init("architecture", \.architecture), .init("classes", \.classes), .init("frozen_batch_norm", choice: \.frozenBatchNorm),
         .init("head_dropout", \.headDropout), .init("pretrained", \.pretrained), .init("strict_load", \.strictLoad),
         .init("bert_config", \.bertConfig), .init("pooling", choice: \.pooling), .init("head_hidden", \.headHidden),
         .init("domain_adaptation", optional: \.domainAdaptation), .init("adapters", optional: \.adapters)]
    }

    /// Known architecture, class count, widths and rates in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.require(Architecture.named(architecture) != nil, "\(keyPath).architecture",
                          "unknown value '\(architecture.prefix(200))'; expected one of \(Architecture.all.map(\.name).joined(separator: ", "))")
        for (key, value) in [("pretrained", pretrained), ("bert_config", bertConfig)] { try check.text(value, "\(keyPath).\(key)") }
        try check.integer(classes, "\(keyPath).classes", 2...ConfigLimits.classes)
        try check.integer(headHidden, "\(keyPath).head_hidden", 0...ConfigLimits.width, note: "0 means a linear head")
        try check.number(headDropout, "\(keyPath).head_dropout", .probability)
        // The mlp has no dropout layer (so that data-parallel runs match one process exactly): refuse
        // the key rather than ignore it.
        try check.require(Architecture.named(architecture)?.hasDropoutHead ?? true || headDropout == 0, "\(keyPath).head_dropout",
                          "the \(architecture) architecture has no dropout (data-parallel runs match one process exactly); "
                          + "leave it at 0 or choose an architecture with a dropout head, got \(headDropout)")
        try domainAdaptation?.validate(keyPath: "\(keyPath).domain_adaptation", check: check)
        try adapters?.validate(keyPath: "\(keyPath).adapters", check: check)
    }
}

/// Domain-adversarial training (DANN): a domain classifier behind gradient reversal on the head's input.
public struct DomainAdaptationSection: ConfigSection {
    /// γ of the λ schedule λ_p = λ_max · (2 / (1 + exp(−γ·p)) − 1), p the fraction of training done.
    public var lambdaGamma: Double = 10
    /// λ_max: the gradient-reversal coefficient λ approaches at the end of training.
    public var lambdaMax: Double = 1
    /// The width of the domain classifier's hidden layer.
    public var domainHidden = 100

    /// The defaults (the DANN paper's γ = 10, λ_max = 1, hidden width 100).
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<DomainAdaptationSection>] {
        [.init("lambda_gamma", \.lambdaGamma), .init("lambda_max", \.lambdaMax), .init("domain_hidden", \.domainHidden)]
    }

    /// The schedule's coefficients and the hidden width in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.number(lambdaGamma, "\(keyPath).lambda_gamma", .nonNegative(upTo: ConfigLimits.factor))
        try check.number(lambdaMax, "\(keyPath).lambda_max", .nonNegative(upTo: ConfigLimits.factor))
        try check.integer(domainHidden, "\(keyPath).domain_hidden", 1...ConfigLimits.width)
    }
}
