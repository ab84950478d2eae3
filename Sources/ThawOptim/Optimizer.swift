// Optimizer: SGD (momentum, Nesterov, dampening) and AdamW over the flat parameter and
// gradient buffers, with state in flat buffers parallel to the parameters.
//
// As in micrograd and tinygrad, the optimizers differ only in their update step: one
// `Optimizer` class holds an `UpdateRule`, and a step is one loop per trainable group over
// that group's contiguous range (see "Note: gradient layout" in ThawNN/Parameters.swift).
//
// Note: optimizer state lifetime. State (momentum, moments, the per-group step count) is
// allocated once for every parameter but is *live* only for groups that went through
// `initializeState(forNewlyTrainableGroups:)`. A group's state stops being live as soon as a
// step leaves that group out (it was frozen). Stepping a group whose state is not live is a
// programmer error. So a group that is thawed, frozen and thawed again can never resume
// from stale moments, and a newly thawed group never starts from state it never had.

import ThawKernels
import ThawNN

/// How an ``Optimizer`` turns a gradient into a parameter update, with its hyperparameters.
///
/// Formulas are PyTorch's (`torch.optim.SGD`, `torch.optim.AdamW`, single-tensor path),
/// written out on ``Optimizer/step(store:groups:learningRates:)``.
public enum UpdateRule: Sendable, Equatable, Codable {
    /// Stochastic gradient descent. `momentum` 0 is plain SGD; `nesterov` needs `momentum` > 0
    /// and `dampening` 0, as in PyTorch.
    case sgd(momentum: Double, nesterov: Bool, dampening: Double = 0)
    /// Adam with decoupled weight decay.
    case adamW(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8)

    /// The names of the state buffers this rule keeps, PyTorch's names for them.
    public var stateNames: [String] {
        switch self {
        case .sgd(let momentum, _, _): return momentum == 0 ? [] : ["momentum_buffer"]
        case .adamW: return ["exp_avg", "exp_avg_sq"]
        }
    }
}

/// A hyperparameter or a restored state that an ``Optimizer`` cannot accept.
public enum OptimizerError: Error, CustomStringConvertible, Equatable {
    /// A hyperparameter outside its valid range.
    case invalidHyperparameter(name: String, value: Double, expected: String)
    /// Restored state whose size does not match this optimizer.
    case stateSizeMismatch(what: String, expected: Int, got: Int)
    /// A restored step count below zero.
    case negativeStepCount(group: Int, value: Int)

    /// A one-line explanation naming the value.
    public var description: String {
        switch self {
        case .invalidHyperparameter(let name, let value, let expected):
            return "optimizer \(name) = \(value) is invalid: expected \(expected)"
        case .stateSizeMismatch(let what, let expected, let got):
            return "optimizer state '\(what)' has \(got) entries, expected \(expected)"
        case .negativeStepCount(let group, let value):
            return "optimizer step count of group \(group) is \(value), expected ≥ 0"
        }
    }
}

/// SGD or AdamW over one model's flat buffers, with per-group learning rates and per-group state.
///
/// Typical use, in the training loop:
/// ```swift
/// let optimizer = try Optimizer(rule: .adamW(), weightDecay: 0.01, store: model.store)
/// optimizer.initializeState(forNewlyTrainableGroups: model.firstTrainableGroup..<model.parameterGroups.count, store: model.store)
/// // each step, after the all-reduce:
/// optimizer.step(store: model.store, groups: model.firstTrainableGroup..<model.parameterGroups.count, learningRates: rates)
/// ```
public final class Optimizer {
    /// The update rule and its hyperparameters.
    public let rule: UpdateRule
    /// Weight decay: decoupled (`p -= lr·wd·p`) for AdamW, L2 added to the gradient for SGD.
    public let weightDecay: Double
    /// The number of parameters the state buffers cover (the whole flat buffer).
    public let parameterCount: Int
    /// The number of parameter groups.
    public let groupCount: Int
    /// SGD's momentum buffer or AdamW's first moment (`exp_avg`); empty for SGD without momentum.
    /// Laid out like the parameters.
    public let firstMoment: UnsafeMutableBufferPointer<Float>
    /// AdamW's second moment (`exp_avg_sq`); empty for SGD. Laid out like the parameters.
    public let secondMoment: UnsafeMutableBufferPointer<Float>
    /// Steps each group has taken since its state was initialized, that is since it was thawed.
    /// AdamW's bias correction uses it; so can a per-group warmup.
    public private(set) var stepCounts: [Int]
    /// Whether each group's state is live (see "Note: optimizer state lifetime").
    public private(set) var hasState: [Bool]

