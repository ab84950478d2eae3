// Flatten: [N, C, H, W] → [N, C·H·W], a view change with no arithmetic.
import ThawKernels

/// Flattens every dimension after the batch dimension.
public final class Flatten: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int] = []

    /// Creates a flatten layer.
    public init() {}

    /// `[N, ...]` → `[N, product]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard let n = inputShape.first else { throw ShapeError(layer: "Flatten", shape: inputShape, expected: "[N, ...]") }
        guard let features = CheckedSize.product(inputShape.dropFirst()) else {
            throw ShapeError(layer: "Flatten", shape: inputShape, expected: "extents whose product fits in an Int")
        }
        return [n, features]
    }

    /// Copies the input into a 2-D tensor.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        inputShape = x.shape
        output.resize(to: [x.shape[0], x.count / max(x.shape[0], 1)])
        output.data.update(from: x.data, count: x.count)
        return output
    }

    /// Reshapes the gradient back to the input's shape.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: inputShape)
        inputGradient.data.update(from: dY.data, count: dY.count)
        return inputGradient
    }
}
