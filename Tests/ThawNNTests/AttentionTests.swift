// Tests for MultiHeadAttention: finite-difference gradients with and without padding, PyTorch parity
// (forward, probabilities, input and parameter gradients), masking, and seeded dropout.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct AttentionTests {
    static let parameterNames = ["query.weight", "query.bias", "key.weight", "key.bias",
                                 "value.weight", "value.bias", "output.weight", "output.bias"]

    func makeHarness(mask: AttentionMask?, dropout: Float = 0, seed: UInt64 = 0) -> LayerHarness {
        let harness = LayerHarness(MultiHeadAttention(hiddenSize: 8, headCount: 2, dropout: dropout, attentionMask: mask, seed: seed))
        harness.randomizeParameters(seed: 17)
        return harness
    }

    @Test func parametersUseBertNames() {
        let harness = LayerHarness(MultiHeadAttention(hiddenSize: 8, headCount: 2))
        #expect(harness.store.parameterEntries.map(\.name) == Self.parameterNames)
        #expect(harness.store.parameterCount == 4 * (64 + 8))
    }

    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferences(masked: Bool) throws {
        let harness = makeHarness(mask: masked ? try paddingMask() : nil)
        let input = GradientCheck.randomTensor([2, 4, 8], seed: 23)
        let report = GradientCheck.run(harness, input: input, epsilon: 1e-2)
        #expect(worstExcludingKeyBias(report) < 2e-3, "\(report)")
        #expect(keyBiasError(report) < 2e-2, "\(report)")
        #expect(report.parameterErrors.count == 8 && report.inputError != nil)
    }

    @Test func gradientsThroughDropoutMatchFiniteDifferences() throws {
        let harness = makeHarness(mask: try paddingMask(), dropout: 0.3)
        guard let layer = harness.layer as? MultiHeadAttention else { Issue.record("wrong layer type"); return }
        // Reseeding before every forward fixes the dropout mask, so the function is differentiable.
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 4, 8], seed: 29), epsilon: 1e-2) {
            layer.reseed(99)
        }
        #expect(worstExcludingKeyBias(report) < 2e-3, "\(report)")
        #expect(keyBiasError(report) < 2e-2, "\(report)")
    }

    @Test func matchesPyTorchWithPaddingMask() throws {
        let fixture = try Fixture(named: "transformer_attention")
        let mask = AttentionMask()
        try mask.set(try fixture.tensor("mask"))
        let layer = MultiHeadAttention(hiddenSize: 8, headCount: 2, attentionMask: mask)
        let harness = LayerHarness(layer)
        try harness.loadParameters(from: fixture)
        let y = layer.forward(try fixture.tensor("input"), mode: .training)
        #expect(relativeError(y.values, try fixture("output").data) <= 1e-4)
        let probabilities = try #require(layer.lastProbabilities)
        #expect(probabilities.shape == [2, 2, 4, 4])
        #expect(relativeError(probabilities.values, try fixture("probabilities").data) <= 1e-4)

        harness.zeroGradients()
        let dX = try #require(layer.backward(try fixture.tensor("upstream"), computeInputGradient: true))
        #expect(relativeError(dX.values, try fixture("grad.input").data) <= 1e-4)
        for name in Self.parameterNames where name != "key.bias" {
            #expect(relativeError(harness.gradient(name), try fixture("grad." + name).data) <= 1e-4, "\(name)")
        }
        // The key-bias gradient is exactly 0 in theory (see "Note: key bias"); both sides are rounding noise.
        #expect(harness.gradient("key.bias").allSatisfy { abs($0) < 1e-5 })
        #expect(try fixture("grad.key.bias").data.allSatisfy { abs($0) < 1e-5 })
    }

    @Test func keyBiasGradientIsZero() throws {
        // See "Note: key bias": the analytic gradient must vanish, with or without padding.
        let harness = makeHarness(mask: try paddingMask())
        let y = harness.layer.forward(GradientCheck.randomTensor([2, 4, 8], seed: 33), mode: .training)
        harness.zeroGradients()
        _ = harness.layer.backward(GradientCheck.randomTensor(y.shape, seed: 34), computeInputGradient: false)
        #expect(harness.gradient("key.bias").allSatisfy { abs($0) < 1e-5 })
        #expect(harness.gradient("query.bias").contains { abs($0) > 1e-3 })
    }

    @Test func paddedKeysGetZeroAttention() throws {
        let harness = makeHarness(mask: try paddingMask())
        guard let layer = harness.layer as? MultiHeadAttention else { Issue.record("wrong layer type"); return }
        _ = layer.forward(GradientCheck.randomTensor([2, 4, 8], seed: 31), mode: .training)
        let p = try #require(layer.lastProbabilities)
        for head in 0..<2 {
            for query in 0..<4 {
                #expect(p[1, head, query, 2] == 0 && p[1, head, query, 3] == 0)
                #expect(p[0, head, query, 3] > 0)
                let rowSum = (0..<4).reduce(Float(0)) { $0 + p[1, head, query, $1] }
                #expect(abs(rowSum - 1) < 1e-6)
            }
        }
        withExtendedLifetime(harness) {}  // the layer points into the harness's buffers
    }

    @Test func paddingContentDoesNotChangeRealTokens() throws {
        let harness = makeHarness(mask: try paddingMask())
        let x = GradientCheck.randomTensor([2, 4, 8], seed: 37)
        let before = forwardValues(harness, x, mode: .inference)
        for t in 2..<4 { for d in 0..<8 { x[1, t, d] = 100 * Float(d + 1) } }
        let after = forwardValues(harness, x, mode: .inference)
        // Sample 0 and the real tokens of sample 1 (positions 0 and 1) are bit-for-bit unchanged.
        #expect(Array(after[0..<48]) == Array(before[0..<48]))
    }

    @Test func maskedBatchEqualsUnpaddedSequence() throws {
        let harness = makeHarness(mask: try paddingMask())
        let x = GradientCheck.randomTensor([2, 4, 8], seed: 41)
        let padded = forwardValues(harness, x, mode: .inference)
        guard let layer = harness.layer as? MultiHeadAttention else { Issue.record("wrong layer type"); return }
        layer.attentionMask = nil
        let short = Tensor(shape: [1, 2, 8], values: Array(x.values[32..<48]))
        let alone = forwardValues(harness, short, mode: .inference)
        #expect(relativeError(Array(padded[32..<48]), alone) < 1e-6)
    }

    @Test func dropoutIsSeededAndOffInInference() throws {
        let x = GradientCheck.randomTensor([2, 4, 8], seed: 43)
        let plain = forwardValues(makeHarness(mask: nil), x, mode: .inference)
        let harness = makeHarness(mask: nil, dropout: 0.5, seed: 5)
        guard let layer = harness.layer as? MultiHeadAttention else { Issue.record("wrong layer type"); return }
        #expect(forwardValues(harness, x, mode: .inference) == plain)
        let first = forwardValues(harness, x, mode: .training)
        let second = forwardValues(harness, x, mode: .training)
        layer.reseed(5)
        let replay = forwardValues(harness, x, mode: .training)
        #expect(first != plain)
        #expect(first != second)
        #expect(replay == first)
    }

    @Test func rejectsWrongShapes() {
        let layer = MultiHeadAttention(hiddenSize: 8, headCount: 2)
        #expect(throws: ShapeError.self) { try layer.outputShape(for: [2, 8]) }
        #expect(throws: ShapeError.self) { try layer.outputShape(for: [2, 4, 6]) }
        #expect(throws: AttentionMaskError.self) { try AttentionMask().set(Tensor(shape: [2, 2], values: [1, 0.5, 1, 1])) }
        #expect(throws: AttentionMaskError.self) { try AttentionMask().set(Tensor(shape: [4], values: [1, 1, 1, 1])) }
    }
}
