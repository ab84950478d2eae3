// LayerNormKernel: layer normalization over the last dimension, as in llm.c's layernorm.
//
// y = (x − mean) / sqrt(var + eps) · weight + bias, with the biased variance (divide by D),
// exactly as PyTorch's nn.LayerNorm. Forward keeps the mean and 1/std of each row for backward.

/// Layer normalization of `rows` rows of `dimension` values each.
public enum LayerNormKernel {
    /// Normalizes each row and applies the affine transform.
    /// - Parameters:
    ///   - output: Output, `[rows, dimension]`.
    ///   - mean: Output, `rows` row means, or nil when backward will not run.
    ///   - reciprocalStandardDeviation: Output, `rows` values 1/sqrt(var + eps), or nil.
    ///   - input: `[rows, dimension]`.
    ///   - weight: `dimension` scales.
    ///   - bias: `dimension` shifts.
    ///   - rows: The number of rows (N·T).
    ///   - dimension: D, the normalized extent.
    ///   - epsilon: Added to the variance (BERT uses 1e-12).
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        mean: UnsafeMutablePointer<Float>?, reciprocalStandardDeviation: UnsafeMutablePointer<Float>?,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, dimension: Int, epsilon: Float
    ) {
        // Legend: D dimension, x input row, y output row, m mean, s 1/std.
        let D = dimension
        for r in 0..<rows {
            let x = input + r * D
            let y = output + r * D
            var sum: Float = 0
            for i in 0..<D { sum += x[i] }
            let m = sum / Float(D)
            var squares: Float = 0
            for i in 0..<D {
                let centered = x[i] - m
                squares += centered * centered
            }
            let s = 1 / (squares / Float(D) + epsilon).squareRoot()
            for i in 0..<D { y[i] = (x[i] - m) * s * weight[i] + bias[i] }
            mean?[r] = m
            reciprocalStandardDeviation?[r] = s
        }
    }

    /// Accumulates weight and bias gradients (`+=`) and writes the input gradient.
    ///
    /// dx = s · (dn − mean(dn) − n · mean(dn · n)), where n = (x − m)·s and dn = dy · weight.
    /// - Parameters:
    ///   - dInput: Output, `[rows, dimension]`, overwritten; nil to skip.
    ///   - dWeight: Weight gradient, accumulated; nil when the weight is fixed.
    ///   - dBias: Bias gradient, accumulated; nil when the bias is fixed.
    ///   - dOutput: `[rows, dimension]`.
    ///   - input: The forward pass's input.
    ///   - weight: The scales.
    ///   - mean: The forward pass's row means.
    ///   - reciprocalStandardDeviation: The forward pass's 1/std per row.
    ///   - rows: The number of rows.
    ///   - dimension: D.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
        dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, reciprocalStandardDeviation: UnsafePointer<Float>,
        rows: Int, dimension: Int
    ) {
        // Legend: D dimension, x input row, dy output-gradient row, m mean, s 1/std, n normalized value.
        let D = dimension
        for r in 0..<rows {
            let x = input + r * D
            let dy = dOutput + r * D
            let m = mean[r]
            let s = reciprocalStandardDeviation[r]
            var meanDn: Float = 0
            var meanDnN: Float = 0
            for i in 0..<D {
                let n = (x[i] - m) * s
                let dn = dy[i] * weight[i]
                meanDn += dn
                meanDnN += dn * n
            }
            if let dWeight { for i in 0..<D { dWeight[i] += dy[i] * ((x[i] - m) * s) } }
            if let dBias { for i in 0..<D { dBias[i] += dy[i] } }
            meanDn /= Float(D)
            meanDnN /= Float(D)
            guard let dx = dInput.map({ $0 + r * D }) else { continue }
            for i in 0..<D {
                let n = (x[i] - m) * s
                dx[i] = s * (dy[i] * weight[i] - meanDn - n * meanDnN)
            }
        }
    }
}
