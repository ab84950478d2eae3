// LowRankAdapter: LoRA (Hu et al. 2021) on a linear layer, y = W·x + b + (alpha/rank)·B·A·dropout(x).
//
// A is `[rank, in]` and starts Kaiming-uniform (PEFT's `kaiming_uniform_(a=√5)`, which is ±1/√in),
// B is `[out, rank]` and starts at zero, so an adapted model's first forward is the base model's.
// The parameters are named as PEFT names them inside the adapted module, `lora_A.weight` and
// `lora_B.weight`, so a Hugging Face name maps to PEFT's key by the architecture's usual table.
//
// The adapter adds into the linear layer's output and input gradient (llm.c style, no extra
// tensors of the output's size): forward keeps h = s·A·dropout(x), `[rows, rank]`, for backward.
//
// Legend (inside the math): s = alpha/rank, x input rows, d dropout(x), h = s·d·Aᵀ, g output gradient.
import ThawKernels

/// A low-rank update attached to a ``Linear`` layer (see ``Linear/attachAdapter(rank:alpha:dropout:seed:)``).
public final class LowRankAdapter {
    /// The rank r of the update.
    public let rank: Int
    /// LoRA's alpha; the update is scaled by alpha / rank.
    public let alpha: Float
    /// The dropout on the adapter's input (PEFT's `lora_dropout`), or nil for none.
    public let dropout: Dropout?
    /// The adapted layer's input features.
    public let inputDimensions: Int
    /// The adapted layer's output features.
    public let outputDimensions: Int

    private var down: ParameterView?
    private var up: ParameterView?
    private let hidden = Tensor(shape: [0])
    private let hiddenGradient = Tensor(shape: [0])
    private let droppedInputGradient = Tensor(shape: [0])
    private var droppedInput: Tensor?

    init(rank: Int, alpha: Float, dropout: Float, seed: UInt64, inputDimensions: Int, outputDimensions: Int) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout > 0 ? Dropout(probability: dropout, seed: seed) : nil
        self.inputDimensions = inputDimensions
        self.outputDimensions = outputDimensions
    }

    /// alpha / rank.
    public var scale: Float { alpha / Float(rank) }

    /// `lora_A.weight` `[rank, in]` (Kaiming-uniform) and `lora_B.weight` `[out, rank]` (zeros).
    var parameterSpecs: [ParameterSpec] {
        [ParameterSpec("lora_A.weight", shape: [rank, inputDimensions], initializer: .uniformFanIn(inputDimensions)),
         ParameterSpec("lora_B.weight", shape: [outputDimensions, rank], initializer: .zeros)]
    }

    func bind(_ parameters: ArraySlice<ParameterView>) {
        down = parameters[parameters.startIndex]
        up = parameters[parameters.startIndex + 1]
    }

    /// Adds s·B·A·dropout(x) to `output` (`[rows, out]`).
    func forward(_ x: Tensor, addingTo output: Tensor, mode: LayerMode) {
        guard let down, let up else { preconditionFailure("LowRankAdapter used before bind") }
        let rows = x.count / inputDimensions
        let d = dropout.map { $0.forward(x, mode: mode) } ?? x
        hidden.resize(to: [rows, rank])
        Gemm.multiply(.none, .transposed, m: rows, n: rank, k: inputDimensions, alpha: scale,
                      a: d.data, b: down.value, beta: 0, c: hidden.data)
        Gemm.multiply(.none, .transposed, m: rows, n: outputDimensions, k: rank,
                      a: hidden.data, b: up.value, beta: 1, c: output.data)
        droppedInput = mode == .training ? d : nil
    }

    /// dB += gᵀ·h, dA += s·(g·B)ᵀ·d, and, when `inputGradient` is given, adds s·(g·B)·A through the
    /// dropout mask into it (`[rows, in]`).
    func backward(_ g: Tensor, addingTo inputGradient: Tensor?) {
        guard let down, let up, let d = droppedInput else { preconditionFailure("LowRankAdapter.backward without a training forward") }
        let rows = d.count / inputDimensions
        Gemm.multiply(.transposed, .none, m: outputDimensions, n: rank, k: rows,
                      a: g.data, b: hidden.data, beta: 1, c: up.gradient)
        hiddenGradient.resize(to: [rows, rank])
        Gemm.multiply(.none, .none, m: rows, n: rank, k: outputDimensions, alpha: scale,
                      a: g.data, b: up.value, beta: 0, c: hiddenGradient.data)
        Gemm.multiply(.transposed, .none, m: rank, n: inputDimensions, k: rows,
                      a: hiddenGradient.data, b: d.data, beta: 1, c: down.gradient)
        guard let inputGradient else { return }
        guard let dropout else {
            Gemm.multiply(.none, .none, m: rows, n: inputDimensions, k: rank,
                          a: hiddenGradient.data, b: down.value, beta: 1, c: inputGradient.data)
            return
        }
        droppedInputGradient.resize(to: d.shape)
        Gemm.multiply(.none, .none, m: rows, n: inputDimensions, k: rank,
                      a: hiddenGradient.data, b: down.value, beta: 0, c: droppedInputGradient.data)
        guard let throughMask = dropout.backward(droppedInputGradient, computeInputGradient: true) else {
            preconditionFailure("Dropout returned no input gradient when asked")
        }
        let (dx, t) = (inputGradient.data, throughMask.data)
        for i in 0..<inputGradient.count { dx[i] += t[i] }
    }

    /// Folds an update into a weight `[out, in]`: W += s·B·A, with A `[rank, in]` and B `[out, rank]`
    /// (what `thaw export --merge-adapters` writes).
    public static func merge(into weight: UnsafeMutablePointer<Float>, down: UnsafePointer<Float>, up: UnsafePointer<Float>,
                             rank: Int, inputDimensions: Int, outputDimensions: Int, scale: Float) {
        Gemm.multiply(.none, .none, m: outputDimensions, n: inputDimensions, k: rank, alpha: scale,
                      a: up, b: down, beta: 1, c: weight)
    }
}
