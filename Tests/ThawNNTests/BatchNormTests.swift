// Tests for BatchNorm2d: training gradients through batch statistics, PyTorch parity of outputs,
// gradients and running statistics, and inference mode ignoring the batch.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct BatchNormTests {
    @Test func trainingGradients() {
        let harness = LayerHarness(BatchNorm2d(3))
        harness.setParameter("weight", [0.7, 1.3, -0.9])
        harness.setParameter("bias", [0.1, -0.2, 0.3])
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([3, 3, 2, 3], seed: 12), maxEntriesPerTensor: 100)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func matchesPyTorch() throws {
        let fixture = try Fixture(named: "batchnorm")
        let layer = BatchNorm2d(4)
        let harness = LayerHarness(layer)
        harness.setParameter("weight", try fixture("weight").data)
        harness.setParameter("bias", try fixture("bias").data)
        harness.setState("running_mean", try fixture("running_mean_before").data)
        harness.setState("running_var", try fixture("running_var_before").data)

        let y = layer.forward(fixtureTensor(try fixture("x")), mode: .training)
        #expect(relativeError(y.values, try fixture("y").data) <= 1e-4, "training output")
        let dx = try #require(layer.backward(fixtureTensor(try fixture("dy")), computeInputGradient: true))
        #expect(relativeError(dx.values, try fixture("dx").data) <= 1e-4, "dx")
        #expect(relativeError(try #require(harness.store.gradient(of: "weight")), try fixture("dweight").data) <= 1e-4, "dweight")
        #expect(relativeError(try #require(harness.store.gradient(of: "bias")), try fixture("dbias").data) <= 1e-4, "dbias")
        #expect(relativeError(state(harness, "running_mean"), try fixture("running_mean_after").data) <= 1e-5, "running_mean")
        #expect(relativeError(state(harness, "running_var"), try fixture("running_var_after").data) <= 1e-5, "running_var")

        let yEval = layer.forward(fixtureTensor(try fixture("x_eval")), mode: .inference)
        #expect(relativeError(yEval.values, try fixture("y_eval").data) <= 1e-4, "eval output")
    }

    /// One channel, values 1…4: mean 2.5, biased variance 1.25 (normalization), unbiased 5/3 (running).
    @Test func runningStatisticsUseUnbiasedVarianceAndMomentum() {
        let harness = LayerHarness(BatchNorm2d(1))
        let y = harness.layer.forward(Tensor(shape: [2, 1, 1, 2], values: [1, 2, 3, 4]), mode: .training)
        #expect(abs(state(harness, "running_mean")[0] - 0.25) < 1e-6)
        #expect(abs(state(harness, "running_var")[0] - (0.9 + 0.1 * 5 / 3)) < 1e-6)
        let invStd = 1 / (1.25 + 1e-5 as Float).squareRoot()
        #expect(relativeError(y.values, [-1.5, -0.5, 0.5, 1.5].map { $0 * invStd }) < 1e-6)
        // A second step moves the statistics again by the same rule.
        _ = harness.layer.forward(Tensor(shape: [2, 1, 1, 2], values: [1, 2, 3, 4]), mode: .training)
        #expect(abs(state(harness, "running_mean")[0] - (0.9 * 0.25 + 0.25)) < 1e-6)
    }

    @Test func inferenceIgnoresBatchAndKeepsNothing() {
        let layer = BatchNorm2d(2)
        let harness = LayerHarness(layer)
        harness.setParameter("weight", [2, 0.5])
        harness.setParameter("bias", [1, -1])
        harness.setState("running_mean", [0.5, -0.25])
        harness.setState("running_var", [4, 0.25])
        let sample: [Float] = [1, 2, 3, 4, -1, 0, 1, 2]
        let alone = layer.forward(Tensor(shape: [1, 2, 2, 2], values: sample), mode: .inference).values
        let other: [Float] = [10, 20, 30, 40, 50, 60, 70, 80]
        let inBatch = Array(layer.forward(Tensor(shape: [2, 2, 2, 2], values: sample + other), mode: .inference).values[0..<8])
        #expect(alone == inBatch)
        let expected = sample.enumerated().map { i, x -> Float in
            let c = i / 4
            let (mean, variance, weight, bias): (Float, Float, Float, Float) = c == 0 ? (0.5, 4, 2, 1) : (-0.25, 0.25, 0.5, -1)
            return (x - mean) / (variance + 1e-5).squareRoot() * weight + bias
        }
        #expect(relativeError(alone, expected) < 1e-6)
        #expect(state(harness, "running_mean") == [0.5, -0.25])
        #expect(state(harness, "running_var") == [4, 0.25])

        // Inference keeps no reference to its input; training does (for backward).
        weak var weakInput: Tensor?
        do {
            let input = Tensor(shape: [1, 2, 2, 2], values: sample)
            weakInput = input
            _ = layer.forward(input, mode: .inference)
        }
        #expect(weakInput == nil)
        do {
            let input = Tensor(shape: [1, 2, 2, 2], values: sample)
            weakInput = input
            _ = layer.forward(input, mode: .training)
        }
        #expect(weakInput != nil)
    }

    @Test func parameterAndStateSpecs() {
        let layer = BatchNorm2d(5)
        #expect(layer.parameterSpecs.map(\.name) == ["weight", "bias"])
        #expect(layer.stateSpecs.map(\.name) == ["running_mean", "running_var"])
        let harness = LayerHarness(layer)
        #expect(harness.store.values(of: "weight") == [1, 1, 1, 1, 1])
        #expect(state(harness, "running_var") == [1, 1, 1, 1, 1])
        #expect(state(harness, "running_mean") == [0, 0, 0, 0, 0])
        #expect(throws: ShapeError.self) { try layer.outputShape(for: [2, 4, 3, 3]) }
        #expect(throws: ShapeError.self) { try layer.outputShape(for: [2, 5]) }
    }

    func state(_ harness: LayerHarness, _ name: String) -> [Float] {
        guard let entry = harness.store.stateEntry(named: name) else { return [] }
        return Array(harness.store.state[entry.range])
    }
}
