// Activations: ReLU and ReLU6 layers (element-wise, any shape).
import ThawKernels

/// max(x, 0), element-wise. Backward passes the gradient where the input was positive.
public final class ReLU: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a ReLU.
    public init() {}

    /// Any non-empty shape, unchanged.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard !inputShape.isEmpty else { throw ShapeError(layer: "ReLU", shape: inputShape, expected: "[N, ...]") }
        return inputShape
    }

    /// y = max(x, 0).
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        output.resize(to: x.shape)
        Activation.reluForward(output: output.data, input: x.data, count: x.count)
        input = mode == .training ? x : nil
        return output
    }

    /// dX = dY where x > 0.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let x = input else { preconditionFailure("ReLU.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: x.shape)
        inputGradient.zero()
        Activation.reluBackward(dInput: inputGradient.data, dOutput: dY.data, input: x.data, count: x.count)
        return inputGradient
    }
}

/// min(max(x, 0), 6), element-wise (MobileNetV2's activation). Backward passes the gradient where 0 < x < 6.
public final class ReLU6: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a ReLU6.
    public init() {}

    /// Any non-empty shape, unchanged.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard !inputShape.isEmpty else { throw ShapeError(layer: "ReLU6", shape: inputShape, expected: "[N, ...]") }
        return inputShape
    }

    /// y = min(max(x, 0), 6).
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        output.resize(to: x.shape)
        Activation.relu6Forward(output: output.data, input: x.data, count: x.count)
        input = mode == .training ? x : nil
        return output
    }

    /// dX = dY where 0 < x < 6.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let x = input else { preconditionFailure("ReLU6.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: x.shape)
        inputGradient.zero()
        Activation.relu6Backward(dInput: inputGradient.data, dOutput: dY.data, input: x.data, count: x.count)
        return inputGradient
    }
}
