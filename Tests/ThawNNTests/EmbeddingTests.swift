// Tests for Embedding: lookup, scatter-add weight gradient, and token-id validation errors.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct EmbeddingTests {
    @Test func looksUpRows() throws {
        let harness = LayerHarness(Embedding(vocabularySize: 3, dimension: 2))
        harness.setParameter("weight", [0, 1, 10, 11, 20, 21])
        let ids = Tensor(shape: [2, 2], values: [2, 0, 1, 2])
        #expect(try harness.layer.outputShape(for: ids.shape) == [2, 2, 2])
        #expect(forwardValues(harness, ids, mode: .inference) == [20, 21, 0, 1, 10, 11, 20, 21])
    }

    @Test func weightGradientMatchesFiniteDifferences() {
        let harness = LayerHarness(Embedding(vocabularySize: 5, dimension: 8))
        // Repeated ids: their gradients must add up.
        let ids = Tensor(shape: [2, 4], values: [0, 3, 3, 1, 4, 0, 3, 2])
        let report = GradientCheck.run(harness, input: ids, checkInput: false, maxEntriesPerTensor: 40)
        #expect(report.worst < 1e-3, "\(report)")
        #expect(report.parameterErrors["weight"] != nil)
    }

    @Test func scatterAddsRepeatedIds() {
        let harness = LayerHarness(Embedding(vocabularySize: 3, dimension: 1))
        _ = harness.layer.forward(Tensor(shape: [1, 3], values: [1, 1, 2]), mode: .training)
        let dX = harness.layer.backward(Tensor(shape: [1, 3, 1], values: [1, 2, 4]), computeInputGradient: true)
        #expect(harness.gradient("weight") == [0, 3, 4])
        // Ids are not differentiable: asked for an input gradient, the layer returns zeros.
        #expect(dX?.shape == [1, 3])
        #expect(dX?.values == [0, 0, 0])
        #expect(harness.layer.backward(Tensor(shape: [1, 3, 1], values: [1, 2, 4]), computeInputGradient: false) == nil)
    }

    @Test(arguments: [Float(7), -1, 2.5, .nan])
    func validationNamesTheOffendingId(bad: Float) {
        let layer = Embedding(vocabularySize: 7, dimension: 4)
        let ids = Tensor(shape: [2, 3], values: [0, 6, 3, 1, 2, bad])
        let error = #expect(throws: EmbeddingError.self) { try layer.validate(ids: ids) }
        #expect(error?.position == [1, 2])
        #expect(error?.vocabularySize == 7)
        #expect(error.map { $0.id == bad || (bad.isNaN && $0.id.isNaN) } == true)
        #expect(error?.description.contains("[1, 2]") == true)
    }

    @Test func validationAcceptsEveryIdInRange() throws {
        let layer = Embedding(vocabularySize: 7, dimension: 4)
        try layer.validate(ids: Tensor(shape: [1, 7], values: [0, 1, 2, 3, 4, 5, 6]))
        #expect(try layer.outputShape(for: [2, 7]) == [2, 7, 4])
    }
}
