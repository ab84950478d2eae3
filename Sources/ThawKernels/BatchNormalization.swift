// BatchNormalization: per-channel batch normalization of NCHW tensors, as PyTorch's BatchNorm2d.
//
// Training normalizes with the batch's mean and biased variance, and moves the running
// statistics towards the batch's mean and UNBIASED variance (× n/(n−1)) with the given momentum:
// running = (1 − momentum)·running + momentum·batch. Inference normalizes with the running
// statistics. Statistics are accumulated in Double so large batches do not lose precision.
//
// Backward accumulates (`+=`) into dInput, dWeight and dBias, as in llm.c.

/// Batch-normalization kernels on `[N, C, S]` data (S = H·W spatial positions per channel plane).
public enum BatchNormalization {
    /// Training-mode forward: normalizes with batch statistics and updates the running statistics.
    /// - Parameters:
    ///   - output: `[N, C, S]`, overwritten.
    ///   - mean: `[C]`, receives the batch mean (kept for backward).
    ///   - inverseStandardDeviation: `[C]`, receives 1/sqrt(biased variance + epsilon) (kept for backward).
    ///   - runningMean: `[C]`, updated in place.
    ///   - runningVariance: `[C]`, updated in place with the unbiased batch variance.
    ///   - input: `[N, C, S]`.
    ///   - weight: `[C]` scale (γ).
    ///   - bias: `[C]` shift (β).
    ///   - batch: N.
    ///   - channels: C.
    ///   - spatial: S = H·W.
    ///   - epsilon: Added to the variance.
    ///   - momentum: Weight of the batch statistics in the running update (PyTorch's default is 0.1).
    public static func trainingForward(
        output: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        inverseStandardDeviation: UnsafeMutablePointer<Float>,
        runningMean: UnsafeMutablePointer<Float>, runningVariance: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        batch: Int, channels: Int, spatial: Int, epsilon: Float, momentum: Float
    ) {
        // Legend: N batch, C channels, S positions per plane, m = N·S values per channel.
        let (N, C, S) = (batch, channels, spatial)
        let m = N * S
        for c in 0..<C {
            var sum = 0.0
            for n in 0..<N {
                let x = input + (n * C + c) * S
                for s in 0..<S { sum += Double(x[s]) }
            }
            let mu = sum / Double(m)
            var squares = 0.0
            for n in 0..<N {
                let x = input + (n * C + c) * S
                for s in 0..<S {
                    let d = Double(x[s]) - mu
                    squares += d * d
                }
            }
            let variance = squares / Double(m)
            let unbiased = m > 1 ? squares / Double(m - 1) : variance
            let invStd = Float(1 / (variance + Double(epsilon)).squareRoot())
            mean[c] = Float(mu)
            inverseStandardDeviation[c] = invStd
            runningMean[c] = (1 - momentum) * runningMean[c] + momentum * Float(mu)
            runningVariance[c] = (1 - momentum) * runningVariance[c] + momentum * Float(unbiased)
            let scale = weight[c] * invStd
            let shift = bias[c] - Float(mu) * scale
            for n in 0..<N {
                let x = input + (n * C + c) * S
                let y = output + (n * C + c) * S
                for s in 0..<S { y[s] = x[s] * scale + shift }
            }
        }
    }

