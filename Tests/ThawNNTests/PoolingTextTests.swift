// Tests for MeanPooling and ClsPooling: finite-difference gradients, masking, and empty rows.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct PoolingTextTests {
    @Test(arguments: [false, true])
    func meanGradientMatchesFiniteDifferences(masked: Bool) throws {
        let harness = LayerHarness(MeanPooling(attentionMask: masked ? try paddingMask() : nil))
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 4, 8], seed: 71), epsilon: 1e-2)
        #expect(report.worst < 1e-3, "\(report)")
        #expect(report.inputError != nil)
    }

    @Test func clsGradientMatchesFiniteDifferences() {
        let harness = LayerHarness(ClsPooling())
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 3, 8], seed: 73), epsilon: 1e-2)
        #expect(report.worst < 1e-3, "\(report)")
        #expect(report.inputError != nil)
    }

    @Test func meanCountsOnlyRealTokens() throws {
        let layer = MeanPooling(attentionMask: try paddingMask())
        let x = Tensor(shape: [2, 4, 1], values: [1, 2, 3, 6, 10, 20, 1000, 1000])
        #expect(layer.forward(x, mode: .training).values == [3, 15])
        let dX = try #require(layer.backward(Tensor(shape: [2, 1], values: [4, 2]), computeInputGradient: true))
        #expect(dX.values == [1, 1, 1, 1, 1, 1, 0, 0])
    }

    @Test func allPaddingRowPoolsToZero() throws {
        let mask = AttentionMask()
        try mask.set(Tensor(shape: [2, 2], values: [1, 0, 0, 0]))
        let layer = MeanPooling(attentionMask: mask)
        let y = layer.forward(Tensor(shape: [2, 2, 2], values: [1, 2, 3, 4, 5, 6, 7, 8]), mode: .inference)
        #expect(y.values == [1, 2, 0, 0])
    }

    @Test func clsTakesPositionZero() throws {
        let layer = ClsPooling()
        let y = layer.forward(Tensor(shape: [2, 2, 2], values: [1, 2, 3, 4, 5, 6, 7, 8]), mode: .training)
        #expect(y.shape == [2, 2] && y.values == [1, 2, 5, 6])
        let dX = try #require(layer.backward(Tensor(shape: [2, 2], values: [1, 1, 1, 1]), computeInputGradient: true))
        #expect(dX.values == [1, 1, 0, 0, 1, 1, 0, 0])
        #expect(throws: ShapeError.self) { try layer.outputShape(for: [2, 8]) }
    }
}
