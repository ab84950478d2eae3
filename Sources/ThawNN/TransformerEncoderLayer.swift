// TransformerEncoderLayer: one post-LayerNorm BERT encoder layer (Hugging Face BertLayer):
//   h = LN₁(x + dropout(Attention(x)))
//   y = LN₂(h + dropout(W₂ · GELU(W₁ h + b₁) + b₂))
//
// Children and their Hugging Face names (HF prefix: `encoder.layer.<i>.`):
//   attention.query.*   ↔ attention.self.query.*
//   attention.key.*     ↔ attention.self.key.*
//   attention.value.*   ↔ attention.self.value.*
//   attention.output.*  ↔ attention.output.dense.*
//   attention_norm.*    ↔ attention.output.LayerNorm.*
//   intermediate.*      ↔ intermediate.dense.*
//   output.*            ↔ output.dense.*
//   output_norm.*       ↔ output.LayerNorm.*
// `huggingFaceName(for:)` applies this table. Parameters are laid out in HF's state-dict order.
//
// Dropout: `attentionDropout` is HF's attention_probs_dropout_prob, `hiddenDropout` its
// hidden_dropout_prob (after each dense output, before the residual add). Both are drawn from
// seeded SplitMix64 generators (`reseed(_:)`) and are the identity in `.inference` mode.
import ThawKernels

/// A BERT encoder layer: self-attention and a GELU feed-forward block, each with a residual and LayerNorm.
public final class TransformerEncoderLayer: Layer, RandomLayer {
    /// The self-attention block (HF `attention.self` and `attention.output.dense`).
    public let attention: MultiHeadAttention
    /// The LayerNorm after the attention residual (HF `attention.output.LayerNorm`).
    public let attentionNorm: LayerNorm
    /// The feed-forward expansion, hidden → intermediate (HF `intermediate.dense`).
    public let intermediate: Linear
    /// The feed-forward activation (exact GELU).
    public let activation = GELU()
    /// The feed-forward contraction, intermediate → hidden (HF `output.dense`).
    public let output: Linear
    /// The LayerNorm after the feed-forward residual (HF `output.LayerNorm`).
    public let outputNorm: LayerNorm
    /// The model width.
    public let hiddenSize: Int
    /// The feed-forward width.
    public let intermediateSize: Int
    /// Standard deviation of the weights' normal initialization.
    public let initializerRange: Float

    private let attentionOutputDropout: SeededDropoutMask
    private let feedForwardDropout: SeededDropoutMask
    private let attentionSum = Tensor(shape: [0])
    private let outputSum = Tensor(shape: [0])
    private let droppedGradient = Tensor(shape: [0])
    private let hiddenGradient = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var trainedDropout = false
    private var trained = false

    /// The local-to-Hugging-Face name table, by local prefix.
    public static let huggingFaceNames: [(local: String, huggingFace: String)] = [
        ("attention.query.", "attention.self.query."),
        ("attention.key.", "attention.self.key."),
        ("attention.value.", "attention.self.value."),
        ("attention.output.", "attention.output.dense."),
        ("attention_norm.", "attention.output.LayerNorm."),
        ("intermediate.", "intermediate.dense."),
        ("output.", "output.dense."),
        ("output_norm.", "output.LayerNorm."),
    ]

    /// The Hugging Face BertLayer parameter name for a local one (`attention_norm.weight` →
    /// `attention.output.LayerNorm.weight`), or nil for a name this layer does not have.
    public static func huggingFaceName(for localName: String) -> String? {
        for entry in huggingFaceNames where localName.hasPrefix(entry.local) {
            return entry.huggingFace + localName.dropFirst(entry.local.count)
        }
        return nil
    }

