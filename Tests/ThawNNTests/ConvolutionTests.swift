// Tests for Conv2d: finite-difference gradients on every kernel path, PyTorch parity, shapes.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

/// A tensor holding a fixture entry's values.
func fixtureTensor(_ entry: Fixture.Entry) -> Tensor { Tensor(shape: entry.shape, values: entry.data) }

@Suite struct ConvolutionTests {
    /// Gradient-checks a convolution and returns the report; asserts the expected kernel path.
    func check(_ conv: Conv2d, input shape: [Int], path: Convolution2D.Algorithm, seed: UInt64 = 3) throws -> GradientCheckReport {
        let output = try conv.outputShape(for: shape)
        #expect(output.count == 4)
        #expect(conv.algorithm(for: conv.geometry(for: shape)) == path)
        return GradientCheck.run(LayerHarness(conv, seed: seed), input: GradientCheck.randomTensor(shape, seed: seed + 1))
    }

    @Test func stridedPaddedGradients() throws {
        let conv = Conv2d(3, 4, kernelSize: Size2D(height: 3, width: 2), stride: Size2D(height: 2, width: 1), padding: 1)
        let report = try check(conv, input: [2, 3, 5, 4], path: .im2col)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func groupedDilatedGradients() throws {
        let conv = Conv2d(4, 6, kernelSize: 3, stride: 1, padding: 2, dilation: 2, groups: 2, bias: false)
        let report = try check(conv, input: [2, 4, 5, 5], path: .im2col)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func depthwiseGradients() throws {
        let conv = Conv2d(4, 4, kernelSize: 3, stride: 2, padding: 1, groups: 4)
        let report = try check(conv, input: [2, 4, 5, 5], path: .depthwise)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func depthwiseMultiplierGradients() throws {
        let conv = Conv2d(3, 6, kernelSize: Size2D(height: 3, width: 2), padding: Size2D(height: 1, width: 0), dilation: Size2D(height: 1, width: 2), groups: 3)
        let report = try check(conv, input: [2, 3, 4, 5], path: .depthwise)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func pointwiseGradients() throws {
        let report = try check(Conv2d(5, 3, kernelSize: 1), input: [2, 5, 3, 4], path: .pointwise)
        #expect(report.worst < 1e-2, "\(report)")
        let grouped = try check(Conv2d(4, 6, kernelSize: 1, groups: 2, bias: false), input: [2, 4, 3, 3], path: .pointwise)
        #expect(grouped.worst < 1e-2, "\(grouped)")
    }

    @Test func stridedPointwiseUsesIm2col() throws {
        let report = try check(Conv2d(3, 2, kernelSize: 1, stride: 2), input: [2, 3, 5, 5], path: .im2col)
        #expect(report.worst < 1e-2, "\(report)")
    }

    /// Runs one fixture case through a Conv2d on a forced path and compares with PyTorch.
    func parity(_ fixture: Fixture, _ prefix: String, _ conv: Conv2d) throws {
        let harness = LayerHarness(conv)
        harness.setParameter("weight", try fixture("\(prefix).weight").data)
        if conv.hasBias { harness.setParameter("bias", try fixture("\(prefix).bias").data) }
        let x = fixtureTensor(try fixture("\(prefix).x"))
        let y = conv.forward(x, mode: .training)
        let expectedY = try fixture("\(prefix).y")
        #expect(y.shape == expectedY.shape)
        #expect(relativeError(y.values, expectedY.data) <= 1e-4, "\(prefix) y on \(String(describing: conv.algorithm))")
        let dx = try #require(conv.backward(fixtureTensor(try fixture("\(prefix).dy")), computeInputGradient: true))
        #expect(relativeError(dx.values, try fixture("\(prefix).dx").data) <= 1e-4, "\(prefix) dx")
        #expect(relativeError(try #require(harness.store.gradient(of: "weight")), try fixture("\(prefix).dweight").data) <= 1e-4, "\(prefix) dweight")
        if conv.hasBias {
            #expect(relativeError(try #require(harness.store.gradient(of: "bias")), try fixture("\(prefix).dbias").data) <= 1e-4, "\(prefix) dbias")
        }
    }

    @Test(arguments: [nil, Convolution2D.Algorithm.im2col, .dnnl])
    func matchesPyTorch(algorithm: Convolution2D.Algorithm?) throws {
        let fixture = try Fixture(named: "conv2d")
        try parity(fixture, "strided", Conv2d(3, 4, kernelSize: Size2D(height: 3, width: 2), stride: Size2D(height: 2, width: 1),
                                              padding: 1, algorithm: algorithm))
        try parity(fixture, "grouped", Conv2d(4, 6, kernelSize: 3, stride: Size2D(height: 1, width: 2), padding: Size2D(height: 2, width: 1),
                                              dilation: Size2D(height: 2, width: 1), groups: 2, bias: false, algorithm: algorithm))
        try parity(fixture, "pointwise", Conv2d(5, 3, kernelSize: 1, algorithm: algorithm))
    }

    @Test(arguments: [nil, Convolution2D.Algorithm.im2col, .dnnl])
    func depthwiseMatchesPyTorch(algorithm: Convolution2D.Algorithm?) throws {
        let fixture = try Fixture(named: "depthwise_conv")
        try parity(fixture, "stride2", Conv2d(4, 4, kernelSize: 3, stride: 2, padding: 1, groups: 4, bias: false, algorithm: algorithm))
        try parity(fixture, "multiplier2", Conv2d(3, 6, kernelSize: 3, padding: 1, groups: 3, algorithm: algorithm))
    }

    @Test func parametersFollowPyTorchLayoutAndInit() {
        let conv = Conv2d(4, 6, kernelSize: Size2D(height: 3, width: 1), groups: 2)
        #expect(conv.parameterSpecs.map(\.name) == ["weight", "bias"])
        #expect(conv.parameterSpecs[0].shape == [6, 2, 3, 1])
        #expect(conv.parameterSpecs[0].initializer == .uniformFanIn(6))
        let harness = LayerHarness(conv, seed: 5)
        let bound = 1 / Float(6).squareRoot()
        let weights = harness.store.values(of: "weight") ?? []
        #expect(weights.count == 36 && weights.allSatisfy { abs($0) <= bound })
    }

    @Test func shapesAndErrors() throws {
        let conv = Conv2d(3, 8, kernelSize: 3, stride: 2, padding: 1)
        #expect(try conv.outputShape(for: [4, 3, 32, 31]) == [4, 8, 16, 16])
        #expect(throws: ShapeError.self) { try conv.outputShape(for: [4, 2, 32, 32]) }
        #expect(throws: ShapeError.self) { try conv.outputShape(for: [4, 3, 32]) }
        #expect(throws: ShapeError.self) { try Conv2d(3, 8, kernelSize: 5).outputShape(for: [1, 3, 4, 4]) }
        #expect(throws: ShapeError.self) { try Conv2d(3, 8, kernelSize: 3, algorithm: .pointwise).outputShape(for: [1, 3, 4, 4]) }
    }

    @Test func skipsInputGradientWhenNotAsked() {
        let conv = Conv2d(2, 2, kernelSize: 3, padding: 1)
        let harness = LayerHarness(conv)
        let y = conv.forward(GradientCheck.randomTensor([1, 2, 4, 4], seed: 1), mode: .training)
        #expect(conv.backward(GradientCheck.randomTensor(y.shape, seed: 2), computeInputGradient: false) == nil)
        #expect((harness.store.gradient(of: "weight") ?? []).contains { $0 != 0 })
    }
}
