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

    /// Runs every child in order.
    ///
    /// In inference mode a `Conv2d` directly followed by a `BatchNorm2d` runs as one convolution with
    /// the normalization folded in (unless `foldsBatchNorm` is false).
    public func forward(_ input: Tensor, mode: LayerMode) -> Tensor {
        var x = input
        var index = 0
        while index < namedLayers.count {
            let layer = namedLayers[index].layer
            if mode == .inference, foldsBatchNorm, index + 1 < namedLayers.count, let convolution = layer as? Conv2d,
               let batchNorm = namedLayers[index + 1].layer as? BatchNorm2d, batchNorm.channels == convolution.outputChannels {
                x = convolution.forwardFoldingBatchNorm(x, batchNorm)
                index += 2
            } else {
                x = layer.forward(x, mode: mode)
                index += 1
            }
        }
        return x
    }

    /// Whether inference folds each batch norm into the convolution before it (default true; tests turn it off to compare).
    public var foldsBatchNorm = true

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
