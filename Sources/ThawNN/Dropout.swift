// Dropout: inverted dropout with its own seeded generator; the identity in inference.
import ThawKernels

/// Zeroes each element with probability `probability` and scales the rest by 1/(1 − probability).
///
/// Masks come from a SplitMix64 generator owned by the layer. Trainers make masks reproducible by
/// calling `reseed(_:)` with a value derived from (seed, rank, step), for example with `SplitMix64.mix`.
public final class Dropout: Layer, RandomLayer {
    /// The drop probability p in [0, 1].
    public let probability: Float

    private var generator: SplitMix64
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let mask = Tensor(shape: [0])
    private var hasMask = false

    /// Creates a dropout layer.
    /// - Parameters:
    ///   - probability: Drop probability in [0, 1] (PyTorch's default 0.5).
    ///   - seed: Initial generator seed.
    public init(probability: Float = 0.5, seed: UInt64 = 0) {
        precondition(probability >= 0 && probability <= 1, "Dropout probability \(probability) is outside [0, 1]")
        self.probability = probability
        self.generator = SplitMix64(seed: seed)
    }

    /// Restarts the mask sequence from `seed`: the next training forward draws the same mask for the same seed.
    public func reseed(_ seed: UInt64) { generator = SplitMix64(seed: seed) }

    /// Any non-empty shape, unchanged.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard !inputShape.isEmpty else { throw ShapeError(layer: "Dropout", shape: inputShape, expected: "[N, ...]") }
        return inputShape
    }

    /// Training: y = x · mask with a fresh mask. Inference: y = x.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        output.resize(to: x.shape)
        switch mode {
        case .training:
            mask.resize(to: x.shape)
            DropoutMask.forward(output: output.data, mask: mask.data, input: x.data, count: x.count,
                                probability: probability, generator: &generator)
            hasMask = true
        case .inference:
            output.data.update(from: x.data, count: x.count)
            hasMask = false
        }
        return output
    }

    /// dX = dY · mask.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard hasMask else { preconditionFailure("Dropout.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: mask.shape)
        inputGradient.zero()
        DropoutMask.backward(dInput: inputGradient.data, dOutput: dY.data, mask: mask.data, count: mask.count)
        return inputGradient
    }
}
