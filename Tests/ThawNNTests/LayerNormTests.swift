// Tests for LayerNorm: finite-difference gradients, normalization, and shape checks.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct LayerNormTests {
    @Test(arguments: [Float(1e-5), 1e-12])
    func gradientsMatchFiniteDifferences(epsilon: Float) {
        let harness = LayerHarness(LayerNorm(8, epsilon: epsilon))
        harness.randomizeParameters(seed: 3, scale: 1)
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 3, 8], seed: 4), epsilon: 1e-3)
        #expect(report.worst < 5e-3, "\(report)")
        #expect(report.parameterErrors.keys.sorted() == ["bias", "weight"])
    }

    @Test func normalizesEachRowWithDefaultParameters() {
        let harness = LayerHarness(LayerNorm(8, epsilon: 1e-12))
        let x = GradientCheck.randomTensor([3, 8], seed: 5)
        for i in 0..<x.count { x.data[i] = x.data[i] * 4 + 2 }
        let y = forwardValues(harness, x, mode: .inference)
        for row in 0..<3 {
            let values = y[(row * 8)..<(row * 8 + 8)].map(Double.init)
            let mean = values.reduce(0, +) / 8
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 8
            #expect(abs(mean) < 1e-6)
            #expect(abs(variance - 1) < 1e-5)
        }
    }

    @Test func parametersStartAsIdentityAffine() {
        let harness = LayerHarness(LayerNorm(4))
        #expect(Array(harness.store.parameters) == [1, 1, 1, 1, 0, 0, 0, 0])
    }

    @Test func rejectsWrongWidthAndSkipsInputGradient() {
        #expect(throws: ShapeError.self) { try LayerNorm(8).outputShape(for: [2, 3, 7]) }
        let harness = LayerHarness(LayerNorm(4))
        _ = harness.layer.forward(GradientCheck.randomTensor([2, 4], seed: 1), mode: .training)
        #expect(harness.layer.backward(GradientCheck.randomTensor([2, 4], seed: 2), computeInputGradient: false) == nil)
        #expect(harness.gradient("bias").contains { $0 != 0 })
    }
}
