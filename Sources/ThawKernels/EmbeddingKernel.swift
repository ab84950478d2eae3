// EmbeddingKernel: table lookup of token ids (stored as exact integers in Float) and the
// scatter-add of its gradient into the table.
//
// Note: token ids. Ids reach the kernels as Float because every Thaw tensor is Float32; ids
// below 2^24 are exact. Callers validate ids with `firstInvalidIndex` before the lookup
// (the `Embedding` layer's `validate(ids:)` throws on bad data); an invalid id inside
// `forward` is a programmer error and stops the process.

/// Embedding lookup: `output[r] = weight[id[r]]`.
public enum EmbeddingKernel {
    /// The index of the first id that is not an integer in `0..<vocabularySize`, or nil if all are valid.
    /// - Parameters:
    ///   - ids: `count` token ids stored as Float.
    ///   - count: The number of ids.
    ///   - vocabularySize: The number of rows in the table.
    public static func firstInvalidIndex(ids: UnsafePointer<Float>, count: Int, vocabularySize: Int) -> Int? {
        let limit = Float(vocabularySize)
        for i in 0..<count {
            let id = ids[i]
            // Also false for NaN, so NaN is reported.
            if !(id >= 0 && id < limit && id == id.rounded(.towardZero)) { return i }
        }
        return nil
    }

    /// Copies one table row per id.
    /// - Parameters:
    ///   - output: Output, `[count, dimension]`.
    ///   - ids: `count` validated token ids.
    ///   - weight: The table, `[vocabularySize, dimension]`.
    ///   - count: The number of ids (N·T).
    ///   - dimension: D.
    ///   - vocabularySize: The number of rows in the table.
    public static func forward(
        output: UnsafeMutablePointer<Float>, ids: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        count: Int, dimension: Int, vocabularySize: Int
    ) {
        // Legend: D dimension, v token id.
        let D = dimension
        for r in 0..<count {
            let v = Int(exactly: ids[r]) ?? -1
            precondition(v >= 0 && v < vocabularySize, "token id \(ids[r]) at \(r) was not validated (vocabulary \(vocabularySize))")
            (output + r * D).update(from: weight + v * D, count: D)
        }
    }

    /// Adds each output-gradient row to the gradient row of its id (`+=`; repeated ids sum).
    /// - Parameters:
    ///   - dWeight: The table's gradient, `[vocabularySize, dimension]`, accumulated.
    ///   - dOutput: `[count, dimension]`.
    ///   - ids: The forward pass's validated ids.
    ///   - count: The number of ids.
    ///   - dimension: D.
    ///   - paddingId: An id whose row gets no gradient (PyTorch's `padding_idx`), or nil.
    public static func backward(
        dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, ids: UnsafePointer<Float>,
        count: Int, dimension: Int, paddingId: Int? = nil
    ) {
        // Legend: D dimension, v token id, g gradient row of v, dy output-gradient row.
        let D = dimension
        let skipped = paddingId ?? -1
        for r in 0..<count {
            let v = Int(ids[r])
            if v == skipped { continue }
            let g = dWeight + v * D
            let dy = dOutput + r * D
            for i in 0..<D { g[i] += dy[i] }
        }
    }
}
