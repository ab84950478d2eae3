// SeededDropoutMask: inverted-dropout keep masks drawn from a seeded SplitMix64, used inside the
// transformer layers (attention probabilities, hidden states). A mask entry is 1/(1−p) with
// probability 1−p and 0 otherwise, so inference needs no rescaling. Also holds `bertInitialized`,
// the BERT weight initialization the transformer layers apply to their Linear children.
import ThawKernels

/// A reseedable generator of inverted-dropout masks, owned by one layer.
final class SeededDropoutMask {
    /// The drop probability p in [0, 1).
    let probability: Float
    /// The generator; reseeding restarts its sequence.
    private var generator: SplitMix64
    /// The last drawn mask.
    let mask = Tensor(shape: [0])

    /// Creates a mask generator; `probability` must be in [0, 1).
    init(probability: Float, seed: UInt64) {
        precondition(probability >= 0 && probability < 1, "dropout probability \(probability) is not in [0, 1)")
        self.probability = probability
        generator = SplitMix64(seed: seed)
    }

    /// Whether dropout does anything.
    var isActive: Bool { probability > 0 }

    /// Restarts the generator from `seed`.
    func reseed(_ seed: UInt64) { generator = SplitMix64(seed: seed) }

    /// Draws a fresh mask of `shape` into `mask`.
    func draw(shape: [Int]) {
        mask.resize(to: shape)
        let keep = 1 / (1 - probability)
        let m = mask.data
        for i in 0..<mask.count { m[i] = generator.nextUniform() < probability ? 0 : keep }
    }
}

/// BERT's initialization for a layer's specs: weights normal(0, range), biases zero.
func bertInitialized(_ specs: [ParameterSpec], range: Float) -> [ParameterSpec] {
    specs.map { spec in
        // Only a linear's own weight and bias: an attached adapter keeps its initialization.
        let initializer: ParameterInitializer = switch spec.name {
        case "bias": .zeros
        case "weight": .normal(standardDeviation: range)
        default: spec.initializer
        }
        return ParameterSpec(spec.name, shape: spec.shape, initializer: initializer)
    }
}