    /// Inference-mode forward: y = (x − runningMean) / sqrt(runningVariance + epsilon) · weight + bias.
    /// - Parameters:
    ///   - output: `[N, C, S]`, overwritten.
    ///   - input: `[N, C, S]`.
    ///   - weight: `[C]` scale.
    ///   - bias: `[C]` shift.
    ///   - runningMean: `[C]`.
    ///   - runningVariance: `[C]`.
    ///   - batch: N.
    ///   - channels: C.
    ///   - spatial: S = H·W.
    ///   - epsilon: Added to the variance.
    public static func inferenceForward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        runningMean: UnsafePointer<Float>, runningVariance: UnsafePointer<Float>,
        batch: Int, channels: Int, spatial: Int, epsilon: Float
    ) {
        // Legend: N batch, C channels, S positions per plane.
        let (N, C, S) = (batch, channels, spatial)
        for c in 0..<C {
            let scale = weight[c] / (runningVariance[c] + epsilon).squareRoot()
            let shift = bias[c] - runningMean[c] * scale
            for n in 0..<N {
                let x = input + (n * C + c) * S
                let y = output + (n * C + c) * S
                for s in 0..<S { y[s] = x[s] * scale + shift }
            }
        }
    }

    /// Training-mode backward, through the batch statistics.
    ///
    /// With x̂ = (x − μ)·σ⁻¹ and m = N·S: dβ += Σ dy, dγ += Σ dy·x̂,
    /// dx += γ·σ⁻¹·(dy − Σdy/m − x̂·Σ(dy·x̂)/m).
    /// - Parameters:
    ///   - dInput: `[N, C, S]` accumulated into, or nil to skip the input gradient.
    ///   - dWeight: `[C]`, accumulated into.
    ///   - dBias: `[C]`, accumulated into.
    ///   - dOutput: `[N, C, S]`.
    ///   - input: `[N, C, S]`, the forward input.
    ///   - mean: `[C]` batch mean saved by `trainingForward`.
    ///   - inverseStandardDeviation: `[C]` saved by `trainingForward`.
    ///   - weight: `[C]` scale.
    ///   - batch: N.
    ///   - channels: C.
    ///   - spatial: S = H·W.
    public static func trainingBackward(
        dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
        dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, inverseStandardDeviation: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        batch: Int, channels: Int, spatial: Int
    ) {
        // Legend: N batch, C channels, S positions per plane, m = N·S values per channel.
        let (N, C, S) = (batch, channels, spatial)
        let m = Float(N * S)
        for c in 0..<C {
            let mu = mean[c]
            let invStd = inverseStandardDeviation[c]
            var sumDy = 0.0
            var sumDyXhat = 0.0
            for n in 0..<N {
                let x = input + (n * C + c) * S
                let dy = dOutput + (n * C + c) * S
                for s in 0..<S {
                    sumDy += Double(dy[s])
                    sumDyXhat += Double(dy[s] * (x[s] - mu) * invStd)
                }
            }
            dBias[c] += Float(sumDy)
            dWeight[c] += Float(sumDyXhat)
            guard let dInput else { continue }
            let scale = weight[c] * invStd
            let meanDy = Float(sumDy) / m
            let meanDyXhat = Float(sumDyXhat) / m
            for n in 0..<N {
                let x = input + (n * C + c) * S
                let dy = dOutput + (n * C + c) * S
                let dx = dInput + (n * C + c) * S
                for s in 0..<S {
                    let xhat = (x[s] - mu) * invStd
                    dx[s] += scale * (dy[s] - meanDy - xhat * meanDyXhat)
                }
            }
        }
    }

    /// Folds inference-mode batch norm into the convolution before it: with s = weight / √(runningVariance + ε),
    /// w'[o, …] = w[o, …] · s[o] and b'[o] = bias[o] + (convolutionBias[o] − runningMean[o]) · s[o].
    /// - Parameters:
    ///   - foldedWeight: `[C × weightsPerChannel]` out.
    ///   - foldedBias: `[C]` out.
    ///   - convolutionWeight: `[C × weightsPerChannel]`, the convolution's weight (output channel outermost).
    ///   - convolutionBias: `[C]`, or nil for a convolution without bias.
    public static func foldIntoConvolution(
        foldedWeight: UnsafeMutablePointer<Float>, foldedBias: UnsafeMutablePointer<Float>,
        convolutionWeight: UnsafePointer<Float>, convolutionBias: UnsafePointer<Float>?, weightsPerChannel: Int,
        weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, runningMean: UnsafePointer<Float>, runningVariance: UnsafePointer<Float>,
        channels: Int, epsilon: Float
    ) {
        for c in 0..<channels {
            let scale = weight[c] / (runningVariance[c] + epsilon).squareRoot()
            let source = convolutionWeight + c * weightsPerChannel, destination = foldedWeight + c * weightsPerChannel
            for k in 0..<weightsPerChannel { destination[k] = source[k] * scale }
            foldedBias[c] = bias[c] + ((convolutionBias?[c] ?? 0) - runningMean[c]) * scale
        }
    }
}
