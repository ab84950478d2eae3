// Tests for TransformerEncoderLayer: finite-difference gradients (with and without padding and
// dropout), PyTorch BertLayer parity, Hugging Face name mapping and padding invariance.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct EncoderLayerTests {
    func makeLayer(mask: AttentionMask?, hiddenDropout: Float = 0, attentionDropout: Float = 0) -> TransformerEncoderLayer {
        TransformerEncoderLayer(hiddenSize: 8, headCount: 2, intermediateSize: 16, attentionDropout: attentionDropout,
                                hiddenDropout: hiddenDropout, attentionMask: mask, seed: 3)
    }

    @Test(arguments: [false, true])
    func gradientsMatchFiniteDifferences(masked: Bool) throws {
        let harness = LayerHarness(makeLayer(mask: masked ? try paddingMask() : nil))
        harness.randomizeParameters(seed: 51)
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 4, 8], seed: 53), epsilon: 1e-2)
        #expect(worstExcludingKeyBias(report) < 5e-3, "\(report)")
        #expect(keyBiasError(report) < 2e-2, "\(report)")
        #expect(report.parameterErrors.count == 16 && report.inputError != nil)
    }

    @Test func gradientsThroughDropoutMatchFiniteDifferences() throws {
        let layer = makeLayer(mask: try paddingMask(), hiddenDropout: 0.2, attentionDropout: 0.2)
        let harness = LayerHarness(layer)
        harness.randomizeParameters(seed: 55)
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 4, 8], seed: 57), epsilon: 1e-2) {
            layer.reseed(7)
        }
        #expect(worstExcludingKeyBias(report) < 5e-3, "\(report)")
        #expect(keyBiasError(report) < 2e-2, "\(report)")
    }

    @Test func matchesPyTorchBertLayer() throws {
        let fixture = try Fixture(named: "transformer_encoder")
        let mask = AttentionMask()
        try mask.set(try fixture.tensor("mask"))
        let layer = makeLayer(mask: mask)
        let harness = LayerHarness(layer)
        try harness.loadParameters(from: fixture)
        let y = layer.forward(try fixture.tensor("input"), mode: .training)
        #expect(relativeError(y.values, try fixture("output").data) <= 1e-4)

        harness.zeroGradients()
        let dX = try #require(layer.backward(try fixture.tensor("upstream"), computeInputGradient: true))
        #expect(relativeError(dX.values, try fixture("grad.input").data) <= 1e-4)
        for entry in harness.store.parameterEntries where entry.name != "attention.key.bias" {
            #expect(relativeError(harness.gradient(entry.name), try fixture("grad." + entry.name).data) <= 1e-4, "\(entry.name)")
        }
        // Exactly 0 in theory (see "Note: key bias"); both sides are rounding noise.
        #expect(harness.gradient("attention.key.bias").allSatisfy { abs($0) < 1e-5 })
    }

    @Test func namesMapToHuggingFace() {
        let harness = LayerHarness(makeLayer(mask: nil))
        let mapped = harness.store.parameterEntries.compactMap { TransformerEncoderLayer.huggingFaceName(for: $0.name) }
        #expect(mapped == [
            "attention.self.query.weight", "attention.self.query.bias",
            "attention.self.key.weight", "attention.self.key.bias",
            "attention.self.value.weight", "attention.self.value.bias",
            "attention.output.dense.weight", "attention.output.dense.bias",
            "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
            "intermediate.dense.weight", "intermediate.dense.bias",
            "output.dense.weight", "output.dense.bias",
            "output.LayerNorm.weight", "output.LayerNorm.bias",
        ])
        #expect(TransformerEncoderLayer.huggingFaceName(for: "pooler.dense.weight") == nil)
    }

    @Test func paddingContentDoesNotChangeRealTokens() throws {
        let harness = LayerHarness(makeLayer(mask: try paddingMask()))
        harness.randomizeParameters(seed: 59)
        let x = GradientCheck.randomTensor([2, 4, 8], seed: 61)
        let before = forwardValues(harness, x, mode: .inference)
        for d in 0..<8 { x[1, 3, d] = -50 }
        let after = forwardValues(harness, x, mode: .inference)
        #expect(Array(after[0..<48]) == Array(before[0..<48]))
    }

    @Test func dropoutIsIdentityInInferenceAndSeededInTraining() {
        let x = GradientCheck.randomTensor([2, 4, 8], seed: 63)
        let plain = LayerHarness(makeLayer(mask: nil))
        let dropped = makeLayer(mask: nil, hiddenDropout: 0.3, attentionDropout: 0.3)
        let harness = LayerHarness(dropped)
        #expect(forwardValues(harness, x, mode: .inference) == forwardValues(plain, x, mode: .inference))
        dropped.reseed(11)
        let first = forwardValues(harness, x, mode: .training)
        dropped.reseed(11)
        #expect(forwardValues(harness, x, mode: .training) == first)
        #expect(first != forwardValues(plain, x, mode: .training))
    }

    @Test func trainsInsideAModelWithOneSharedMask() throws {
        let mask = AttentionMask()
        let embedding = Embedding(vocabularySize: 11, dimension: 8)
        let model = try Model(groups: [
            LayerGroup("embeddings", [(name: "word", layer: embedding)]),
            LayerGroup("layer0", [(name: "encoder", layer: makeLayer(mask: mask))]),
            LayerGroup("head", [(name: "pool", layer: MeanPooling(attentionMask: mask)), (name: "classifier", layer: Linear(8, 3))]),
        ], sampleShape: [4], seed: 5)
        #expect(model.outputSampleShape == [3])
        try model.freeze(groups: ["embeddings"])
        let ids = Tensor(shape: [2, 4], values: [1, 5, 7, 2, 3, 10, 0, 0])
        try embedding.validate(ids: ids)
        try mask.set(Tensor(shape: [2, 4], values: [1, 1, 1, 1, 1, 1, 0, 0]))
        let logits = try model.forward(ids, training: true)
        #expect(logits.shape == [2, 3])
        model.store.zeroGradients(in: 0..<model.store.parameterCount)
        model.backward(GradientCheck.randomTensor([2, 3], seed: 9))
        let frozen = model.store.groupRanges[0]
        #expect(model.store.gradients[frozen].allSatisfy { $0 == 0 })
        #expect(model.store.gradients[model.trainableRange].contains { $0 != 0 })
        #expect(model.store.parameterEntries.contains { $0.name == "layer0.encoder.attention_norm.weight" })
    }
}
