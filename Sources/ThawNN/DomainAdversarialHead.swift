// DomainAdversarialHead: a classifier head and a domain classifier side by side on the same
// features, for domain-adversarial training (DANN).
//
// Both branches read the head's input. The output is one row per sample holding the label
// logits followed by the domain logits, so the model stays a linear chain of groups with one
// output tensor (and one flat parameter buffer): the training objective splits the columns.
// The domain branch is flatten → gradient reversal → linear → ReLU → linear(2), so its own
// parameters learn to tell the domains apart while the gradient reaching the features is reversed.
//
// Note: domain-adversarial output. Columns 0..<labelOutputs are the label logits, the last
// `domainOutputs` (2) are the domain logits (source 0, target 1). Evaluation reads the first only.
import ThawKernels

/// Label logits and domain logits of the same features, concatenated per row.
public final class DomainAdversarialHead: Layer {
    /// The classifier branch (the ordinary head), with any input shape it accepts.
    public let labelBranch: any Layer
    /// The domain branch: flatten, gradient reversal, linear, ReLU, linear to 2.
    public let domainBranch: Sequential
    /// The gradient-reversal layer inside the domain branch.
    public let reversal: GradientReversal
    /// The width of the label branch's output (the classes).
    public let labelOutputs: Int
    /// The width of the domain branch's output (2).
    public let domainOutputs = 2

    private let output = Tensor(shape: [0])
    private let labelGradient = Tensor(shape: [0])
    private let domainGradient = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int]?

    /// Creates the head.
    /// - Parameters:
    ///   - labelBranch: The classifier head; it must map `[N, ...]` to `[N, labelOutputs]`.
    ///   - labelOutputs: The classes.
    ///   - features: The number of values per sample in the head's input (the domain branch flattens it).
    ///   - domainHidden: The width of the domain classifier's hidden layer.
    ///   - schedule: How the reversal coefficient λ follows training progress.
    public init(labelBranch: any Layer, labelOutputs: Int, features: Int, domainHidden: Int, schedule: ReversalSchedule) {
        self.labelBranch = labelBranch
        self.labelOutputs = labelOutputs
        reversal = GradientReversal(schedule: schedule)
        domainBranch = Sequential([
            (name: "flatten", layer: Flatten()),
            (name: "reversal", layer: reversal),
            (name: "fc1", layer: Linear(features, domainHidden)),
            (name: "relu", layer: ReLU()),
            (name: "fc2", layer: Linear(domainHidden, 2)),
        ])
    }

    /// The label branch, then the domain branch.
    public var children: [any Layer] { [labelBranch, domainBranch] }

    /// `label` and `domain`, as their parameters are named.
    public var namedChildren: [(name: String, layer: any Layer)] { [("label", labelBranch), ("domain", domainBranch)] }

    /// `label.*` then `domain.*`.
    public var parameterSpecs: [ParameterSpec] {
        prefixed(labelBranch.parameterSpecs, "label") + prefixed(domainBranch.parameterSpecs, "domain")
    }

    /// `label.*` then `domain.*`.
    public var stateSpecs: [ParameterSpec] {
        prefixed(labelBranch.stateSpecs, "label") + prefixed(domainBranch.stateSpecs, "domain")
    }

    /// Hands the label branch its views first, then the domain branch the rest.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        let np = labelBranch.parameterSpecs.count, ns = labelBranch.stateSpecs.count
        labelBranch.bind(parameters: Array(parameters[..<np]), state: Array(state[..<ns]))
        domainBranch.bind(parameters: Array(parameters[np...]), state: Array(state[ns...]))
    }

    /// `[N, ...]` → `[N, labelOutputs + 2]`; both branches must accept the input.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        let label = try labelBranch.outputShape(for: inputShape)
        let domain = try domainBranch.outputShape(for: inputShape)
        guard label.count == 2, label[1] == labelOutputs, domain.count == 2 else {
            throw ShapeError(layer: "DomainAdversarialHead", shape: inputShape,
                             expected: "an input the label branch maps to [N, \(labelOutputs)] (it gives \(label))")
        }
        return [inputShape[0], labelOutputs + domainOutputs]
    }

    /// Runs both branches and writes their outputs side by side.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        let labels = labelBranch.forward(x, mode: mode)
        let domains = domainBranch.forward(x, mode: mode)
        // Legend: N rows, L label columns, D domain columns, W = L + D.
        let (N, L, D) = (x.shape[0], labelOutputs, domainOutputs)
        let W = L + D
        output.resize(to: [N, W])
        for n in 0..<N {
            (output.data + n * W).update(from: labels.data + n * L, count: L)
            (output.data + n * W + L).update(from: domains.data + n * D, count: D)
        }
        inputShape = mode == .training ? x.shape : nil
        return output
    }

    /// Splits dOut into the two branches' gradients and sums their input gradients.
    public func backward(_ dOut: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("DomainAdversarialHead.backward without a training forward") }
        // Legend: N rows, L label columns, D domain columns, W = L + D.
        let (N, L, D) = (shape[0], labelOutputs, domainOutputs)
        let W = L + D
        labelGradient.resize(to: [N, L])
        domainGradient.resize(to: [N, D])
        for n in 0..<N {
            (labelGradient.data + n * L).update(from: dOut.data + n * W, count: L)
            (domainGradient.data + n * D).update(from: dOut.data + n * W + L, count: D)
        }
        let dLabel = labelBranch.backward(labelGradient, computeInputGradient: computeInputGradient)
        let dDomain = domainBranch.backward(domainGradient, computeInputGradient: computeInputGradient)
        guard computeInputGradient, let dLabel, let dDomain else { return nil }
        inputGradient.resize(to: shape)
        let a = dLabel.data, b = dDomain.data, d = inputGradient.data
        for i in 0..<inputGradient.count { d[i] = a[i] + b[i] }
        return inputGradient
    }

    private func prefixed(_ specs: [ParameterSpec], _ prefix: String) -> [ParameterSpec] {
        specs.map { ParameterSpec("\(prefix).\($0.name)", shape: $0.shape, initializer: $0.initializer) }
    }
}
