// TextPooling: sentence embeddings from token vectors, [N, T, D] → [N, D].
//
// `MeanPooling` averages the real tokens (the shared `AttentionMask`), as sentence-transformers'
// mean pooling does; `ClsPooling` takes position 0 ([CLS]), as BERT's pooler input.
import ThawKernels

/// Masked mean over the sequence: each sentence vector is the mean of its real tokens.
///
/// A row with no real tokens pools to zeros (the divisor is clamped to 1e-9, as in sentence-transformers).
public final class MeanPooling: Layer {
    /// The shared padding mask read during forward; nil counts every token.
    public var attentionMask: AttentionMask?

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let savedMask = Tensor(shape: [0])
    private var inputShape: [Int]?
    private var maskWasSet = false

    /// Creates a mean pooling layer.
    /// - Parameter attentionMask: The shared padding mask, or nil to average every position.
    public init(attentionMask: AttentionMask? = nil) {
        self.attentionMask = attentionMask
    }

    /// `[N, T, D]` → `[N, D]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3 else { throw ShapeError(layer: "MeanPooling", shape: inputShape, expected: "[N, T, D]") }
        return [inputShape[0], inputShape[2]]
    }

    /// Averages the real tokens; in training copies the mask for backward.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        precondition(x.shape.count == 3, "MeanPooling: input \(x.shape) is not [N, T, D]")
        let (batch, length, width) = (x.shape[0], x.shape[1], x.shape[2])
        let mask = attentionMask?.data(batch: batch, sequenceLength: length, layer: "MeanPooling")
        output.resize(to: [batch, width])
        SequencePoolingKernel.meanForward(output: output.data, input: x.data, mask: mask,
                                          batch: batch, sequenceLength: length, dimension: width)
        inputShape = mode == .training ? x.shape : nil
        maskWasSet = mask != nil
        if mode == .training, let mask {
            savedMask.resize(to: [batch, length])
            savedMask.data.update(from: mask, count: savedMask.count)
        }
        return output
    }

    /// Spreads each sentence gradient evenly over its real tokens. No parameters: nothing runs unless asked.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("MeanPooling.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: shape)
        SequencePoolingKernel.meanBackward(dInput: inputGradient.data, dOutput: dY.data,
                                           mask: maskWasSet ? UnsafePointer(savedMask.data) : nil,
                                           batch: shape[0], sequenceLength: shape[1], dimension: shape[2])
        return inputGradient
    }
}

/// First-token pooling: each sentence vector is the vector at position 0 ([CLS]).
public final class ClsPooling: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int]?

    /// Creates a first-token pooling layer.
    public init() {}

    /// `[N, T, D]` → `[N, D]`, with T ≥ 1.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3, inputShape[1] >= 1 else {
            throw ShapeError(layer: "ClsPooling", shape: inputShape, expected: "[N, T ≥ 1, D]")
        }
        return [inputShape[0], inputShape[2]]
    }

    /// Copies position 0 of every sequence.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        precondition(x.shape.count == 3 && x.shape[1] >= 1, "ClsPooling: input \(x.shape) is not [N, T ≥ 1, D]")
        output.resize(to: [x.shape[0], x.shape[2]])
        SequencePoolingKernel.firstForward(output: output.data, input: x.data,
                                           batch: x.shape[0], sequenceLength: x.shape[1], dimension: x.shape[2])
        inputShape = mode == .training ? x.shape : nil
        return output
    }

    /// Routes the gradient to position 0; other positions get zero. No parameters: nothing runs unless asked.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("ClsPooling.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: shape)
        SequencePoolingKernel.firstBackward(dInput: inputGradient.data, dOutput: dY.data,
                                            batch: shape[0], sequenceLength: shape[1], dimension: shape[2])
        return inputGradient
    }
}
