// MultiHeadAttention: BERT's self-attention block, projections included:
//   Q, K, V = x W_qᵀ + b_q, …;  context = softmax(Q Kᵀ/sqrt(headSize) + maskBias) V per head;
//   y = context W_oᵀ + b_o.
//
// Parameter names map one-to-one onto Hugging Face BertLayer's (prefix `attention.`):
//   query.weight/bias   ↔ attention.self.query.weight/bias
//   key.weight/bias     ↔ attention.self.key.weight/bias
//   value.weight/bias   ↔ attention.self.value.weight/bias
//   output.weight/bias  ↔ attention.output.dense.weight/bias
// (attention.output.LayerNorm belongs to `TransformerEncoderLayer`, as `attention_norm`.)
//
// Padding: the layer reads the shared `AttentionMask` (see AttentionMask.swift) during forward;
// padded keys get the lowest finite Float as score bias (`AttentionKernel.maskedScoreBias`, what
// Hugging Face uses), so they receive exactly zero attention. Padded queries still produce outputs;
// downstream masked pooling or a masked loss ignores them.
//
// Dropout on the attention probabilities (HF's attention_probs_dropout_prob) is drawn from a
// seeded SplitMix64; it is active only in `.training` mode.
import ThawKernels

/// Multi-head self-attention with query, key, value and output projections.
public final class MultiHeadAttention: Layer, RandomLayer {
    /// The model width D.
    public let hiddenSize: Int
    /// The number of heads H.
    public let headCount: Int
    /// The width of each head, D / H.
    public let headSize: Int
    /// Dropout probability on the attention probabilities (training only).
    public var dropoutProbability: Float { dropout.probability }
    /// The shared padding mask read during forward; nil treats every token as real.
    public var attentionMask: AttentionMask?

    /// The query projection (HF `attention.self.query`).
    public let query: Linear
    /// The key projection (HF `attention.self.key`).
    public let key: Linear
    /// The value projection (HF `attention.self.value`).
    public let value: Linear
    /// The output projection (HF `attention.output.dense`).
    public let output: Linear
    /// Standard deviation of the weights' normal initialization (BERT's initializer range).
    public let initializerRange: Float

    private let dropout: SeededDropoutMask
    private let context = Tensor(shape: [0])
    private let probabilities = Tensor(shape: [0])
    private let scratch = Tensor(shape: [0])
    private let queryGradient = Tensor(shape: [0])
    private let keyGradient = Tensor(shape: [0])
    private let valueGradient = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    /// The projected Q, K, V of the last training forward (owned by the projections), and whether dropout ran.
    private var saved: (query: Tensor, key: Tensor, value: Tensor, dropout: Bool)?

    /// Creates a self-attention block.
    /// - Parameters:
    ///   - hiddenSize: The model width D; must be a multiple of `headCount`.
    ///   - headCount: The number of heads.
    ///   - dropout: Dropout probability on the attention probabilities, in [0, 1).
    ///   - attentionMask: The shared padding mask, or nil for none.
    ///   - seed: Seed for the dropout generator.
    ///   - initializerRange: Standard deviation of the initial weights (biases start at zero).
    public init(hiddenSize: Int, headCount: Int, dropout: Float = 0, attentionMask: AttentionMask? = nil,
                seed: UInt64 = 0, initializerRange: Float = 0.02) {
        precondition(headCount > 0 && hiddenSize % headCount == 0, "hiddenSize \(hiddenSize) is not a multiple of headCount \(headCount)")
        self.hiddenSize = hiddenSize
        self.headCount = headCount
        self.headSize = hiddenSize / headCount
        self.attentionMask = attentionMask
        self.initializerRange = initializerRange
        self.dropout = SeededDropoutMask(probability: dropout, seed: seed)
        query = Linear(hiddenSize, hiddenSize)
        key = Linear(hiddenSize, hiddenSize)
        value = Linear(hiddenSize, hiddenSize)
        output = Linear(hiddenSize, hiddenSize)
    }

    private var namedProjections: [(name: String, layer: Linear)] {
        [("query", query), ("key", key), ("value", value), ("output", output)]
    }

    /// `query.*`, `key.*`, `value.*`, `output.*` (weight `[D, D]`, bias `[D]` each), BERT-initialized.
    public var parameterSpecs: [ParameterSpec] {
        namedProjections.flatMap { child in
            bertInitialized(child.layer.parameterSpecs, range: initializerRange).map {
                ParameterSpec("\(child.name).\($0.name)", shape: $0.shape, initializer: $0.initializer)
            }
        }
    }

