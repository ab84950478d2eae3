// UpdateKernels: the per-element update loops of SGD and AdamW over one contiguous range.
//
// Plain static functions on raw pointers, llm.c style. Scalar coefficients are computed once in
// Double and rounded to Float, as PyTorch does with its Python-float hyperparameters, and the
// element operations follow PyTorch's order so results agree to a few float32 ulps.
import Foundation

/// The update loops behind ``Optimizer``; one call updates one group's range.
enum UpdateKernels {
    /// Plain SGD: `p -= lr·(g + λ·p)`.
    static func sgd(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int,
                    learningRate: Double, weightDecay: Double) {
        // Legend: p parameters, g gradients, n element count.
        let p = parameters, g = gradients, n = count
        let wd = Float(weightDecay), negativeRate = Float(-learningRate)
        for i in 0..<n {
            let d = g[i] + wd * p[i]
            p[i] = p[i] + negativeRate * d
        }
    }

    /// SGD with momentum, optionally Nesterov (torch.optim.SGD).
    ///
    /// On a group's first step the buffer becomes the (decayed) gradient itself, as in PyTorch.
    static func sgdMomentum(parameters: UnsafeMutablePointer<Float>, momentumBuffer: UnsafeMutablePointer<Float>,
                            gradients: UnsafePointer<Float>, count: Int, learningRate: Double, weightDecay: Double,
                            momentum: Double, dampening: Double, nesterov: Bool, isFirstStep: Bool) {
        // Legend: p parameters, b momentum buffer, g gradients, n element count.
        let p = parameters, b = momentumBuffer, g = gradients, n = count
        let wd = Float(weightDecay), mu = Float(momentum), negativeRate = Float(-learningRate)
        // b = keep·b + take·d: (0, 1) on the first step copies d exactly (b was zeroed at thaw).
        let keep: Float = isFirstStep ? 0 : mu
        let take: Float = isFirstStep ? 1 : Float(1 - dampening)
        // u = direct·d + ahead·b: Nesterov looks ahead (d + μ·b); classic momentum uses b alone.
        let direct: Float = nesterov ? 1 : 0
        let ahead: Float = nesterov ? mu : 1
        for i in 0..<n {
            let d = g[i] + wd * p[i]
            let buffer = b[i] * keep + take * d
            b[i] = buffer
            let u = direct * d + ahead * buffer
            p[i] = p[i] + negativeRate * u
        }
    }

    /// AdamW (torch.optim.AdamW): decoupled weight decay, then the bias-corrected Adam step.
    /// - Parameter step: The group's step count including this step (1 on its first step).
    static func adamW(parameters: UnsafeMutablePointer<Float>, firstMoment: UnsafeMutablePointer<Float>,
                      secondMoment: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int,
                      learningRate: Double, weightDecay: Double, beta1: Double, beta2: Double, epsilon: Double, step: Int) {
        // Legend: p parameters, m first moment, v second moment, g gradients, n element count.
        let p = parameters, m = firstMoment, v = secondMoment, g = gradients, n = count
        let decay = Float(1 - learningRate * weightDecay)
        let mix1 = Float(1 - beta1), b2 = Float(beta2), mix2 = Float(1 - beta2)
        let correction1 = 1 - pow(beta1, Double(step))
        let correction2Root = Float((1 - pow(beta2, Double(step))).squareRoot())
        let negativeStepSize = Float(-(learningRate / correction1))
        let eps = Float(epsilon)
        for i in 0..<n {
            let gi = g[i]
            let mi = m[i] + mix1 * (gi - m[i])
            let vi = v[i] * b2 + mix2 * gi * gi
            m[i] = mi
            v[i] = vi
            let denominator = vi.squareRoot() / correction2Root + eps
            p[i] = p[i] * decay + negativeStepSize * mi / denominator
        }
    }
}
