// Tests for Linear and Flatten: finite-difference gradients and shape checks.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct LinearTests {
    @Test func gradientsMatchFiniteDifferences() {
        let harness = LayerHarness(Linear(5, 3))
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([4, 5], seed: 3))
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func acceptsRank3Inputs() throws {
        let harness = LayerHarness(Linear(4, 2, bias: false))
        #expect(try harness.layer.outputShape(for: [2, 3, 4]) == [2, 3, 2])
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 3, 4], seed: 5))
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func rejectsWrongWidth() {
        #expect(throws: ShapeError.self) { try Linear(4, 2).outputShape(for: [2, 5]) }
    }

    @Test func flattenRoundTripsGradient() {
        let harness = LayerHarness(Flatten())
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 3, 2, 2], seed: 9))
        #expect(report.worst < 1e-3, "\(report)")
    }
}
