// BERTEmbeddings: the input side of a BERT encoder, in Hugging Face BertEmbeddings' layout, and the
// layer that derives the padding mask from the token ids.
//
//   x[n, t] = LayerNorm(word[id[n, t]] + position[t] + tokenType[0])
//
// Parameter names are HF's (prefix `embeddings.`): `word_embeddings.weight`,
// `position_embeddings.weight`, `token_type_embeddings.weight`, `LayerNorm.weight/bias`.
// Positions are 0..<T and every token type is 0 (single-sentence input). As in HF, whose word
// embedding has `padding_idx = pad_token_id`, the padding id's row receives no gradient.
//
// Note: ids as the only input. The trainer passes one tensor per batch: `[N, T]` token ids stored as
// Float, padded with the pad id. `PaddingMaskFromIds` runs first and sets the shared
// `AttentionMask` from them (pad id → 0, anything else → 1, position 0 always 1: it is [CLS], and a
// batch-padding row of all zeros then still has one real token, so no row is empty). Forward cannot
// throw, so ids are validated before training: `PaddingMaskFromIds.validate(ids:)` throws an
// `EmbeddingError`, and ModelZoo checks every sample of every dataset with it once per run.
import ThawKernels

/// Word, position and token-type embeddings, summed and layer-normalized (HF BertEmbeddings).
public final class BERTEmbeddings: Layer {
    /// The number of token ids (rows of the word table).
    public let vocabularySize: Int
    /// The model width D.
    public let hiddenSize: Int
    /// The longest sequence the position table covers.
    public let maximumPositions: Int
    /// The number of token types (rows of the token-type table).
    public let typeVocabularySize: Int
    /// The padding id, whose word row gets no gradient.
    public let padTokenId: Int
    /// Standard deviation of the tables' normal initialization.
    public let initializerRange: Float
    /// The LayerNorm after the sum (HF `embeddings.LayerNorm`).
    public let layerNorm: LayerNorm

    private var word: ParameterView?
    private var position: ParameterView?
    private var tokenType: ParameterView?
    private let sum = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var ids: Tensor?

    /// Creates the embeddings.
    /// - Parameters:
    ///   - vocabularySize: Token ids `0..<vocabularySize`.
    ///   - hiddenSize: The model width.
    ///   - maximumPositions: The position table's length (the longest sequence).
    ///   - typeVocabularySize: Token types (BERT: 2; only type 0 is used).
    ///   - padTokenId: The padding id.
    ///   - layerNormEpsilon: LayerNorm epsilon (BERT: 1e-12).
    ///   - initializerRange: Standard deviation of the initial tables (BERT: 0.02).
    public init(vocabularySize: Int, hiddenSize: Int, maximumPositions: Int, typeVocabularySize: Int, padTokenId: Int = 0,
                layerNormEpsilon: Float = 1e-12, initializerRange: Float = 0.02) {
        precondition(typeVocabularySize >= 1 && maximumPositions >= 1 && (0..<vocabularySize).contains(padTokenId),
                     "BERTEmbeddings: invalid sizes")
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.maximumPositions = maximumPositions
        self.typeVocabularySize = typeVocabularySize
        self.padTokenId = padTokenId
        self.initializerRange = initializerRange
        self.layerNorm = LayerNorm(hiddenSize, epsilon: layerNormEpsilon)
    }

    /// `word_embeddings.weight`, `position_embeddings.weight`, `token_type_embeddings.weight`
    /// (normal(0, initializerRange)), then `LayerNorm.weight`, `LayerNorm.bias`: HF's state-dict order.
    public var parameterSpecs: [ParameterSpec] {
        let normal = ParameterInitializer.normal(standardDeviation: initializerRange)
        return [ParameterSpec("word_embeddings.weight", shape: [vocabularySize, hiddenSize], initializer: normal),
                ParameterSpec("position_embeddings.weight", shape: [maximumPositions, hiddenSize], initializer: normal),
                ParameterSpec("token_type_embeddings.weight", shape: [typeVocabularySize, hiddenSize], initializer: normal)]
            + layerNorm.parameterSpecs.map { ParameterSpec("LayerNorm.\($0.name)", shape: $0.shape, initializer: $0.initializer) }
    }

