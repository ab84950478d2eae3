// AttentionKernel: multi-head scaled dot-product attention on already projected Q, K, V.
//
//   P = softmax(Q_h K_hᵀ / sqrt(headSize) + keyBias),  context_h = dropout(P) V_h
//
// Heads are column slices of the `[N, T, D]` tensors (head h owns columns h·headSize ..<
// (h+1)·headSize, as in Hugging Face BERT's view/permute), so every per-head matrix is read and
// written in place through Gemm's leading dimension: no transposes, no copies.
//
// Note: padding mask. `keyMask` is `[N, T]` with 1 for real tokens and 0 for padding. A padded
// key gets `maskedScoreBias` (the lowest finite Float, as Hugging Face's torch.finfo(dtype).min)
// added to its score, so its probability is exactly 0 whenever the row has a real key. A row
// whose keys are all padding gets uniform attention, as in Hugging Face; its output is
// meaningless but finite.

/// Multi-head scaled dot-product attention with a padding mask and optional dropout.
public enum AttentionKernel {
    /// The bias added to the scores of padded keys: the lowest finite Float.
    public static let maskedScoreBias: Float = -Float.greatestFiniteMagnitude

    /// The scratch space `forward` and `backward` need, in elements.
    public static func scratchCount(sequenceLength: Int) -> Int { 2 * sequenceLength * sequenceLength }

    /// Computes the attention context of every head.
    /// - Parameters:
    ///   - context: Output, `[N, T, D]` with D = headCount·headSize.
    ///   - probabilities: Output, `[N, H, T, T]` softmax probabilities (before dropout), kept for
    ///     backward; nil in inference, when they are discarded.
    ///   - scratch: `scratchCount(sequenceLength:)` elements of work space.
    ///   - query: `[N, T, D]`.
    ///   - key: `[N, T, D]`.
    ///   - value: `[N, T, D]`.
    ///   - keyMask: `[N, T]`, 1 for real tokens and 0 for padding; nil when nothing is padded.
    ///   - dropoutMask: `[N, H, T, T]` of 0 or 1/(1−p) multiplying the probabilities; nil for no dropout.
    ///   - batch: N.
    ///   - sequenceLength: T.
    ///   - headCount: H.
    ///   - headSize: D / H.
    public static func forward(
        context: UnsafeMutablePointer<Float>, probabilities: UnsafeMutablePointer<Float>?,
        scratch: UnsafeMutablePointer<Float>,
        query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>,
        keyMask: UnsafePointer<Float>?, dropoutMask: UnsafePointer<Float>?,
        batch: Int, sequenceLength: Int, headCount: Int, headSize: Int
    ) {
        // Legend: N batch, T sequence length, H heads, E head size, D = H·E row width,
        // P one head's T×T probabilities, A the probabilities after dropout.
        let (N, T, H, E) = (batch, sequenceLength, headCount, headSize)
        let D = H * E
        let scale = 1 / Float(E).squareRoot()
        for n in 0..<N {
            for h in 0..<H {
                let offset = n * T * D + h * E
                let P = probabilities.map { $0 + (n * H + h) * T * T } ?? scratch
                Gemm.multiply(.none, .transposed, m: T, n: T, k: E, alpha: scale,
                              a: query + offset, lda: D, b: key + offset, ldb: D, beta: 0, c: P, ldc: T)
                for i in 0..<T {
                    softmaxRow(P + i * T, count: T, keyMask: keyMask.map { $0 + n * T })
                }
                var A = UnsafePointer(P)
                if let dropoutMask {
                    let M = dropoutMask + (n * H + h) * T * T
                    let dropped = scratch + T * T
                    for i in 0..<(T * T) { dropped[i] = P[i] * M[i] }
                    A = UnsafePointer(dropped)
                }
                Gemm.multiply(.none, .none, m: T, n: E, k: T,
                              a: A, lda: T, b: value + offset, ldb: D, beta: 0, c: context + offset, ldc: D)
            }
        }
    }

