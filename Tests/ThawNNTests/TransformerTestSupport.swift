// Helpers shared by the transformer layer tests: random parameters, fixture tensors and
// reading one parameter's gradient out of a harness's flat buffer.
import ThawKernels
import ThawNN
import ThawTesting

extension LayerHarness {
    /// Overwrites every parameter with seeded uniform values in [-scale, scale), so gradient checks
    /// see non-trivial weights (BERT's 0.02 init makes attention almost uniform).
    func randomizeParameters(seed: UInt64, scale: Float = 0.5) {
        var generator = SplitMix64(seed: seed)
        for i in 0..<store.parameterCount { store.parameters[i] = (generator.nextUniform() * 2 - 1) * scale }
    }

    /// Copies every parameter of the layer from the fixture tensor of the same name.
    func loadParameters(from fixture: Fixture) throws {
        for entry in store.parameterEntries { setParameter(entry.name, try fixture(entry.name).data) }
    }

    /// The accumulated gradient of one parameter.
    func gradient(_ name: String) -> [Float] {
        guard let entry = store.entry(named: name) else { return [] }
        return Array(store.gradients[entry.range])
    }

    /// Zeroes the whole gradient buffer.
    func zeroGradients() { store.zeroGradients(in: 0..<store.parameterCount) }
}

extension Fixture {
    /// A fixture entry as a new tensor.
    func tensor(_ name: String) throws -> Tensor {
        let entry = try self(name)
        return Tensor(shape: entry.shape, values: entry.data)
    }
}

/// The `[2, 4]` padding mask used by the transformer tests: sample 1 has two padding tokens.
func paddingMask() throws -> AttentionMask {
    let mask = AttentionMask()
    try mask.set(Tensor(shape: [2, 4], values: [1, 1, 1, 1, 1, 1, 0, 0]))
    return mask
}

/// The forward output of a harness's layer, as values; the harness (which owns the parameter
/// buffers the layer points into) stays alive for the whole call.
func forwardValues(_ harness: LayerHarness, _ input: Tensor, mode: LayerMode) -> [Float] {
    harness.layer.forward(input, mode: mode).values
}

/// Note: key bias. Softmax is invariant to adding the same value to every score of a row, and
/// the key bias adds q·b_k to every score of a row, so dL/d(key bias) is exactly 0. Finite
/// differences then measure only Float noise (~1e-5 against the checker's 1e-3 floor), so key-bias
/// entries are held to the noise floor here and their analytic value is checked to be ≈ 0 instead.
func worstExcludingKeyBias(_ report: GradientCheckReport) -> Double {
    let others = report.parameterErrors.filter { !$0.key.hasSuffix("key.bias") }.values
    return max(report.inputError ?? 0, others.max() ?? 0)
}

/// The largest key-bias error in a report (see "Note: key bias").
func keyBiasError(_ report: GradientCheckReport) -> Double {
    report.parameterErrors.filter { $0.key.hasSuffix("key.bias") }.values.max() ?? 0
}
