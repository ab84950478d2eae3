// Activations: element-wise activation layers (ReLU, ReLU6, GELU) for any input shape.
//
// They differ only in their kernels, so one generic layer holds the buffers and the
// forward/backward plumbing, and each activation is a small `ActivationFunction`.
import ThawKernels

/// The kernels of one element-wise activation.
public protocol ActivationFunction {
    /// The layer's name in shape errors.
    static var name: String { get }
    /// output = f(input), element-wise.
    static func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int)
    /// dInput = f′(input) · dOutput, element-wise, overwriting dInput.
    static func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int)
}

/// An element-wise activation layer. Backward reads the saved input, so gradients at the kinks
/// (x = 0, x = 6) are 0, as in PyTorch.
public final class ElementwiseActivation<Function: ActivationFunction>: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates the activation.
    public init() {}

    /// Any non-empty shape, unchanged.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard !inputShape.isEmpty else { throw ShapeError(layer: Function.name, shape: inputShape, expected: "[N, ...]") }
        return inputShape
    }

    /// y = f(x); keeps x for backward in training.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        output.resize(to: x.shape)
        Function.forward(output: output.data, input: x.data, count: x.count)
        input = mode == .training ? x : nil
        return output
    }

    /// dX = f′(x) · dY. There are no parameters, so nothing runs unless the input gradient is asked for.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let x = input else { preconditionFailure("\(Function.name).backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: x.shape)
        Function.backward(dInput: inputGradient.data, dOutput: dY.data, input: x.data, count: x.count)
        return inputGradient
    }
}

/// max(x, 0).
public enum ReLUFunction: ActivationFunction {
    /// "ReLU".
    public static let name = "ReLU"
    /// max(x, 0).
    public static func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        Activation.reluForward(output: output, input: input, count: count)
    }
    /// dY where x > 0.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        dInput.update(repeating: 0, count: count)  // the kernel accumulates
        Activation.reluBackward(dInput: dInput, dOutput: dOutput, input: input, count: count)
    }
}

/// min(max(x, 0), 6), MobileNetV2's activation.
public enum ReLU6Function: ActivationFunction {
    /// "ReLU6".
    public static let name = "ReLU6"
    /// min(max(x, 0), 6).
    public static func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        Activation.relu6Forward(output: output, input: input, count: count)
    }
    /// dY where 0 < x < 6.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        dInput.update(repeating: 0, count: count)  // the kernel accumulates
        Activation.relu6Backward(dInput: dInput, dOutput: dOutput, input: input, count: count)
    }
}

/// The exact (erf) GELU, y = ½·x·(1 + erf(x/√2)): PyTorch's nn.GELU() default and BERT's "gelu".
public enum GELUFunction: ActivationFunction {
    /// "GELU".
    public static let name = "GELU"
    /// ½·x·(1 + erf(x/√2)).
    public static func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        GELUKernel.forward(output: output, input: input, count: count)
    }
    /// GELU′(x) · dY (the kernel overwrites).
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        GELUKernel.backward(dInput: dInput, dOutput: dOutput, input: input, count: count)
    }
}

/// max(x, 0), element-wise.
public typealias ReLU = ElementwiseActivation<ReLUFunction>
/// min(max(x, 0), 6), element-wise.
public typealias ReLU6 = ElementwiseActivation<ReLU6Function>
/// The exact GELU, element-wise.
public typealias GELU = ElementwiseActivation<GELUFunction>
