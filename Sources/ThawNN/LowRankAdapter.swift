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
// A 1×1 convolution is the same update on its channels (`AdapterInputLayout.channels`): each
// image's input is `[in, positions]`, so the products run per image with the operands the other way
// round, and the factors keep PEFT's convolution shapes `[rank, in, 1, 1]` and `[out, rank, 1, 1]`.
//
// Legend (inside the math): s = alpha/rank, x input, d dropout(x), h = s·A·d (the rank-sized
// hidden), g output gradient, u = s·Bᵀ·g (h's gradient), S positions per image, n image.
import ThawKernels

/// How an adapted layer's input is laid out.
public enum AdapterInputLayout: Sendable, Equatable {
    /// `[rows, in]`, features last: a linear layer.
    case rows
    /// `[N, in, H, W]`, channels first: a 1×1 convolution.
    case channels
}

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
    /// The input's layout.
    public let layout: AdapterInputLayout

    private var down: ParameterView?
    private var up: ParameterView?
    private let hidden = Tensor(shape: [0])
    private let hiddenGradient = Tensor(shape: [0])
    private let droppedInputGradient = Tensor(shape: [0])
    private var droppedInput: Tensor?

    init(rank: Int, alpha: Float, dropout: Float, seed: UInt64, inputDimensions: Int, outputDimensions: Int,
         layout: AdapterInputLayout = .rows) {
        self.layout = layout
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout > 0 ? Dropout(probability: dropout, seed: seed) : nil
        self.inputDimensions = inputDimensions
        self.outputDimensions = outputDimensions
    }

    /// alpha / rank.
    public var scale: Float { alpha / Float(rank) }

    /// `lora_A.weight` `[rank, in]` (Kaiming-uniform) and `lora_B.weight` `[out, rank]` (zeros), with
    /// trailing `1, 1` for a convolution.
    var parameterSpecs: [ParameterSpec] {
        let kernel = layout == .channels ? [1, 1] : []
        return [ParameterSpec("lora_A.weight", shape: [rank, inputDimensions] + kernel, initializer: .uniformFanIn(inputDimensions)),
                ParameterSpec("lora_B.weight", shape: [outputDimensions, rank] + kernel, initializer: .zeros)]
    }

    func bind(_ parameters: ArraySlice<ParameterView>) {
        down = parameters[parameters.startIndex]
        up = parameters[parameters.startIndex + 1]
    }

    /// Adds s·B·A·dropout(x) to `output` (`[rows, out]`, or `[N, out, H, W]` for channels).
    func forward(_ x: Tensor, addingTo output: Tensor, mode: LayerMode) {
        guard let down, let up else { preconditionFailure("LowRankAdapter used before bind") }
        let d = dropout.map { $0.forward(x, mode: mode) } ?? x
        switch layout {
        case .rows:
            let rows = x.count / inputDimensions
            hidden.resize(to: [rows, rank])
            Gemm.multiply(.none, .transposed, m: rows, n: rank, k: inputDimensions, alpha: scale,
                          a: d.data, b: down.value, beta: 0, c: hidden.data)
            Gemm.multiply(.none, .transposed, m: rows, n: outputDimensions, k: rank,
                          a: hidden.data, b: up.value, beta: 1, c: output.data)
        case .channels:
            let images = x.shape[0], S = x.count / max(images * inputDimensions, 1)
            hidden.resize(to: [images, rank, S])
            for n in 0..<images {
                let (dn, hn) = (d.data + n * inputDimensions * S, hidden.data + n * rank * S)
                Gemm.multiply(.none, .none, m: rank, n: S, k: inputDimensions, alpha: scale, a: down.value, b: dn, beta: 0, c: hn)
                Gemm.multiply(.none, .none, m: outputDimensions, n: S, k: rank,
                              a: up.value, b: hn, beta: 1, c: output.data + n * outputDimensions * S)
            }
        }
        droppedInput = mode == .training ? d : nil
    }

    /// dB += g·hᵀ, dA += u·dᵀ with u = s·Bᵀ·g, and, when `inputGradient` is given, adds Aᵀ·u through
    /// the dropout mask into it.
    func backward(_ g: Tensor, addingTo inputGradient: Tensor?) {
        guard let down, let up, let d = droppedInput else { preconditionFailure("LowRankAdapter.backward without a training forward") }
        // Without dropout the input gradient takes Aᵀ·u directly; with it, through the mask.
        let target: Tensor? = inputGradient.map { gradient in
            guard dropout != nil else { return gradient }
            droppedInputGradient.resize(to: d.shape)
            droppedInputGradient.zero()
            return droppedInputGradient
        }
        switch layout {
        case .rows:
            let rows = d.count / inputDimensions
            Gemm.multiply(.transposed, .none, m: outputDimensions, n: rank, k: rows, a: g.data, b: hidden.data, beta: 1, c: up.gradient)
            hiddenGradient.resize(to: [rows, rank])
            Gemm.multiply(.none, .none, m: rows, n: rank, k: outputDimensions, alpha: scale, a: g.data, b: up.value, beta: 0, c: hiddenGradient.data)
            Gemm.multiply(.transposed, .none, m: rank, n: inputDimensions, k: rows, a: hiddenGradient.data, b: d.data, beta: 1, c: down.gradient)
            if let target {
                Gemm.multiply(.none, .none, m: rows, n: inputDimensions, k: rank, a: hiddenGradient.data, b: down.value, beta: 1, c: target.data)
            }
        case .channels:
            let images = d.shape[0], S = d.count / max(images * inputDimensions, 1)
            hiddenGradient.resize(to: [rank, S])
            let u = hiddenGradient.data
            for n in 0..<images {
                let (gn, hn, dn) = (g.data + n * outputDimensions * S, hidden.data + n * rank * S, d.data + n * inputDimensions * S)
                Gemm.multiply(.none, .transposed, m: outputDimensions, n: rank, k: S, a: gn, b: hn, beta: 1, c: up.gradient)
                Gemm.multiply(.transposed, .none, m: rank, n: S, k: outputDimensions, alpha: scale, a: up.value, b: gn, beta: 0, c: u)
                Gemm.multiply(.none, .transposed, m: rank, n: inputDimensions, k: S, a: u, b: dn, beta: 1, c: down.gradient)
                if let target {
                    Gemm.multiply(.transposed, .none, m: inputDimensions, n: S, k: rank, a: down.value, b: u, beta: 1,
                                  c: target.data + n * inputDimensions * S)
                }
            }
        }
        guard let inputGradient, let dropout else { return }
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
