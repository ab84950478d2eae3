// BatchNorm2d: per-channel batch normalization of [N, C, H, W], as PyTorch's BatchNorm2d (affine, tracking stats).
import ThawKernels

/// Batch normalization over the batch and spatial dimensions of each channel.
///
/// Parameters `weight` (ones) and `bias` (zeros); state `running_mean` (zeros) and `running_var` (ones).
/// In `.training` mode it normalizes with the batch mean and biased variance, and updates the running
/// statistics with `momentum` using the unbiased variance, exactly as PyTorch. In `.inference` mode it
/// normalizes with the running statistics, leaves them untouched and keeps nothing for backward.
public final class BatchNorm2d: Layer {
    /// Channels.
    public let channels: Int
    /// Added to the variance before the square root.
    public let epsilon: Float
    /// Weight of the batch statistics in the running-statistics update.
    public let momentum: Float

    private var weight: ParameterView?
    private var bias: ParameterView?
    private var runningMean: StateView?
    private var runningVariance: StateView?
    private let output = Tensor(shape: [0])
    private let fixedGradients = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let mean = Tensor(shape: [0])
    private let inverseStandardDeviation = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a batch-norm layer.
    /// - Parameters:
    ///   - channels: Channels of the input.
    ///   - epsilon: Added to the variance (PyTorch's default 1e-5).
    ///   - momentum: Running-statistics momentum (PyTorch's default 0.1).
    public init(_ channels: Int, epsilon: Float = 1e-5, momentum: Float = 0.1) {
        self.channels = channels
        self.epsilon = epsilon
        self.momentum = momentum
    }

    /// `weight` (ones) and `bias` (zeros), `[channels]` each.
    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec("weight", shape: [channels], initializer: .ones),
         ParameterSpec("bias", shape: [channels], initializer: .zeros)]
    }

    /// `running_mean` (zeros) and `running_var` (ones), `[channels]` each.
    public var stateSpecs: [ParameterSpec] {
        [ParameterSpec("running_mean", shape: [channels], initializer: .zeros),
         ParameterSpec("running_var", shape: [channels], initializer: .ones)]
    }

    /// Binds weight, bias and the running statistics.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        weight = parameters[0]
        bias = parameters[1]
        runningMean = state[0]
        runningVariance = state[1]
    }

    /// `[N, channels, H, W]` → the same shape.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 4, inputShape[1] == channels else {
            throw ShapeError(layer: "BatchNorm2d", shape: inputShape, expected: "[N, \(channels), H, W]")
        }
        return inputShape
    }

    /// Normalizes with batch statistics (training) or running statistics (inference).
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard let weight, let bias, let runningMean, let runningVariance else { preconditionFailure("BatchNorm2d used before bind") }
        precondition(x.shape.count == 4 && x.shape[1] == channels, "BatchNorm2d: input shape \(x.shape), expected [N, \(channels), H, W]")
        let (batch, spatial) = (x.shape[0], x.shape[2] * x.shape[3])
        output.resize(to: x.shape)
        switch mode {
        case .training:
            mean.resize(to: [channels])
            inverseStandardDeviation.resize(to: [channels])
            BatchNormalization.trainingForward(
                output: output.data, mean: mean.data, inverseStandardDeviation: inverseStandardDeviation.data,
                runningMean: runningMean.value, runningVariance: runningVariance.value,
                input: x.data, weight: weight.value, bias: bias.value,
                batch: batch, channels: channels, spatial: spatial, epsilon: epsilon, momentum: momentum)
            input = x
        case .inference:
            BatchNormalization.inferenceForward(
                output: output.data, input: x.data, weight: weight.value, bias: bias.value,
                runningMean: runningMean.value, runningVariance: runningVariance.value,
                batch: batch, channels: channels, spatial: spatial, epsilon: epsilon)
            input = nil
        }
        return output
    }

    /// Writes the convolution weight and bias that fold this layer's inference-mode normalization into
    /// the convolution before it (see ``BatchNormFoldable``).
    func fold(convolutionWeight: UnsafePointer<Float>, convolutionBias: UnsafePointer<Float>?, weightsPerChannel: Int,
              into foldedWeight: UnsafeMutablePointer<Float>, foldedBias: UnsafeMutablePointer<Float>) {
        guard let weight, let bias, let runningMean, let runningVariance else { preconditionFailure("BatchNorm2d used before bind") }
        BatchNormalization.foldIntoConvolution(
            foldedWeight: foldedWeight, foldedBias: foldedBias, convolutionWeight: convolutionWeight, convolutionBias: convolutionBias,
            weightsPerChannel: weightsPerChannel, weight: weight.value, bias: bias.value, runningMean: runningMean.value,
            runningVariance: runningVariance.value, channels: channels, epsilon: epsilon)
    }

    /// Backpropagates through the batch statistics of the last training forward.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let weight, let bias, let x = input else { preconditionFailure("BatchNorm2d.backward without a training forward") }
        if computeInputGradient {
            inputGradient.resize(to: x.shape)
            inputGradient.zero()
        }
        // A fixed weight or bias (under adapters) sums into scratch, never into the store's gradient pages.
        if weight.isFixed || bias.isFixed { fixedGradients.resize(to: [2, channels]) }
        BatchNormalization.trainingBackward(
            dInput: computeInputGradient ? inputGradient.data : nil,
            dWeight: weight.isFixed ? fixedGradients.data : weight.gradient,
            dBias: bias.isFixed ? fixedGradients.data + channels : bias.gradient,
            dOutput: dY.data, input: x.data, mean: mean.data, inverseStandardDeviation: inverseStandardDeviation.data,
            weight: weight.value, batch: x.shape[0], channels: channels, spatial: x.shape[2] * x.shape[3])
        return computeInputGradient ? inputGradient : nil
    }
}

/// A layer that can take in the batch norm right after it at inference: a `Sequential` then runs the
/// two as one forward, with the normalization folded into a copy of this layer's weights (recomputed on
/// every call, so it is never stale), and skips the batch-norm pass.
public protocol BatchNormFoldable: Layer {
    /// Whether `batchNorm` can be folded in (it normalizes this layer's output channels).
    func canFold(_ batchNorm: BatchNorm2d) -> Bool
    /// The inference-mode forward of this layer followed by `batchNorm`, as one pass. Keeps nothing
    /// for backward and leaves the parameters untouched.
    func forwardFoldingBatchNorm(_ input: Tensor, _ batchNorm: BatchNorm2d) -> Tensor
}
