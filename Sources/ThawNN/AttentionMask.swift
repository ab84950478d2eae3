// AttentionMask: the per-batch padding mask shared by a transformer's attention and pooling layers.
//
// A model's input tensor holds token ids only, so the mask travels beside it. The model builder
// creates one `AttentionMask` and hands it to every `MultiHeadAttention` and `MeanPooling` (through
// `TransformerEncoderLayer`); the training or inference loop calls `set(_:)` with each batch's mask
// before `Model.forward`. Layers read the mask during forward only and capture whatever backward
// needs (attention keeps its probabilities, mean pooling copies the mask), so the mask may be
// replaced as soon as forward returns. With no mask set, every token counts as real.
import ThawKernels

/// An error in a padding mask supplied with a batch.
public enum AttentionMaskError: Error, CustomStringConvertible, Equatable {
    /// The mask is not `[N, T]`.
    case shape([Int])
    /// A mask entry that is neither 0 nor 1, with its `[n, t]` position.
    case value(Float, position: [Int])

    /// A one-line explanation.
    public var description: String {
        switch self {
        case .shape(let shape):
            return "attention mask has shape \(shape), expected [N, T] (batch, sequence length)"
        case .value(let value, let position):
            return "attention mask entry \(value) at position \(position) is neither 1 (token) nor 0 (padding)"
        }
    }
}

/// The padding mask of the current batch: `[N, T]`, 1 for real tokens and 0 for padding.
public final class AttentionMask {
    /// The mask of the current batch; meaningful only while `isSet` is true.
    public let values = Tensor(shape: [0])
    /// Whether a mask is set. When false, layers treat every token as real.
    public private(set) var isSet = false

    /// Creates an empty mask (every token real).
    public init() {}

    /// Sets the mask for the next forward pass, copying `mask`.
    /// - Parameter mask: `[N, T]` of 1 (real token) and 0 (padding).
    /// - Throws: ``AttentionMaskError`` naming the bad shape or entry; the previous mask is then cleared.
    public func set(_ mask: Tensor) throws(AttentionMaskError) {
        isSet = false
        guard mask.shape.count == 2 else { throw .shape(mask.shape) }
        for i in 0..<mask.count where mask.data[i] != 0 && mask.data[i] != 1 {
            throw .value(mask.data[i], position: [i / mask.shape[1], i % mask.shape[1]])
        }
        values.copy(from: mask)
        isSet = true
    }

    /// Removes the mask: every token counts as real.
    public func clear() { isSet = false }

    /// The mask's data, checked against the batch the layer is running; nil when no mask is set.
    ///
    /// A shape mismatch means the caller forgot to set this batch's mask: a programmer error.
    func data(batch: Int, sequenceLength: Int, layer: String) -> UnsafePointer<Float>? {
        guard isSet else { return nil }
        precondition(values.shape == [batch, sequenceLength],
                     "\(layer): attention mask \(values.shape) does not match the batch [\(batch), \(sequenceLength)]; set this batch's mask before forward")
        return UnsafePointer(values.data)
    }
}
