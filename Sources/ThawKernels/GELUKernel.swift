// GELUKernel: the exact Gaussian error linear unit, y = x·Φ(x) = ½·x·(1 + erf(x/√2)).
//
// This is PyTorch's `nn.GELU()` default (approximate="none") and Hugging Face BERT's
// `hidden_act = "gelu"`; it is not the tanh approximation ("gelu_new", GPT-2).

/// Elementwise exact GELU and its derivative.
public enum GELUKernel {
    /// y = ½·x·(1 + erf(x/√2)).
    /// - Parameters:
    ///   - output: Output, `count` values (may alias `input`).
    ///   - input: `count` values.
    ///   - count: The number of elements.
    public static func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        // Legend: x input element.
        let inverseSqrt2: Float = 0.707_106_781_186_547_5
        for i in 0..<count {
            let x = input[i]
            output[i] = 0.5 * x * (1 + erff(x * inverseSqrt2))
        }
    }

    /// dx = dy · (Φ(x) + x·φ(x)), with φ(x) = exp(−x²/2)/√(2π). Overwrites `dInput`.
    /// - Parameters:
    ///   - dInput: Output, the input gradient, `count` values (may alias `dOutput`).
    ///   - dOutput: The output gradient.
    ///   - input: The forward pass's input.
    ///   - count: The number of elements.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int
    ) {
        // Legend: x input element, cdf Φ(x), pdf φ(x).
        let inverseSqrt2: Float = 0.707_106_781_186_547_5
        let inverseSqrt2Pi: Float = 0.398_942_280_401_432_7
        for i in 0..<count {
            let x = input[i]
            let cdf = 0.5 * (1 + erff(x * inverseSqrt2))
            let pdf = expf(-0.5 * x * x) * inverseSqrt2Pi
            dInput[i] = dOutput[i] * (cdf + x * pdf)
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
