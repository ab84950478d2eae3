// Linear: y = x Wᵀ + b over the last dimension, with PyTorch's weight layout [out, in], and
// optionally a LoRA update (LowRankAdapter.swift). A fixed weight or bias (the base weights under
// adapters, see "Note: parameter groups") gets no gradient; the input gradient is still computed.
import ThawKernels

/// A fully connected layer. Weight is `[outputDimensions, inputDimensions]`, bias `[outputDimensions]`.
///
/// Inputs of any rank are treated as `[rows, inputDimensions]`, so the same layer serves
/// classifier heads (`[N, D]`) and transformer projections (`[N, T, D]`).
public final class Linear: Layer {
    /// Input features.
    public let inputDimensions: Int
    /// Output features.
    public let outputDimensions: Int
    /// Whether there is a bias term.
    public let hasBias: Bool

    /// The attached LoRA update, if any.
    public private(set) var adapter: LowRankAdapter?

    private var weight: ParameterView?
    private var bias: ParameterView?
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var input: Tensor?

    /// Creates a linear layer.
    public init(_ inputDimensions: Int, _ outputDimensions: Int, bias: Bool = true) {
        self.inputDimensions = inputDimensions
        self.outputDimensions = outputDimensions
        self.hasBias = bias
    }

    /// Attaches a LoRA update of `rank` scaled by `alpha / rank`, with dropout `dropout` on its input.
    /// Must happen before a ``Model`` lays the layer out; attaching twice replaces nothing and throws.
    /// - Throws: ``AdapterError`` for a rank outside 1...min(in, out) or a second adapter.
    public func attachAdapter(rank: Int, alpha: Float, dropout: Float = 0, seed: UInt64 = 0) throws(AdapterError) {
        let layer = "Linear(\(inputDimensions) → \(outputDimensions))"
        guard adapter == nil else { throw AdapterError(layer: layer, reason: .alreadyAdapted) }
        let width = min(inputDimensions, outputDimensions)
        guard rank >= 1, rank <= width else { throw AdapterError(layer: layer, reason: .rank(rank, width: width)) }
        adapter = LowRankAdapter(rank: rank, alpha: alpha, dropout: dropout, seed: seed,
                                 inputDimensions: inputDimensions, outputDimensions: outputDimensions)
    }

    /// `weight` and optionally `bias`, initialized like PyTorch, then the adapter's `lora_A.weight` and `lora_B.weight`.
    public var parameterSpecs: [ParameterSpec] {
        var specs = [ParameterSpec("weight", shape: [outputDimensions, inputDimensions], initializer: .uniformFanIn(inputDimensions))]
        if hasBias { specs.append(ParameterSpec("bias", shape: [outputDimensions], initializer: .uniformFanIn(inputDimensions))) }
        return specs + (adapter?.parameterSpecs ?? [])
    }

    /// Binds weight, bias and adapter views.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        weight = parameters[0]
        bias = hasBias ? parameters[1] : nil
        adapter?.bind(parameters[(hasBias ? 2 : 1)...])
    }

    /// The adapter's dropout, the only nested layer (so the trainer reseeds it).
    public var children: [any Layer] { adapter?.dropout.map { [$0] } ?? [] }

    /// `[..., inputDimensions]` → `[..., outputDimensions]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard let last = inputShape.last, last == inputDimensions, inputShape.count >= 2 else {
            throw ShapeError(layer: "Linear", shape: inputShape, expected: "[..., \(inputDimensions)]")
        }
        return inputShape.dropLast() + [outputDimensions]
    }

    /// y = x Wᵀ + b.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard let weight else { preconditionFailure("Linear used before bind") }
        let rows = x.count / inputDimensions
        output.resize(to: x.shape.dropLast() + [outputDimensions])
        if let bias {
            for r in 0..<rows { (output.data + r * outputDimensions).update(from: bias.value, count: outputDimensions) }
        }
        Gemm.multiply(.none, .transposed, m: rows, n: outputDimensions, k: inputDimensions,
                      a: x.data, b: weight.value, beta: hasBias ? 1 : 0, c: output.data)
        adapter?.forward(x, addingTo: output, mode: mode)
        input = mode == .training ? x : nil
        return output
    }

    /// dW += dYᵀ x, db += Σ dY (each unless fixed), dX = dY W, plus the adapter's terms.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let weight, let x = input else { preconditionFailure("Linear.backward without a training forward") }
        let rows = x.count / inputDimensions
        if !weight.isFixed {
            Gemm.multiply(.transposed, .none, m: outputDimensions, n: inputDimensions, k: rows,
                          a: dY.data, b: x.data, beta: 1, c: weight.gradient)
        }
        if let bias, !bias.isFixed {
            for r in 0..<rows {
                let row = dY.data + r * outputDimensions
                for o in 0..<outputDimensions { bias.gradient[o] += row[o] }
            }
        }
        guard computeInputGradient else {
            adapter?.backward(dY, addingTo: nil)
            return nil
        }
        inputGradient.resize(to: x.shape)
        Gemm.multiply(.none, .none, m: rows, n: inputDimensions, k: outputDimensions,
                      a: dY.data, b: weight.value, beta: 0, c: inputGradient.data)
        adapter?.backward(dY, addingTo: inputGradient)
        return inputGradient
    }
}
