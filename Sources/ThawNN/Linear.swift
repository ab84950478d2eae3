// Linear: y = x Wᵀ + b over the last dimension, with PyTorch's weight layout [out, in].
import ThawKernels

/// A fully connected layer. Weight is `[outputDimensions, inputDimensions]`, bias `[outputDimensions]`.
///
/// Inputs of any rank are treated as `[rows, inputDimensions]`, so the same layer serves
/// classifier heads (`[N, D]`) and transformer projections (`[N, T, D]`).
public final class Linear: Layer {
    /// Input features.
    public let inputDimensions: Int
    /// Output features.
    public let outputDimensions: Int
    /// Whether there is a bias term.
    public let hasBias: Bool

    private var weight: ParameterView?
    private var bias: ParameterView?
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a linear layer.
    public init(_ inputDimensions: Int, _ outputDimensions: Int, bias: Bool = true) {
        self.inputDimensions = inputDimensions
        self.outputDimensions = outputDimensions
        self.hasBias = bias
    }

    /// `weight` and optionally `bias`, initialized like PyTorch.
    public var parameterSpecs: [ParameterSpec] {
        var specs = [ParameterSpec("weight", shape: [outputDimensions, inputDimensions], initializer: .uniformFanIn(inputDimensions))]
        if hasBias { specs.append(ParameterSpec("bias", shape: [outputDimensions], initializer: .uniformFanIn(inputDimensions))) }
        return specs
    }

    /// Binds weight and bias views.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        weight = parameters[0]
        bias = hasBias ? parameters[1] : nil
    }

    /// `[..., inputDimensions]` → `[..., outputDimensions]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard let last = inputShape.last, last == inputDimensions, inputShape.count >= 2 else {
            throw ShapeError(layer: "Linear", shape: inputShape, expected: "[..., \(inputDimensions)]")
        }
        return inputShape.dropLast() + [outputDimensions]
    }

    /// y = x Wᵀ + b.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard let weight else { preconditionFailure("Linear used before bind") }
        let rows = x.count / inputDimensions
        output.resize(to: x.shape.dropLast() + [outputDimensions])
        if let bias {
            for r in 0..<rows { (output.data + r * outputDimensions).update(from: bias.value, count: outputDimensions) }
        }
        Gemm.multiply(.none, .transposed, m: rows, n: outputDimensions, k: inputDimensions,
                      a: x.data, b: weight.value, beta: hasBias ? 1 : 0, c: output.data)
        input = mode == .training ? x : nil
        return output
    }

    /// dW += dYᵀ x, db += Σ dY, dX = dY W.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let weight, let x = input else { preconditionFailure("Linear.backward without a training forward") }
        let rows = x.count / inputDimensions
        Gemm.multiply(.transposed, .none, m: outputDimensions, n: inputDimensions, k: rows,
                      a: dY.data, b: x.data, beta: 1, c: weight.gradient)
        if let bias {
            for r in 0..<rows {
                let row = dY.data + r * outputDimensions
                for o in 0..<outputDimensions { bias.gradient[o] += row[o] }
            }
        }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: x.shape)
        Gemm.multiply(.none, .none, m: rows, n: inputDimensions, k: outputDimensions,
                      a: dY.data, b: weight.value, beta: 0, c: inputGradient.data)
        return inputGradient
    }
}
