// GradientTools: global-norm clipping and finiteness checks over the flat gradient buffer.
//
// Run on the trainable range after the all-reduce and before the optimizer step, so every
// rank sees the same gradients and makes the same decision.

/// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_) and NaN/Inf checks.
public enum GradientTools {
    /// The Euclidean norm of `values`, accumulated in Double.
    ///
    /// Eight Double partial sums of squares run side by side (they vectorize), then add up.
    public static func globalNorm(_ values: UnsafeBufferPointer<Float>) -> Double {
        guard let base = values.baseAddress else { return 0 }
        let n = values.count
        var partial = SIMD8<Double>()
        var i = 0
        while i + 8 <= n {
            let x = SIMD8<Double>(UnsafeRawPointer(base + i).loadUnaligned(as: SIMD8<Float>.self))
            partial += x * x
            i += 8
        }
        var sum = partial.sum()
        while i < n {
            let x = Double(base[i])
            sum += x * x
            i += 1
        }
        return sum.squareRoot()
    }

    /// Scales `gradients` in place so that their global norm is at most `maxNorm`, and returns
    /// the norm before clipping.
    ///
    /// Semantics of `torch.nn.utils.clip_grad_norm_` (norm type 2): with `norm` the global norm,
    /// the scale is `maxNorm / (norm + 1e-6)`, applied only when it is below 1. A non-finite norm
    /// leaves the gradients unchanged and is returned as is, for the caller to stop on.
    /// - Parameters:
    ///   - gradients: The gradients to clip, usually the trainable range of the flat buffer.
    ///   - maxNorm: The largest allowed global norm (> 0).
    /// - Returns: The global norm before clipping.
    @discardableResult
    public static func clipByGlobalNorm(_ gradients: UnsafeMutableBufferPointer<Float>, maxNorm: Float) -> Float {
        precondition(maxNorm > 0, "maxNorm must be positive, got \(maxNorm)")
        let norm = globalNorm(UnsafeBufferPointer(gradients))
        guard norm.isFinite else { return Float(norm) }
        let scale = Float(Double(maxNorm) / (norm + 1e-6))
        if scale < 1, let base = gradients.baseAddress {
            for i in 0..<gradients.count { base[i] *= scale }
        }
        return Float(norm)
    }

    /// Clips the gradients in `range` of a flat gradient buffer to a global norm of `maxNorm`.
    ///
    /// See ``clipByGlobalNorm(_:maxNorm:)``; elements outside `range` are not touched.
    /// - Returns: The global norm of the range before clipping.
    @discardableResult
    public static func clipGradients(_ gradients: UnsafeMutableBufferPointer<Float>, range: Range<Int>, maxNorm: Float) -> Float {
        clipByGlobalNorm(UnsafeMutableBufferPointer(rebasing: gradients[range]), maxNorm: maxNorm)
    }

    /// Whether every value is finite (no NaN, no ±infinity).
    ///
    /// Compares the largest magnitude bit pattern with infinity's, an integer max that vectorizes.
    public static func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
        guard let base = values.baseAddress else { return true }
        return base.withMemoryRebound(to: UInt32.self, capacity: values.count) { bits in
            var largest: UInt32 = 0
            for i in 0..<values.count { largest = max(largest, bits[i] & 0x7FFF_FFFF) }
            return largest < 0x7F80_0000
        }
    }

    /// Whether every value is finite (no NaN, no ±infinity).
    public static func allFinite(_ values: UnsafeMutableBufferPointer<Float>) -> Bool {
        allFinite(UnsafeBufferPointer(values))
    }

    /// Whether every value in `range` of a flat buffer is finite.
    public static func allFinite(_ values: UnsafeMutableBufferPointer<Float>, range: Range<Int>) -> Bool {
        allFinite(UnsafeBufferPointer(rebasing: values[range]))
    }

    /// The index of the first NaN or infinite value, or nil when all are finite.
    ///
    /// For error messages: map the index back to a parameter with the store's entries.
    public static func firstNonFiniteIndex(_ values: UnsafeBufferPointer<Float>) -> Int? {
        values.firstIndex { !$0.isFinite }
    }
}
