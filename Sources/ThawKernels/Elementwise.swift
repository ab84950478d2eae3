// Elementwise: the small element-wise kernels residual connections need.

/// Element-wise arithmetic on flat buffers.
public enum Elementwise {
    /// output = a + b (the residual add).
    /// - Parameters:
    ///   - output: `count` values, overwritten (may alias `a` or `b`).
    ///   - a: `count` values.
    ///   - b: `count` values.
    ///   - count: Number of elements.
    public static func add(output: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { output[i] = a[i] + b[i] }
    }

    /// target += source.
    /// - Parameters:
    ///   - target: `count` values, accumulated into.
    ///   - source: `count` values.
    ///   - count: Number of elements.
    public static func accumulate(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { target[i] += source[i] }
    }
}
