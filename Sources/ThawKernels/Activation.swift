// Activation: element-wise ReLU and ReLU6, forward and backward.
//
// Backward reads the forward input: ReLU passes the gradient where x > 0, ReLU6 where
// 0 < x < 6, matching PyTorch (threshold_backward / hardtanh_backward) including at the kinks,
// where the gradient is 0. Backward accumulates (`+=`) into dInput, as in llm.c.

/// Element-wise activation kernels.
public enum Activation {
    /// output = max(input, 0).
    /// - Parameters:
    ///   - output: `count` values, overwritten (may alias `input`).
    ///   - input: `count` values.
    ///   - count: Number of elements.
    public static func reluForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { output[i] = max(input[i], 0) }
    }

    /// dInput += dOutput where input > 0.
    /// - Parameters:
    ///   - dInput: `count` values, accumulated into.
    ///   - dOutput: `count` values.
    ///   - input: The forward input.
    ///   - count: Number of elements.
    public static func reluBackward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dInput[i] += input[i] > 0 ? dOutput[i] : 0 }
    }

    /// output = min(max(input, 0), 6).
    /// - Parameters:
    ///   - output: `count` values, overwritten (may alias `input`).
    ///   - input: `count` values.
    ///   - count: Number of elements.
    public static func relu6Forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { output[i] = min(max(input[i], 0), 6) }
    }

    /// dInput += dOutput where 0 < input < 6.
    /// - Parameters:
    ///   - dInput: `count` values, accumulated into.
    ///   - dOutput: `count` values.
    ///   - input: The forward input.
    ///   - count: Number of elements.
    public static func relu6Backward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dInput[i] += input[i] > 0 && input[i] < 6 ? dOutput[i] : 0 }
    }
}
