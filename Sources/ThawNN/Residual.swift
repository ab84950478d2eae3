// Residual: y = activation(body(x) + shortcut(x)), with the identity as the default shortcut and
// no activation by default (torchvision's BasicBlock and Bottleneck apply a ReLU after the sum).
//
// Note: residual parameter names. The body's parameters keep the body's own names (its children's
// names, prefixed by `bodyName` when one is given), and the shortcut's are prefixed by `shortcutName`.
// With the defaults, a torchvision BasicBlock maps one to one: a body Sequential with children
// conv1, bn1, relu, conv2, bn2 and a shortcut Sequential [Conv2d, BatchNorm2d] give
// `conv1.weight`, `bn1.running_mean`, …, `downsample.0.weight`, `downsample.1.weight`.
// A torchvision MobileNetV2 InvertedResidual maps with `bodyName: "conv"` (`conv.0.0.weight`, …).
import ThawKernels

/// A residual connection: the sum of a body and a shortcut (the identity when there is none).
public final class Residual: Layer {
    /// The main path.
    public let body: Sequential
    /// The projection path, or nil for the identity.
    public let shortcut: (any Layer)?
    /// The prefix of the body's parameter names, or nil to use the body's names directly.
    public let bodyName: String?
    /// The prefix of the shortcut's parameter names.
    public let shortcutName: String
    /// A parameterless layer applied after the sum (a ReLU in ResNet blocks), or nil for none.
    public let activation: (any Layer)?

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])

    /// Creates a residual block.
    /// - Parameters:
    ///   - body: The main path.
    ///   - shortcut: The projection path (a strided 1×1 conv and batch norm, say); nil for the identity.
    ///   - bodyName: Prefix for the body's parameter names; nil keeps them unprefixed (torchvision BasicBlock).
    ///   - shortcutName: Prefix for the shortcut's parameter names (torchvision's `downsample`).
    ///   - activation: A layer without parameters or state applied to the sum (ResNet's ReLU); nil for none.
    public init(body: Sequential, shortcut: (any Layer)? = nil, bodyName: String? = nil, shortcutName: String = "downsample",
                activation: (any Layer)? = nil) {
        precondition(activation.map { $0.parameterSpecs.isEmpty && $0.stateSpecs.isEmpty } ?? true,
                     "Residual: the activation after the sum must have no parameters or state")
        self.body = body
        self.shortcut = shortcut
        self.bodyName = bodyName
        self.shortcutName = shortcutName
        self.activation = activation
    }

    /// The body, then the shortcut and the activation if any.
    public var children: [any Layer] { [body] + (shortcut.map { [$0] } ?? []) + (activation.map { [$0] } ?? []) }

    /// The body and the shortcut under the names their parameters carry (an unprefixed body adds no name).
    public var namedChildren: [(name: String, layer: any Layer)] {
        [(bodyName ?? "", body)] + (shortcut.map { [(shortcutName, $0)] } ?? [])
    }

    /// The body's parameters (prefixed by `bodyName` if set), then the shortcut's prefixed by `shortcutName`.
    public var parameterSpecs: [ParameterSpec] {
        prefixed(body.parameterSpecs, bodyName) + prefixed(shortcut?.parameterSpecs ?? [], shortcutName)
    }

    /// The body's state, then the shortcut's, named like `parameterSpecs`.
    public var stateSpecs: [ParameterSpec] {
        prefixed(body.stateSpecs, bodyName) + prefixed(shortcut?.stateSpecs ?? [], shortcutName)
    }

    /// Hands the body its views first, then the shortcut the rest.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        let np = body.parameterSpecs.count
        let ns = body.stateSpecs.count
        body.bind(parameters: Array(parameters[..<np]), state: Array(state[..<ns]))
        shortcut?.bind(parameters: Array(parameters[np...]), state: Array(state[ns...]))
    }

    /// The body's output shape, which must equal the shortcut's (or the input's, for the identity).
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        let bodyShape: [Int]
        do { bodyShape = try body.outputShape(for: inputShape) } catch {
            throw ShapeError(layer: bodyName.map { "\($0).\(error.layer)" } ?? error.layer, shape: error.shape, expected: error.expected)
        }
        var shortcutShape = inputShape
        if let shortcut {
            do { shortcutShape = try shortcut.outputShape(for: inputShape) } catch {
                throw ShapeError(layer: "\(shortcutName).\(error.layer)", shape: error.shape, expected: error.expected)
            }
        }
        guard bodyShape == shortcutShape else {
            throw ShapeError(layer: "Residual", shape: inputShape,
                             expected: "an input whose body output \(bodyShape) matches its shortcut output \(shortcutShape)")
        }
        guard let activation else { return bodyShape }
        do { return try activation.outputShape(for: bodyShape) } catch {
            throw ShapeError(layer: "activation.\(error.layer)", shape: error.shape, expected: error.expected)
        }
    }

    /// y = activation(body(x) + shortcut(x)).
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        let main = body.forward(x, mode: mode)
        let skip = shortcut?.forward(x, mode: mode) ?? x
        precondition(main.shape == skip.shape, "Residual: body output \(main.shape) ≠ shortcut output \(skip.shape)")
        output.resize(to: main.shape)
        Elementwise.add(output: output.data, main.data, skip.data, count: main.count)
        return activation?.forward(output, mode: mode) ?? output
    }

    /// The activation's gradient (or dY) goes to both paths; the input gradient is the sum of theirs.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        var dSum = dY
        if let activation {
            guard let d = activation.backward(dY, computeInputGradient: true) else {
                preconditionFailure("Residual: the activation returned no input gradient")
            }
            dSum = d
        }
        let dMain = body.backward(dSum, computeInputGradient: computeInputGradient)
        let dSkip = shortcut.map { $0.backward(dSum, computeInputGradient: computeInputGradient) } ?? dSum
        guard computeInputGradient else { return nil }
        guard let dMain, let dSkip else { preconditionFailure("Residual: a path returned no input gradient") }
        inputGradient.resize(to: dMain.shape)
        Elementwise.add(output: inputGradient.data, dMain.data, dSkip.data, count: dMain.count)
        return inputGradient
    }

    private func prefixed(_ specs: [ParameterSpec], _ prefix: String?) -> [ParameterSpec] {
        guard let prefix else { return specs }
        return specs.map { ParameterSpec("\(prefix).\($0.name)", shape: $0.shape, initializer: $0.initializer) }
    }
}