    /// Computes the gradients of Q, K and V (overwritten) from the context gradient.
    ///
    /// dA = dC Vᵀ, dV = Aᵀ dC, dP = dA ∘ M, dS = P ∘ (dP − rowsum(dP ∘ P)),
    /// dQ = dS K / sqrt(E), dK = dSᵀ Q / sqrt(E).
    /// - Parameters:
    ///   - dQuery: Output, `[N, T, D]`.
    ///   - dKey: Output, `[N, T, D]`.
    ///   - dValue: Output, `[N, T, D]`.
    ///   - scratch: `scratchCount(sequenceLength:)` elements of work space.
    ///   - dContext: `[N, T, D]`.
    ///   - query: The forward pass's Q.
    ///   - key: The forward pass's K.
    ///   - value: The forward pass's V.
    ///   - probabilities: The forward pass's probabilities, `[N, H, T, T]`.
    ///   - dropoutMask: The forward pass's dropout mask, or nil.
    ///   - batch: N.
    ///   - sequenceLength: T.
    ///   - headCount: H.
    ///   - headSize: E.
    public static func backward(
        dQuery: UnsafeMutablePointer<Float>, dKey: UnsafeMutablePointer<Float>, dValue: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>, dContext: UnsafePointer<Float>,
        query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>,
        probabilities: UnsafePointer<Float>, dropoutMask: UnsafePointer<Float>?,
        batch: Int, sequenceLength: Int, headCount: Int, headSize: Int
    ) {
        // Legend: as in forward; dS the gradient of the scaled, biased scores.
        let (N, T, H, E) = (batch, sequenceLength, headCount, headSize)
        let D = H * E
        let scale = 1 / Float(E).squareRoot()
        let dA = scratch
        for n in 0..<N {
            for h in 0..<H {
                let offset = n * T * D + h * E
                let P = probabilities + (n * H + h) * T * T
                Gemm.multiply(.none, .transposed, m: T, n: T, k: E,
                              a: dContext + offset, lda: D, b: value + offset, ldb: D, beta: 0, c: dA, ldc: T)
                var A = P
                let M = dropoutMask.map { $0 + (n * H + h) * T * T }
                if let M {
                    let dropped = scratch + T * T
                    for i in 0..<(T * T) {
                        dropped[i] = P[i] * M[i]
                        dA[i] *= M[i]
                    }
                    A = UnsafePointer(dropped)
                }
                Gemm.multiply(.transposed, .none, m: T, n: E, k: T,
                              a: A, lda: T, b: dContext + offset, ldb: D, beta: 0, c: dValue + offset, ldc: D)
                // Softmax backward, in place: dA becomes dS.
                for i in 0..<T {
                    let p = P + i * T
                    let d = dA + i * T
                    var dot: Float = 0
                    for j in 0..<T { dot += p[j] * d[j] }
                    for j in 0..<T { d[j] = p[j] * (d[j] - dot) }
                }
                Gemm.multiply(.none, .none, m: T, n: E, k: T, alpha: scale,
                              a: dA, lda: T, b: key + offset, ldb: D, beta: 0, c: dQuery + offset, ldc: D)
                Gemm.multiply(.transposed, .none, m: T, n: E, k: T, alpha: scale,
                              a: dA, lda: T, b: query + offset, ldb: D, beta: 0, c: dKey + offset, ldc: D)
            }
        }
    }

    /// Adds the padding bias and replaces a row of scores with its softmax.
    @inline(__always)
    static func softmaxRow(_ s: UnsafeMutablePointer<Float>, count: Int, keyMask: UnsafePointer<Float>?) {
        if let keyMask {
            for j in 0..<count { s[j] += (1 - keyMask[j]) * maskedScoreBias }
        }
        var maximum = -Float.infinity
        for j in 0..<count { maximum = max(maximum, s[j]) }
        var sum: Float = 0
        for j in 0..<count {
            s[j] = expf(s[j] - maximum)
            sum += s[j]
        }
        let inverse = 1 / sum
        for j in 0..<count { s[j] *= inverse }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
