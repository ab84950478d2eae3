// CrossEntropy: fused softmax + cross-entropy with label smoothing and per-sample weights.
//
// Per-sample weights are how padding is kept out of training: a padded row has weight 0,
// so it adds nothing to the loss, the gradient or the metrics. The loss is a weighted sum
// divided by a caller-given normalizer (the global number of real samples in the step),
// so that summing gradients over ranks gives the same result as one large batch.

/// Softmax cross-entropy over class logits.
public enum CrossEntropy {
    /// The loss statistics of one batch.
    public struct Result: Sendable, Equatable {
        /// Σ weight × per-sample loss (not yet divided by the normalizer).
        public var lossSum: Double
        /// Σ weight × [argmax == label].
        public var correct: Double
        /// Σ weight.
        public var weightSum: Double
    }

    /// Computes the loss and writes d(loss / normalizer)/d(logits).
    ///
    /// With smoothing ε and K classes the target distribution is (1−ε)·onehot + ε/K, as in PyTorch.
    /// - Parameters:
    ///   - logitsGradient: Output, `[N, K]`; rows with weight 0 are set to zero.
    ///   - logits: `[N, K]`.
    ///   - labels: `N` class indices in `0..<K` (ignored where the weight is 0).
    ///   - weights: `N` sample weights (1 real, 0 padding).
    ///   - rows: N.
    ///   - classes: K.
    ///   - labelSmoothing: ε in [0, 1).
    ///   - normalizer: What the summed loss is divided by for the gradient; usually the real-sample count.
    ///   - rowStride: Floats from one row's first logit to the next row's (default K), so the K logits can be
    ///     some columns of a wider output; the gradient uses the same stride and only its K columns are written.
    /// - Returns: Unnormalized sums for the loss, correct predictions and weights.
    public static func forwardBackward(
        logitsGradient: UnsafeMutablePointer<Float>?,
        logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, weights: UnsafePointer<Float>,
        rows: Int, classes: Int, labelSmoothing: Float = 0, normalizer: Float, rowStride: Int? = nil
    ) -> Result {
        // Legend: K classes, S row stride, z logits row, p softmax row, y label.
        let K = classes
        let S = rowStride ?? classes
        precondition(S >= K, "row stride \(S) is smaller than the \(K) classes")
        var result = Result(lossSum: 0, correct: 0, weightSum: 0)
        let offTarget = labelSmoothing / Float(K)
        let onTarget = 1 - labelSmoothing + offTarget
        for n in 0..<rows {
            let z = logits + n * S
            let w = weights[n]
            if w == 0 {
                logitsGradient.map { ($0 + n * S).update(repeating: 0, count: K) }
                continue
            }
            let y = Int(labels[n])
            var maxZ = z[0]
            var argmax = 0
            for k in 1..<K where z[k] > maxZ {
                maxZ = z[k]
                argmax = k
            }
            var sumExp: Double = 0
            for k in 0..<K { sumExp += Double(expf(z[k] - maxZ)) }
            let logSumExp = Double(maxZ) + log(sumExp)
            // loss = −Σ_k t_k log p_k = logSumExp − Σ_k t_k z_k
            var targetDot: Double = 0
            for k in 0..<K { targetDot += Double(k == y ? onTarget : offTarget) * Double(z[k]) }
            result.lossSum += Double(w) * (logSumExp - targetDot)
            result.weightSum += Double(w)
            if argmax == y { result.correct += Double(w) }
            if let g = logitsGradient.map({ $0 + n * S }) {
                let scale = w / normalizer
                for k in 0..<K {
                    let p = Float(exp(Double(z[k]) - logSumExp))
                    g[k] = (p - (k == y ? onTarget : offTarget)) * scale
                }
            }
        }
        return result
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
