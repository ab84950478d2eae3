// Tests for the GELU layer: finite-difference gradients, reference values, and the no-input-gradient path.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct GELUTests {
    @Test func gradientMatchesFiniteDifferences() {
        let harness = LayerHarness(GELU())
        let input = GradientCheck.randomTensor([2, 3, 8], seed: 21)
        for i in 0..<input.count { input.data[i] *= 3 }
        let report = GradientCheck.run(harness, input: input, epsilon: 1e-3)
        #expect(report.worst < 1e-3, "\(report)")
    }

    @Test func matchesErfDefinition() {
        // torch.nn.functional.gelu(torch.tensor([-3., -1., -0.5, 0., 0.5, 1., 3.], dtype=torch.float64))
        let x = Tensor(shape: [1, 7], values: [-3, -1, -0.5, 0, 0.5, 1, 3])
        let expected: [Float] = [-0.004049694, -0.15865526, -0.15426877, 0, 0.34573123, 0.8413447, 2.9959502]
        let y = GELU().forward(x, mode: .inference)
        #expect(relativeError(y.values, expected) < 1e-6)
    }

    @Test func skipsInputGradientWhenNotAsked() {
        let layer = GELU()
        _ = layer.forward(Tensor(shape: [2, 2], values: [1, 2, 3, 4]), mode: .training)
        #expect(layer.backward(Tensor(shape: [2, 2], values: [1, 1, 1, 1]), computeInputGradient: false) == nil)
    }
}