    /// Creates an encoder layer.
    /// - Parameters:
    ///   - hiddenSize: The model width (BERT-base: 768).
    ///   - headCount: Attention heads (BERT-base: 12).
    ///   - intermediateSize: Feed-forward width (BERT-base: 3072).
    ///   - attentionDropout: Dropout on attention probabilities.
    ///   - hiddenDropout: Dropout on each block's output before its residual add.
    ///   - layerNormEpsilon: LayerNorm epsilon (BERT: 1e-12).
    ///   - attentionMask: The shared padding mask, or nil for none.
    ///   - seed: Seed for the dropout generators.
    ///   - initializerRange: Standard deviation of the initial weights (BERT: 0.02).
    public init(hiddenSize: Int, headCount: Int, intermediateSize: Int,
                attentionDropout: Float = 0, hiddenDropout: Float = 0, layerNormEpsilon: Float = 1e-12,
                attentionMask: AttentionMask? = nil, seed: UInt64 = 0, initializerRange: Float = 0.02) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.initializerRange = initializerRange
        attention = MultiHeadAttention(hiddenSize: hiddenSize, headCount: headCount, dropout: attentionDropout,
                                       attentionMask: attentionMask, seed: SplitMix64.mix(seed, 0), initializerRange: initializerRange)
        attentionNorm = LayerNorm(hiddenSize, epsilon: layerNormEpsilon)
        intermediate = Linear(hiddenSize, intermediateSize)
        output = Linear(intermediateSize, hiddenSize)
        outputNorm = LayerNorm(hiddenSize, epsilon: layerNormEpsilon)
        self.attentionOutputDropout = SeededDropoutMask(probability: hiddenDropout, seed: SplitMix64.mix(seed, 1))
        self.feedForwardDropout = SeededDropoutMask(probability: hiddenDropout, seed: SplitMix64.mix(seed, 2))
    }

    /// Dropout probability on each block's output before its residual add (HF hidden_dropout_prob).
    public var hiddenDropoutProbability: Float { attentionOutputDropout.probability }

    /// Dropout probability on the attention probabilities (HF attention_probs_dropout_prob).
    public var attentionDropoutProbability: Float { attention.dropoutProbability }

    /// The attention mask shared with the attention block.
    public var attentionMask: AttentionMask? {
        get { attention.attentionMask }
        set { attention.attentionMask = newValue }
    }

    /// The blocks, under the names their parameters carry.
    public var namedChildren: [(name: String, layer: any Layer)] {
        [("attention", attention), ("attention_norm", attentionNorm), ("intermediate", intermediate),
         ("activation", activation), ("output", output), ("output_norm", outputNorm)]
    }

    /// The children's parameters with local prefixes, in HF state-dict order.
    public var parameterSpecs: [ParameterSpec] {
        namedChildren.flatMap { child in
            let specs = child.layer is Linear ? bertInitialized(child.layer.parameterSpecs, range: initializerRange) : child.layer.parameterSpecs
            return specs.map { ParameterSpec("\(child.name).\($0.name)", shape: $0.shape, initializer: $0.initializer) }
        }
    }

    /// Hands each child its run of views.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        var p = 0
        for child in namedChildren {
            let count = child.layer.parameterSpecs.count
            child.layer.bind(parameters: Array(parameters[p..<(p + count)]), state: [])
            p += count
        }
    }


    /// Restarts every dropout generator in the layer from `seed`.
    public func reseed(_ seed: UInt64) {
        attention.reseed(SplitMix64.mix(seed, 0))
        attentionOutputDropout.reseed(SplitMix64.mix(seed, 1))
        feedForwardDropout.reseed(SplitMix64.mix(seed, 2))
    }

    /// `[N, T, hiddenSize]` maps to itself.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3, inputShape[2] == hiddenSize else {
            throw ShapeError(layer: "TransformerEncoderLayer", shape: inputShape, expected: "[N, T, \(hiddenSize)]")
        }
        return inputShape
    }

    /// Runs attention and feed-forward with their residuals and LayerNorms.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        let useDropout = mode == .training && attentionOutputDropout.isActive
        let attended = attention.forward(x, mode: mode)
        addResidual(into: attentionSum, x, attended, dropout: useDropout ? attentionOutputDropout : nil)
        let hidden = attentionNorm.forward(attentionSum, mode: mode)
        let expanded = activation.forward(intermediate.forward(hidden, mode: mode), mode: mode)
        let contracted = output.forward(expanded, mode: mode)
        addResidual(into: outputSum, hidden, contracted, dropout: useDropout ? feedForwardDropout : nil)
        trained = mode == .training
        trainedDropout = useDropout
        return outputNorm.forward(outputSum, mode: mode)
    }

    /// sum = residual + dropout(branch), drawing a fresh mask when dropout is given.
    private func addResidual(into sum: Tensor, _ residual: Tensor, _ branch: Tensor, dropout: SeededDropoutMask?) {
        sum.resize(to: residual.shape)
        let (s, r, b) = (sum.data, residual.data, branch.data)
        if let dropout {
            dropout.draw(shape: residual.shape)
            let m = dropout.mask.data
            for i in 0..<sum.count { s[i] = r[i] + b[i] * m[i] }
        } else {
            for i in 0..<sum.count { s[i] = r[i] + b[i] }
        }
    }

    /// The branch gradient: dSum times the dropout mask when dropout ran, else dSum itself.
    private func branchGradient(_ dSum: Tensor, dropout: SeededDropoutMask) -> Tensor {
        guard trainedDropout else { return dSum }
        droppedGradient.resize(to: dSum.shape)
        let (d, g, m) = (droppedGradient.data, dSum.data, dropout.mask.data)
        for i in 0..<dSum.count { d[i] = g[i] * m[i] }
        return droppedGradient
    }

    /// Backpropagates through both sub-blocks; the residual paths add their gradients.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        precondition(trained, "TransformerEncoderLayer.backward without a training forward")
        guard let dOutputSum = outputNorm.backward(dY, computeInputGradient: true),
              let dExpanded = output.backward(branchGradient(dOutputSum, dropout: feedForwardDropout), computeInputGradient: true),
              let dIntermediate = activation.backward(dExpanded, computeInputGradient: true),
              let dHiddenBranch = intermediate.backward(dIntermediate, computeInputGradient: true)
        else { preconditionFailure("a child returned no input gradient when asked") }
        hiddenGradient.resize(to: dOutputSum.shape)
        let (h, a, b) = (hiddenGradient.data, dOutputSum.data, dHiddenBranch.data)
        for i in 0..<hiddenGradient.count { h[i] = a[i] + b[i] }
        guard let dAttentionSum = attentionNorm.backward(hiddenGradient, computeInputGradient: true) else {
            preconditionFailure("LayerNorm returned no input gradient when asked")
        }
        let dAttended = branchGradient(dAttentionSum, dropout: attentionOutputDropout)
        let dFromAttention = attention.backward(dAttended, computeInputGradient: computeInputGradient)
        guard computeInputGradient, let dFromAttention else { return nil }
        inputGradient.resize(to: dAttentionSum.shape)
        let (dx, r, c) = (inputGradient.data, dAttentionSum.data, dFromAttention.data)
        for i in 0..<inputGradient.count { dx[i] = r[i] + c[i] }
        return inputGradient
    }
}
