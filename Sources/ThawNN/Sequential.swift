// Sequential: named layers applied in order; the building block of groups and blocks.
import ThawKernels

/// Layers applied one after another. Children are named, and parameter names are
/// prefixed with the child's name (`0.weight`, `conv1.weight`), as in PyTorch.
public final class Sequential: Layer {
    /// The named children, in order.
    public let namedLayers: [(name: String, layer: any Layer)]

    /// Creates a sequence of named layers.
    public init(_ namedLayers: [(name: String, layer: any Layer)]) {
        self.namedLayers = namedLayers
        foldBatchNormsForInference()
    }

    /// Creates a sequence whose children are named by position (`0`, `1`, …).
    public convenience init(_ layers: [any Layer]) {
        self.init(layers.enumerated().map { (name: String($0.offset), layer: $0.element) })
    }

    /// The children, in order, with their names.
    public var namedChildren: [(name: String, layer: any Layer)] { namedLayers }

    /// The children's parameters, prefixed by child name.
    public var parameterSpecs: [ParameterSpec] {
        namedLayers.flatMap { child in
            child.layer.parameterSpecs.map { ParameterSpec("\(child.name).\($0.name)", shape: $0.shape, initializer: $0.initializer) }
        }
    }

    /// The children's state, prefixed by child name.
    public var stateSpecs: [ParameterSpec] {
        namedLayers.flatMap { child in
            child.layer.stateSpecs.map { ParameterSpec("\(child.name).\($0.name)", shape: $0.shape, initializer: $0.initializer) }
        }
    }

    /// Hands each child its run of views.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        var p = 0
        var s = 0
        for child in namedLayers {
            let np = child.layer.parameterSpecs.count
            let ns = child.layer.stateSpecs.count
            child.layer.bind(parameters: Array(parameters[p..<(p + np)]), state: Array(state[s..<(s + ns)]))
            p += np
            s += ns
        }
    }

    /// Threads the shape through every child; errors name the child.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        var shape = inputShape
        for child in namedLayers {
            do {
                shape = try child.layer.outputShape(for: shape)
            } catch {
                throw ShapeError(layer: "\(child.name).\(error.layer)", shape: error.shape, expected: error.expected)
            }
        }
        return shape
    }

    /// One inference step: a child alone, or a foldable child with the batch norm after it folded in.
    private enum InferenceStep {
        case layer(any Layer)
        case folded(any BatchNormFoldable, BatchNorm2d)
    }

    /// What an inference forward runs, in order; set by `foldBatchNormsForInference` and `unfoldBatchNorms`.
    private var inferenceSteps: [InferenceStep] = []

    /// How many batch norms inference folds into the layer before them.
    public var foldedBatchNormCount: Int {
        inferenceSteps.reduce(0) { count, step in if case .folded = step { count + 1 } else { count } }
    }

    /// Pairs each ``BatchNormFoldable`` child with the `BatchNorm2d` right after it (when it fits), so that
    /// inference runs the two as one forward. Done at creation; idempotent. Nested sequentials pair their own.
    public func foldBatchNormsForInference() {
        var steps: [InferenceStep] = []
        var index = 0
        while index < namedLayers.count {
            let layer = namedLayers[index].layer
            if index + 1 < namedLayers.count, let foldable = layer as? any BatchNormFoldable,
               let batchNorm = namedLayers[index + 1].layer as? BatchNorm2d, foldable.canFold(batchNorm) {
                steps.append(.folded(foldable, batchNorm))
                index += 2
            } else {
                steps.append(.layer(layer))
                index += 1
            }
        }
        inferenceSteps = steps
    }

    /// Makes inference run every child on its own (to compare with the folded path). Idempotent.
    public func unfoldBatchNorms() {
        inferenceSteps = namedLayers.map { .layer($0.layer) }
    }

    /// Runs every child in order; in inference mode, the folded pairs as one forward each.
    public func forward(_ input: Tensor, mode: LayerMode) -> Tensor {
        var x = input
        switch mode {
        case .training:
            for child in namedLayers { x = child.layer.forward(x, mode: .training) }
        case .inference:
            for step in inferenceSteps {
                switch step {
                case .layer(let layer): x = layer.forward(x, mode: .inference)
                case .folded(let layer, let batchNorm): x = layer.forwardFoldingBatchNorm(x, batchNorm)
                }
            }
        }
        return x
    }

    /// Runs every child's backward in reverse; only the first child may skip its input gradient.
    public func backward(_ outputGradient: Tensor, computeInputGradient: Bool) -> Tensor? {
        var d = outputGradient
        for index in namedLayers.indices.reversed() {
            let needInput = index > 0 || computeInputGradient
            guard let next = namedLayers[index].layer.backward(d, computeInputGradient: needInput) else { return nil }
            d = next
        }
        return d
    }
}
