// DropoutMask: inverted dropout with a caller-owned SplitMix64 generator.
//
// Each element is kept with probability 1 − p and then scaled by 1/(1 − p), so the expected
// output equals the input and inference needs no rescaling. The mask stores the scale actually
// applied (0 or 1/(1 − p)), so backward is one multiply. Backward accumulates (`+=`), as in llm.c.

/// Inverted-dropout kernels.
public enum DropoutMask {
    /// Draws a mask and applies it: mask[i] = (u ≥ p) / (1 − p), output[i] = input[i] · mask[i].
    ///
    /// One uniform draw per element in index order, so a given generator state always yields
    /// the same mask. With p = 1 every element is dropped (as in PyTorch).
    /// - Parameters:
    ///   - output: `count` values, overwritten.
    ///   - mask: `count` values, receives the applied scale per element.
    ///   - input: `count` values.
    ///   - count: Number of elements.
    ///   - probability: The drop probability p in [0, 1].
    ///   - generator: The source of randomness; advanced by `count` draws.
    public static func forward(
        output: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
        count: Int, probability: Float, generator: inout SplitMix64
    ) {
        let scale: Float = probability < 1 ? 1 / (1 - probability) : 0
        for i in 0..<count { mask[i] = generator.nextUniform() >= probability ? scale : 0 }
        for i in 0..<count { output[i] = input[i] * mask[i] }
    }

    /// dInput += dOutput · mask.
    /// - Parameters:
    ///   - dInput: `count` values, accumulated into.
    ///   - dOutput: `count` values.
    ///   - mask: The mask written by `forward`.
    ///   - count: Number of elements.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, mask: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dInput[i] += dOutput[i] * mask[i] }
    }
}
