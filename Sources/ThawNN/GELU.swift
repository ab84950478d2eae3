// GELU: the exact (erf) Gaussian error linear unit as a layer, PyTorch's nn.GELU() default
// and Hugging Face BERT's "gelu" activation. Any input shape.
import ThawKernels

/// Elementwise exact GELU, y = ½·x·(1 + erf(x/√2)).
public final class GELU: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a GELU activation.
    public init() {}

    /// Any shape maps to itself.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }

    /// Applies GELU elementwise; keeps the input for backward in training.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        output.resize(to: x.shape)
        GELUKernel.forward(output: output.data, input: x.data, count: x.count)
        input = mode == .training ? x : nil
        return output
    }

    /// dx = dy · GELU′(x). GELU has no parameters, so nothing runs unless the input gradient is asked for.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let x = input else { preconditionFailure("GELU.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: x.shape)
        GELUKernel.backward(dInput: inputGradient.data, dOutput: dY.data, input: x.data, count: x.count)
        return inputGradient
    }
}
