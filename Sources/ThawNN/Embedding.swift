// Embedding: token ids → vectors, PyTorch's nn.Embedding (HF BERT's word, position and
// token-type embeddings are three of these).
//
// Note: token ids. The input is `[N, T]` (any shape) of token ids stored as exact integers in
// Float. Ids come from data, so they are checked by `validate(ids:)`, which throws an
// `EmbeddingError` naming the offending id and its position; the data pipeline (or the model's
// input step) calls it once per batch, before forward. `forward` itself treats an invalid id as a
// programmer error (it stops with a message), because validation was skipped.
//
// Note: no input gradient. Ids are not differentiable. `backward` only scatter-adds into the
// weight gradient; asked for an input gradient it returns a zero tensor of the input's shape,
// so that it composes with `Sequential` and `Model`, which expect one when they ask.
import ThawKernels

/// An invalid token id in a batch: not an integer in `0..<vocabularySize`.
public struct EmbeddingError: Error, CustomStringConvertible, Equatable {
    /// The offending id as stored.
    public var id: Float
    /// Its index in the ids tensor, one entry per dimension (`[n, t]`).
    public var position: [Int]
    /// The table's number of rows.
    public var vocabularySize: Int

    /// Creates an embedding error.
    public init(id: Float, position: [Int], vocabularySize: Int) {
        self.id = id
        self.position = position
        self.vocabularySize = vocabularySize
    }

    /// One line naming the id, its position and the valid range.
    public var description: String {
        "token id \(id) at position \(position) is not an integer in 0..<\(vocabularySize) (the embedding's vocabulary)"
    }
}

/// A lookup table with parameter `weight`, `[vocabularySize, dimension]`.
public final class Embedding: Layer {
    /// The number of rows (token ids `0..<vocabularySize`).
    public let vocabularySize: Int
    /// The width of each vector.
    public let dimension: Int
    /// Standard deviation of the normal initialization (BERT's initializer range, 0.02).
    public let initializerRange: Float

    private var weight: ParameterView?
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates an embedding table.
    /// - Parameters:
    ///   - vocabularySize: The number of rows.
    ///   - dimension: The width of each vector.
    ///   - initializerRange: Standard deviation of the initial values.
    public init(vocabularySize: Int, dimension: Int, initializerRange: Float = 0.02) {
        self.vocabularySize = vocabularySize
        self.dimension = dimension
        self.initializerRange = initializerRange
    }

    /// `weight`, `[vocabularySize, dimension]`, normal(0, initializerRange).
    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec("weight", shape: [vocabularySize, dimension], initializer: .normal(standardDeviation: initializerRange))]
    }

    /// Binds the weight view.
    public func bind(parameters: [ParameterView], state: [StateView]) { weight = parameters[0] }

    /// `[N, T]` (any rank ≥ 1) → `[N, T, dimension]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard !inputShape.isEmpty else { throw ShapeError(layer: "Embedding", shape: inputShape, expected: "[N, T] token ids") }
        return inputShape + [dimension]
    }

    /// Checks that every id is an integer in `0..<vocabularySize`.
    /// - Parameter ids: The batch's ids, as passed to `forward`.
    /// - Throws: ``EmbeddingError`` for the first invalid id, with its position.
    public func validate(ids: Tensor) throws(EmbeddingError) {
        guard let index = EmbeddingKernel.firstInvalidIndex(ids: ids.data, count: ids.count, vocabularySize: vocabularySize) else { return }
        var position = [Int](repeating: 0, count: ids.shape.count)
        var rest = index
        for axis in ids.shape.indices.reversed() {
            position[axis] = rest % max(ids.shape[axis], 1)
            rest /= max(ids.shape[axis], 1)
        }
        throw EmbeddingError(id: ids.data[index], position: position, vocabularySize: vocabularySize)
    }

    /// Looks up one row per id. Ids must have passed `validate(ids:)`.
    public func forward(_ ids: Tensor, mode: LayerMode) -> Tensor {
        guard let weight else { preconditionFailure("Embedding used before bind") }
        output.resize(to: ids.shape + [dimension])
        EmbeddingKernel.forward(output: output.data, ids: ids.data, weight: weight.value,
                                count: ids.count, dimension: dimension, vocabularySize: vocabularySize)
        input = mode == .training ? ids : nil
        return output
    }

    /// Scatter-adds dY into the weight gradient (unless the weight is fixed); returns zeros when an input gradient is asked for.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let weight, let ids = input else { preconditionFailure("Embedding.backward without a training forward") }
        if !weight.isFixed {
            EmbeddingKernel.backward(dWeight: weight.gradient, dOutput: dY.data, ids: ids.data, count: ids.count, dimension: dimension)
        }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: ids.shape)
        inputGradient.zero()
        return inputGradient
    }
}
