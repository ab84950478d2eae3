// LayerNorm: layer normalization over the last dimension, PyTorch's nn.LayerNorm(dimension, eps).
// Parameters `weight` (ones) and `bias` (zeros); BERT uses eps = 1e-12.
import ThawKernels

/// Normalizes each vector along the last dimension, then scales and shifts it.
public final class LayerNorm: Layer {
    /// The normalized extent (the last dimension).
    public let dimension: Int
    /// Added to the variance before the square root.
    public let epsilon: Float

    private var weight: ParameterView?
    private var bias: ParameterView?
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let mean = Tensor(shape: [0])
    private let reciprocalStandardDeviation = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a layer norm.
    /// - Parameters:
    ///   - dimension: The size of the last dimension.
    ///   - epsilon: Added to the variance; PyTorch's default is 1e-5, BERT's 1e-12.
    public init(_ dimension: Int, epsilon: Float = 1e-5) {
        self.dimension = dimension
        self.epsilon = epsilon
    }

    /// `weight` (ones) and `bias` (zeros), both `[dimension]`.
    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec("weight", shape: [dimension], initializer: .ones),
         ParameterSpec("bias", shape: [dimension], initializer: .zeros)]
    }

    /// Binds weight and bias views.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        weight = parameters[0]
        bias = parameters[1]
    }

    /// `[..., dimension]` maps to itself.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard let last = inputShape.last, last == dimension, inputShape.count >= 2 else {
            throw ShapeError(layer: "LayerNorm", shape: inputShape, expected: "[..., \(dimension)]")
        }
        return inputShape
    }

    /// Normalizes every row; in training keeps the input, means and 1/std for backward.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard let weight, let bias else { preconditionFailure("LayerNorm used before bind") }
        let rows = x.count / dimension
        output.resize(to: x.shape)
        let training = mode == .training
        if training {
            mean.resize(to: [rows])
            reciprocalStandardDeviation.resize(to: [rows])
        }
        LayerNormKernel.forward(
            output: output.data, mean: training ? mean.data : nil,
            reciprocalStandardDeviation: training ? reciprocalStandardDeviation.data : nil,
            input: x.data, weight: weight.value, bias: bias.value, rows: rows, dimension: dimension, epsilon: epsilon)
        input = training ? x : nil
        return output
    }

    /// Accumulates weight and bias gradients; returns dx when asked.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let weight, let bias, let x = input else { preconditionFailure("LayerNorm.backward without a training forward") }
        if computeInputGradient { inputGradient.resize(to: x.shape) }
        LayerNormKernel.backward(
            dInput: computeInputGradient ? inputGradient.data : nil, dWeight: weight.isFixed ? nil : weight.gradient, dBias: bias.isFixed ? nil : bias.gradient,
            dOutput: dY.data, input: x.data, weight: weight.value, mean: mean.data,
            reciprocalStandardDeviation: reciprocalStandardDeviation.data, rows: x.count / dimension, dimension: dimension)
        return computeInputGradient ? inputGradient : nil
    }
}