    /// Creates an optimizer with zeroed state for `parameterCount` parameters in `groupCount` groups.
    ///
    /// No group's state is live yet: call ``initializeState(forNewlyTrainableGroups:store:)`` for
    /// the initially trainable groups before the first step.
    /// - Throws: ``OptimizerError/invalidHyperparameter(name:value:expected:)`` for values PyTorch rejects.
    public init(rule: UpdateRule, weightDecay: Double = 0, parameterCount: Int, groupCount: Int) throws(OptimizerError) {
        precondition(parameterCount >= 0 && groupCount >= 0)
        guard weightDecay >= 0 else { throw .invalidHyperparameter(name: "weight_decay", value: weightDecay, expected: "≥ 0") }
        switch rule {
        case .sgd(let momentum, let nesterov, let dampening):
            guard momentum >= 0 else { throw .invalidHyperparameter(name: "momentum", value: momentum, expected: "≥ 0") }
            if nesterov && (momentum <= 0 || dampening != 0) {
                throw .invalidHyperparameter(name: "momentum", value: momentum, expected: "> 0 with dampening 0 for Nesterov momentum")
            }
        case .adamW(let beta1, let beta2, let epsilon):
            guard (0..<1).contains(beta1) else { throw .invalidHyperparameter(name: "beta1", value: beta1, expected: "in [0, 1)") }
            guard (0..<1).contains(beta2) else { throw .invalidHyperparameter(name: "beta2", value: beta2, expected: "in [0, 1)") }
            guard epsilon >= 0 else { throw .invalidHyperparameter(name: "epsilon", value: epsilon, expected: "≥ 0") }
        }
        self.rule = rule
        self.weightDecay = weightDecay
        self.parameterCount = parameterCount
        self.groupCount = groupCount
        let buffers = rule.stateNames.count
        // Zero pages that become resident only when a group's state is first written (see ZeroedMemory).
        firstMoment = ZeroedMemory.allocate(count: buffers >= 1 ? parameterCount : 0)
        secondMoment = ZeroedMemory.allocate(count: buffers >= 2 ? parameterCount : 0)
        stepCounts = Array(repeating: 0, count: groupCount)
        hasState = Array(repeating: false, count: groupCount)
    }

    /// Creates an optimizer sized for a parameter store.
    public convenience init(rule: UpdateRule, weightDecay: Double = 0, store: ParameterStore) throws(OptimizerError) {
        try self.init(rule: rule, weightDecay: weightDecay, parameterCount: store.parameterCount, groupCount: store.groupRanges.count)
    }

    deinit {
        ZeroedMemory.release(firstMoment)
        ZeroedMemory.release(secondMoment)
    }

    // MARK: - State of newly trainable groups

    /// Zeros the state of groups that just became trainable and restarts their step counts.
    ///
    /// This is a named step the trainer calls whenever it thaws groups (and once for the initial
    /// trainable set). Why: a newly thawed group has either no optimizer state or state left from
    /// an earlier period of training; neither may leak into its first updates. With zeroed moments
    /// and a step count of 0, AdamW's bias correction starts over exactly as for a fresh parameter
    /// (PyTorch's `add_param_group`), and SGD's first momentum step copies the gradient.
    /// - Parameters:
    ///   - groups: Indices of the groups to (re)initialize; calling it for a live group resets it.
    ///   - groupRanges: Each group's range in the flat buffers (`ParameterStore.groupRanges`).
    public func initializeState(forNewlyTrainableGroups groups: some Sequence<Int>, groupRanges: [Range<Int>]) {
        precondition(groupRanges.count == groupCount, "optimizer has \(groupCount) groups, got \(groupRanges.count) ranges")
        for group in groups {
            precondition(groupRanges.indices.contains(group), "group index \(group) out of 0..<\(groupCount)")
            let range = groupRanges[group]
            precondition(range.lowerBound >= 0 && range.upperBound <= parameterCount, "group range \(range) outside 0..<\(parameterCount)")
            for buffer in [firstMoment, secondMoment] where !buffer.isEmpty && !range.isEmpty {
                (buffer.baseAddress! + range.lowerBound).update(repeating: 0, count: range.count)
            }
            stepCounts[group] = 0
            hasState[group] = true
        }
    }

    /// Zeros the state of groups that just became trainable, with ranges from `store`.
    public func initializeState(forNewlyTrainableGroups groups: some Sequence<Int>, store: ParameterStore) {
        initializeState(forNewlyTrainableGroups: groups, groupRanges: store.groupRanges)
    }

    // MARK: - Step