    /// Binds the three tables and the LayerNorm.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        word = parameters[0]
        position = parameters[1]
        tokenType = parameters[2]
        layerNorm.bind(parameters: Array(parameters[3...]), state: [])
    }

    /// The LayerNorm.
    public var children: [any Layer] { [layerNorm] }

    /// The LayerNorm, as its parameters are named.
    public var namedChildren: [(name: String, layer: any Layer)] { [("LayerNorm", layerNorm)] }

    /// `[N, T]` ids with 1 ≤ T ≤ maximumPositions → `[N, T, hiddenSize]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 2, inputShape[1] >= 1, inputShape[1] <= maximumPositions else {
            throw ShapeError(layer: "BERTEmbeddings", shape: inputShape,
                             expected: "[N, T] token ids with 1 ≤ T ≤ \(maximumPositions) (max_position_embeddings)")
        }
        return inputShape + [hiddenSize]
    }

    /// Looks up and sums the three embeddings, then normalizes. Ids must have been validated.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard let word, let position, let tokenType else { preconditionFailure("BERTEmbeddings used before bind") }
        precondition(x.shape.count == 2 && x.shape[1] <= maximumPositions, "BERTEmbeddings: input \(x.shape) is not [N, T ≤ \(maximumPositions)]")
        let (batch, length) = (x.shape[0], x.shape[1])
        sum.resize(to: [batch, length, hiddenSize])
        EmbeddingKernel.forward(output: sum.data, ids: x.data, weight: word.value, count: x.count,
                                dimension: hiddenSize, vocabularySize: vocabularySize)
        // Legend: D width, s row of the sum, p position row, k token-type row 0.
        let D = hiddenSize
        let k = tokenType.value
        for n in 0..<batch {
            for t in 0..<length {
                let s = sum.data + (n * length + t) * D
                let p = position.value + t * D
                for i in 0..<D { s[i] += p[i] + k[i] }
            }
        }
        ids = mode == .training ? x : nil
        return layerNorm.forward(sum, mode: mode)
    }

    /// Accumulates the tables' and the LayerNorm's gradients. Ids are not differentiable: asked for an
    /// input gradient, returns zeros of the ids' shape (as `Embedding` does).
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let word, let position, let tokenType, let ids else { preconditionFailure("BERTEmbeddings.backward without a training forward") }
        // Fixed tables (the base weights under adapters) get nothing, and need no gradient of the sum.
        let tablesTrain = !(word.isFixed && position.isFixed && tokenType.isFixed)
        let dSum = layerNorm.backward(dY, computeInputGradient: tablesTrain)
        if let dSum {
            let (batch, length) = (ids.shape[0], ids.shape[1])
            if !word.isFixed {
                EmbeddingKernel.backward(dWeight: word.gradient, dOutput: dSum.data, ids: ids.data, count: ids.count,
                                         dimension: hiddenSize, paddingId: padTokenId)
            }
            // Legend: D width, g output-gradient row, dp position-gradient row, dk token-type-0 gradient row.
            let D = hiddenSize
            for n in 0..<batch {
                for t in 0..<length {
                    let g = dSum.data + (n * length + t) * D
                    if !position.isFixed {
                        let dp = position.gradient + t * D
                        for i in 0..<D { dp[i] += g[i] }
                    }
                    if !tokenType.isFixed {
                        let dk = tokenType.gradient
                        for i in 0..<D { dk[i] += g[i] }
                    }
                }
            }
        }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: ids.shape)
        inputGradient.zero()
        return inputGradient
    }
}

/// The first layer of a BERT model: sets the shared ``AttentionMask`` from the batch's token ids and
/// passes the ids on unchanged. It has no parameters.
///
/// The mask is 0 where the id is `padTokenId` and 1 elsewhere, except that position 0 is always 1.
public final class PaddingMaskFromIds: Layer, RawInputObserver {
    /// The mask that attention and mean pooling read.
    public let attentionMask: AttentionMask
    /// The padding id (BERT: 0).
    public let padTokenId: Int
    /// Valid ids are `0..<vocabularySize`.
    public let vocabularySize: Int

    private let mask = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int]?

    /// Creates the layer.
    /// - Parameters:
    ///   - attentionMask: The mask shared with the model's attention and pooling layers.
    ///   - padTokenId: The padding id.
    ///   - vocabularySize: The vocabulary size, for `validate(ids:)`.
    public init(attentionMask: AttentionMask, padTokenId: Int, vocabularySize: Int) {
        self.attentionMask = attentionMask
        self.padTokenId = padTokenId
        self.vocabularySize = vocabularySize
    }

    /// `[N, T]` with T ≥ 1 maps to itself.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 2, inputShape[1] >= 1 else {
            throw ShapeError(layer: "PaddingMaskFromIds", shape: inputShape, expected: "[N, T] token ids with T ≥ 1")
        }
        return inputShape
    }

    /// Checks that every id is an integer in `0..<vocabularySize` (see "Note: ids as the only input").
    /// - Throws: ``EmbeddingError`` for the first invalid id, with its `[n, t]` position.
    public func validate(ids: Tensor) throws(EmbeddingError) {
        guard let index = EmbeddingKernel.firstInvalidIndex(ids: ids.data, count: ids.count, vocabularySize: vocabularySize) else { return }
        let length = max(ids.shape.last ?? 1, 1)
        throw EmbeddingError(id: ids.data[index], position: ids.shape.count >= 2 ? [index / length, index % length] : [index],
                             vocabularySize: vocabularySize)
    }

    /// Sets the mask from the ids and returns the ids.
    public func forward(_ ids: Tensor, mode: LayerMode) -> Tensor {
        precondition(ids.shape.count == 2 && ids.shape[1] >= 1, "PaddingMaskFromIds: input \(ids.shape) is not [N, T ≥ 1]")
        mask.resize(to: ids.shape)
        let (m, x, length) = (mask.data, ids.data, ids.shape[1])
        let pad = Float(padTokenId)
        for i in 0..<ids.count { m[i] = (x[i] == pad && i % length != 0) ? 0 : 1 }
        do { try attentionMask.set(mask) } catch { preconditionFailure("a derived mask of 0 and 1 was rejected: \(error)") }
        inputShape = mode == .training ? ids.shape : nil
        return ids
    }

    /// Sets the mask from the raw ids when the forward pass starts above this layer (frozen-prefix cache).
    public func observe(rawInput ids: Tensor) { _ = forward(ids, mode: .inference) }

    /// Ids are not differentiable: zeros when an input gradient is asked for, else nil.
    public func backward(_ outputGradient: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("PaddingMaskFromIds.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: shape)
        inputGradient.zero()
        return inputGradient
    }
}
