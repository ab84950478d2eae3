// OptimizerSection: the `optimizer` section: the update rule and its hyperparameters.
import ThawPlan

/// The optimizer kind.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// Stochastic gradient descent with optional momentum and Nesterov.
    case sgd
    /// Adam with decoupled weight decay.
    case adamw
}

/// The optimizer.
public struct OptimizerSection: ConfigSection {
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

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<OptimizerSection>] {
        [.init("kind", choice: \.kind), .init("learning_rate", \.learningRate), .init("weight_decay", \.weightDecay),
         .init("momentum", \.momentum), .init("nesterov", \.nesterov), .init("beta1", \.beta1), .init("beta2", \.beta2),
         .init("epsilon", \.epsilon)]
    }

    /// The ranges `Optimizer.init` enforces, checked first so that the message has the key.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.number(learningRate, "\(keyPath).learning_rate", .positive(upTo: ConfigLimits.rate))
        try check.number(weightDecay, "\(keyPath).weight_decay", .nonNegative(upTo: ConfigLimits.rate))
        try check.number(momentum, "\(keyPath).momentum", .probability)
        try check.require(kind != .sgd || !nesterov || momentum > 0, "\(keyPath).nesterov",
                          "Nesterov momentum needs optimizer.momentum > 0, got \(momentum)")
        try check.number(beta1, "\(keyPath).beta1", .probability)
        try check.number(beta2, "\(keyPath).beta2", .probability)
        try check.number(epsilon, "\(keyPath).epsilon", .nonNegative(upTo: 1))
    }
}
