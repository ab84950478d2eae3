// SequencePoolingKernel: [N, T, D] token vectors → [N, D] sentence vectors.
//
// Mean pooling is masked: only real tokens (mask 1) count, as in sentence-transformers,
// whose divisor is clamped to at least 1e-9 so an all-padding row pools to zeros.
// First-token pooling takes position 0 (BERT's [CLS]).

/// Pooling over the sequence dimension.
public enum SequencePoolingKernel {
    /// The smallest divisor of a masked mean (sentence-transformers' clamp).
    public static let minimumTokenCount: Float = 1e-9

    /// output[n] = Σ_t mask[n, t]·input[n, t] / max(Σ_t mask[n, t], 1e-9).
    /// - Parameters:
    ///   - output: Output, `[N, D]`.
    ///   - input: `[N, T, D]`.
    ///   - mask: `[N, T]` of 1 (real) and 0 (padding); nil counts every token.
    ///   - batch: N.
    ///   - sequenceLength: T.
    ///   - dimension: D.
    public static func meanForward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
        batch: Int, sequenceLength: Int, dimension: Int
    ) {
        // Legend: N batch, T sequence length, D dimension, y output row, w token weight.
        let (N, T, D) = (batch, sequenceLength, dimension)
        for n in 0..<N {
            let y = output + n * D
            y.update(repeating: 0, count: D)
            var total: Float = 0
            for t in 0..<T {
                let w = mask?[n * T + t] ?? 1
                total += w
                if w == 0 { continue }
                let x = input + (n * T + t) * D
                for i in 0..<D { y[i] += w * x[i] }
            }
            let inverse = 1 / max(total, minimumTokenCount)
            for i in 0..<D { y[i] *= inverse }
        }
    }

    /// dInput[n, t] = mask[n, t] / max(Σ_t mask[n, t], 1e-9) · dOutput[n]. Overwrites `dInput`.
    /// - Parameters:
    ///   - dInput: Output, `[N, T, D]`.
    ///   - dOutput: `[N, D]`.
    ///   - mask: The forward pass's mask, or nil.
    ///   - batch: N.
    ///   - sequenceLength: T.
    ///   - dimension: D.
    public static func meanBackward(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, mask: UnsafePointer<Float>?,
        batch: Int, sequenceLength: Int, dimension: Int
    ) {
        // Legend: as in meanForward; dy output-gradient row, dx input-gradient row.
        let (N, T, D) = (batch, sequenceLength, dimension)
        for n in 0..<N {
            var total: Float = 0
            for t in 0..<T { total += mask?[n * T + t] ?? 1 }
            let inverse = 1 / max(total, minimumTokenCount)
            let dy = dOutput + n * D
            for t in 0..<T {
                let w = (mask?[n * T + t] ?? 1) * inverse
                let dx = dInput + (n * T + t) * D
                for i in 0..<D { dx[i] = w * dy[i] }
            }
        }
    }

    /// output[n] = input[n, 0].
    /// - Parameters:
    ///   - output: Output, `[N, D]`.
    ///   - input: `[N, T, D]` with T ≥ 1.
    ///   - batch: N.
    ///   - sequenceLength: T.
    ///   - dimension: D.
    public static func firstForward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        batch: Int, sequenceLength: Int, dimension: Int
    ) {
        // Legend: N batch, T sequence length, D dimension.
        let (N, T, D) = (batch, sequenceLength, dimension)
        for n in 0..<N { (output + n * D).update(from: input + n * T * D, count: D) }
    }

    /// dInput[n, 0] = dOutput[n], every other position 0. Overwrites `dInput`.
    /// - Parameters:
    ///   - dInput: Output, `[N, T, D]`.
    ///   - dOutput: `[N, D]`.
    ///   - batch: N.
    ///   - sequenceLength: T.
    ///   - dimension: D.
    public static func firstBackward(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>,
        batch: Int, sequenceLength: Int, dimension: Int
    ) {
        // Legend: as in firstForward.
        let (N, T, D) = (batch, sequenceLength, dimension)
        dInput.update(repeating: 0, count: N * T * D)
        for n in 0..<N { (dInput + n * T * D).update(from: dOutput + n * D, count: D) }
    }
}