    /// Updates the parameters of `groups` from their gradients, each group at its own learning rate.
    ///
    /// The formulas are PyTorch's, per element, with `g` the gradient, `λ` the weight decay,
    /// `lr` the group's rate and `t` the group's step count after this step:
    /// - SGD: `d = g + λ·p`; `b = d` on a group's first step, else `b = μ·b + (1−dampening)·d`;
    ///   `u = d + μ·b` (Nesterov) or `u = b`; `p -= lr·u`. Without momentum `p -= lr·d`.
    /// - AdamW: `p *= 1 − lr·λ`; `m += (1−β1)·(g − m)`; `v = β2·v + (1−β2)·g²`;
    ///   `p += −(lr / (1−β1ᵗ))·m / (√v / √(1−β2ᵗ) + ε)`.
    ///
    /// Gradients are only read. Groups outside `groups` are not touched, and their state stops
    /// being live (see "Note: optimizer state lifetime").
    /// - Parameters:
    ///   - parameters: The flat parameter buffer.
    ///   - gradients: The flat gradient buffer, laid out like `parameters`.
    ///   - groupRanges: Each group's range in the flat buffers.
    ///   - groups: The trainable groups (indices into `groupRanges`); each must have live state.
    ///   - learningRates: One rate per group, indexed by group (entries outside `groups` are ignored).
    public func step(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeBufferPointer<Float>,
                     groupRanges: [Range<Int>], groups: Range<Int>, learningRates: [Float]) {
        precondition(groupRanges.count == groupCount && learningRates.count == groupCount,
                     "optimizer has \(groupCount) groups; got \(groupRanges.count) ranges and \(learningRates.count) learning rates")
        precondition(parameters.count == parameterCount && gradients.count == parameterCount,
                     "optimizer covers \(parameterCount) parameters; buffers have \(parameters.count) and \(gradients.count)")
        precondition(groups.lowerBound >= 0 && groups.upperBound <= groupCount, "groups \(groups) outside 0..<\(groupCount)")
        for group in 0..<groupCount where !groups.contains(group) { hasState[group] = false }
        for group in groups {
            precondition(hasState[group], "group \(group) has no live optimizer state: call initializeState(forNewlyTrainableGroups:) when it is thawed")
            let range = groupRanges[group]
            stepCounts[group] += 1
            guard !range.isEmpty else { continue }
            let p = parameters.baseAddress! + range.lowerBound
            let g = gradients.baseAddress! + range.lowerBound
            let learningRate = Double(learningRates[group])
            switch rule {
            case .sgd(let momentum, let nesterov, let dampening):
                if momentum == 0 {
                    UpdateKernels.sgd(parameters: p, gradients: g, count: range.count, learningRate: learningRate, weightDecay: weightDecay)
                } else {
                    UpdateKernels.sgdMomentum(
                        parameters: p, momentumBuffer: firstMoment.baseAddress! + range.lowerBound, gradients: g, count: range.count,
                        learningRate: learningRate, weightDecay: weightDecay, momentum: momentum, dampening: dampening,
                        nesterov: nesterov, isFirstStep: stepCounts[group] == 1)
                }
            case .adamW(let beta1, let beta2, let epsilon):
                UpdateKernels.adamW(
                    parameters: p, firstMoment: firstMoment.baseAddress! + range.lowerBound,
                    secondMoment: secondMoment.baseAddress! + range.lowerBound, gradients: g, count: range.count,
                    learningRate: learningRate, weightDecay: weightDecay, beta1: beta1, beta2: beta2, epsilon: epsilon,
                    step: stepCounts[group])
            }
        }
    }

    /// Updates the parameters of `groups` in `store` from its gradient buffer.
    ///
    /// See ``step(parameters:gradients:groupRanges:groups:learningRates:)`` for the formulas.
    /// - Parameters:
    ///   - store: The model's parameter store.
    ///   - groups: The trainable groups (`model.firstTrainableGroup..<model.parameterGroups.count`).
    ///   - learningRates: One rate per group of the store, indexed by group.
    public func step(store: ParameterStore, groups: Range<Int>, learningRates: [Float]) {
        step(parameters: store.parameters, gradients: UnsafeBufferPointer(store.gradients),
             groupRanges: store.groupRanges, groups: groups, learningRates: learningRates)
    }

    // MARK: - Checkpoints

    /// The state buffers by PyTorch's names (`momentum_buffer`, or `exp_avg` and `exp_avg_sq`),
    /// each laid out like the parameters, for checkpoints to write and to read back in place.
    public var stateBuffers: [(name: String, values: UnsafeMutableBufferPointer<Float>)] {
        zip(rule.stateNames, [firstMoment, secondMoment]).map { (name: $0, values: $1) }
    }

    /// Restores the per-group step counts and liveness saved by a checkpoint.
    ///
    /// Restore the buffers of ``stateBuffers`` by copying into them.
    /// - Throws: ``OptimizerError/stateSizeMismatch(what:expected:got:)`` when the counts do not match the groups.
    public func restoreGroupState(stepCounts: [Int], hasState: [Bool]) throws(OptimizerError) {
        guard stepCounts.count == groupCount else { throw .stateSizeMismatch(what: "step_counts", expected: groupCount, got: stepCounts.count) }
        guard hasState.count == groupCount else { throw .stateSizeMismatch(what: "has_state", expected: groupCount, got: hasState.count) }
        if let group = stepCounts.firstIndex(where: { $0 < 0 }) { throw .negativeStepCount(group: group, value: stepCounts[group]) }
        self.stepCounts = stepCounts
        self.hasState = hasState
    }
}