    /// Hands each projection its run of views (weight and bias, and an adapter's when attached).
    public func bind(parameters: [ParameterView], state: [StateView]) {
        var p = 0
        for child in namedProjections {
            let count = child.layer.parameterSpecs.count
            child.layer.bind(parameters: Array(parameters[p..<(p + count)]), state: [])
            p += count
        }
    }

    /// The four projections, as their parameters are named.
    public var namedChildren: [(name: String, layer: any Layer)] { namedProjections.map { ($0.name, $0.layer) } }

    /// Restarts the dropout generator from `seed`.
    public func reseed(_ seed: UInt64) { dropout.reseed(seed) }

    /// `[N, T, hiddenSize]` maps to itself.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3, inputShape[2] == hiddenSize else {
            throw ShapeError(layer: "MultiHeadAttention", shape: inputShape, expected: "[N, T, \(hiddenSize)]")
        }
        return inputShape
    }

    /// Projects, attends and projects back. In training keeps Q, K, V, the probabilities and the dropout mask.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        precondition(x.shape.count == 3 && x.shape[2] == hiddenSize, "MultiHeadAttention: input \(x.shape) is not [N, T, \(hiddenSize)]")
        let (batch, length) = (x.shape[0], x.shape[1])
        let training = mode == .training
        let q = query.forward(x, mode: mode)
        let k = key.forward(x, mode: mode)
        let v = value.forward(x, mode: mode)
        let useDropout = training && dropout.isActive
        if useDropout { dropout.draw(shape: [batch, headCount, length, length]) }
        if training { probabilities.resize(to: [batch, headCount, length, length]) }
        scratch.resize(to: [AttentionKernel.scratchCount(sequenceLength: length)])
        context.resize(to: x.shape)
        AttentionKernel.forward(
            context: context.data, probabilities: training ? probabilities.data : nil, scratch: scratch.data,
            query: q.data, key: k.data, value: v.data,
            keyMask: attentionMask?.data(batch: batch, sequenceLength: length, layer: "MultiHeadAttention"),
            dropoutMask: useDropout ? UnsafePointer(dropout.mask.data) : nil,
            batch: batch, sequenceLength: length, headCount: headCount, headSize: headSize)
        saved = training ? (q, k, v, useDropout) : nil
        return output.forward(context, mode: mode)
    }

    /// The attention probabilities of the last training forward, `[N, H, T, T]` (before dropout).
    ///
    /// Valid only after a `.training` forward; for tests and inspection.
    public var lastProbabilities: Tensor? { saved == nil ? nil : probabilities }

    /// Backpropagates through the output projection, attention and the three input projections.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let saved else { preconditionFailure("MultiHeadAttention.backward without a training forward") }
        guard let dContext = output.backward(dY, computeInputGradient: true) else {
            preconditionFailure("Linear.backward returned no input gradient when asked")
        }
        let shape = saved.query.shape
        let (batch, length) = (shape[0], shape[1])
        queryGradient.resize(to: shape)
        keyGradient.resize(to: shape)
        valueGradient.resize(to: shape)
        scratch.resize(to: [AttentionKernel.scratchCount(sequenceLength: length)])
        AttentionKernel.backward(
            dQuery: queryGradient.data, dKey: keyGradient.data, dValue: valueGradient.data,
            scratch: scratch.data, dContext: dContext.data,
            query: saved.query.data, key: saved.key.data, value: saved.value.data,
            probabilities: probabilities.data, dropoutMask: saved.dropout ? UnsafePointer(dropout.mask.data) : nil,
            batch: batch, sequenceLength: length, headCount: headCount, headSize: headSize)
        let fromQuery = query.backward(queryGradient, computeInputGradient: computeInputGradient)
        let fromKey = key.backward(keyGradient, computeInputGradient: computeInputGradient)
        let fromValue = value.backward(valueGradient, computeInputGradient: computeInputGradient)
        guard computeInputGradient, let fromQuery, let fromKey, let fromValue else { return nil }
        inputGradient.resize(to: shape)
        let (dx, a, b, c) = (inputGradient.data, fromQuery.data, fromKey.data, fromValue.data)
        for i in 0..<inputGradient.count { dx[i] = a[i] + b[i] + c[i] }
        return inputGradient
    }
}
