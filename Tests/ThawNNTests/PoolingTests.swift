// Tests for MaxPool2d, AvgPool2d and GlobalAveragePool: finite differences, PyTorch parity, shapes.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct PoolingTests {
    /// Distinct values 0.05 apart in shuffled order, so no window has a near-tie within the
    /// finite-difference step and the argmax never changes under a probe.
    func spacedInput(_ shape: [Int], seed: UInt64) -> Tensor {
        let count = shape.reduce(1, *)
        var generator = SplitMix64(seed: seed)
        let order = Array(0..<count).shuffled(using: &generator)
        return Tensor(shape: shape, values: order.map { Float($0) * 0.05 - Float(count) * 0.025 })
    }

    @Test func maxPoolGradients() {
        let report = GradientCheck.run(LayerHarness(MaxPool2d(kernelSize: 3, stride: 2, padding: 1)),
                                       input: spacedInput([2, 2, 5, 5], seed: 4), maxEntriesPerTensor: 100)
        #expect(report.worst < 1e-2, "\(report)")
        let overlapping = GradientCheck.run(LayerHarness(MaxPool2d(kernelSize: Size2D(height: 2, width: 3), stride: 1)),
                                            input: spacedInput([1, 2, 4, 5], seed: 5), maxEntriesPerTensor: 100)
        #expect(overlapping.worst < 1e-2, "\(overlapping)")
    }

    @Test func averagePoolGradients() {
        let report = GradientCheck.run(LayerHarness(AvgPool2d(kernelSize: 3, stride: 2, padding: 1)),
                                       input: GradientCheck.randomTensor([2, 2, 5, 6], seed: 6))
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func globalAveragePoolGradients() throws {
        let pool = GlobalAveragePool()
        #expect(try pool.outputShape(for: [3, 4, 5, 6]) == [3, 4])
        let report = GradientCheck.run(LayerHarness(pool), input: GradientCheck.randomTensor([2, 3, 4, 3], seed: 7))
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func matchesPyTorch() throws {
        let fixture = try Fixture(named: "pooling")
        let layers: [(String, any Layer)] = [
            ("max", MaxPool2d(kernelSize: 3, stride: 2, padding: 1)),
            ("avg", AvgPool2d(kernelSize: 3, stride: 2, padding: 1)),
            ("global", GlobalAveragePool()),
        ]
        for (name, layer) in layers {
            let x = fixtureTensor(try fixture("x"))
            let expected = try fixture("\(name).y")
            #expect(try layer.outputShape(for: x.shape) == expected.shape, "\(name)")
            let y = layer.forward(x, mode: .training)
            #expect(y.shape == expected.shape, "\(name)")
            #expect(relativeError(y.values, expected.data) <= 1e-4, "\(name) y")
            let dx = try #require(layer.backward(fixtureTensor(try fixture("\(name).dy")), computeInputGradient: true))
            #expect(relativeError(dx.values, try fixture("\(name).dx").data) <= 1e-4, "\(name) dx")
        }
    }

    @Test func maxPoolTiesGoToFirstMaximum() throws {
        let pool = MaxPool2d(kernelSize: 2)
        let x = Tensor(shape: [1, 1, 2, 2], values: [1, 3, 3, 2])
        #expect(pool.forward(x, mode: .training).values == [3])
        let dx = try #require(pool.backward(Tensor(shape: [1, 1, 1, 1], values: [5]), computeInputGradient: true))
        #expect(dx.values == [0, 5, 0, 0])
    }

    @Test func averagePoolCountsPadding() {
        // A 3×3 window at the corner of a padded 2×2 input covers 4 real values: sum / 9.
        let pool = AvgPool2d(kernelSize: 3, stride: 1, padding: 1)
        let y = pool.forward(Tensor(shape: [1, 1, 2, 2], values: [9, 9, 9, 9]), mode: .inference)
        #expect(y.values == [4, 4, 4, 4])
    }

    @Test func shapeErrors() {
        #expect(throws: ShapeError.self) { try MaxPool2d(kernelSize: 3).outputShape(for: [1, 1, 2, 2]) }
        #expect(throws: ShapeError.self) { try AvgPool2d(kernelSize: 2).outputShape(for: [1, 4, 4]) }
        #expect(throws: ShapeError.self) { try GlobalAveragePool().outputShape(for: [2, 3]) }
        #expect((try? MaxPool2d(kernelSize: 3, stride: 2, padding: 1).outputShape(for: [2, 64, 112, 112])) == [2, 64, 56, 56])
    }
}
