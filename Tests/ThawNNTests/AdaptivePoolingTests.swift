// Tests for AdaptiveAveragePool2d: PyTorch's window formula, finite differences, parity with
// adaptive_avg_pool2d (scripts/fixtures/resnet_vgg.py), and shapes.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct AdaptivePoolingTests {
    @Test func windowsFollowPyTorchsFormula() {
        // 5 → 3: [0, 2), [1, 4), [3, 5); 2 → 7 repeats and overlaps; 7 → 7 is the identity.
        #expect((0..<3).map { Pooling2D.adaptiveWindow($0, input: 5, output: 3) } == [0..<2, 1..<4, 3..<5])
        #expect((0..<7).map { Pooling2D.adaptiveWindow($0, input: 2, output: 7) } == [0..<1, 0..<1, 0..<1, 0..<2, 1..<2, 1..<2, 1..<2])
        #expect((0..<7).map { Pooling2D.adaptiveWindow($0, input: 7, output: 7) } == (0..<7).map { $0..<($0 + 1) })
    }

    @Test func gradients() {
        for (shape, size) in [([2, 2, 5, 7], Size2D(height: 3, width: 4)), ([1, 2, 5, 7], Size2D(height: 7, width: 9)),
                              ([2, 3, 1, 1], Size2D(7))] {
            let report = GradientCheck.run(LayerHarness(AdaptiveAveragePool2d(outputSize: size)),
                                           input: GradientCheck.randomTensor(shape, seed: 9), maxEntriesPerTensor: 100)
            #expect(report.worst < 1e-2, "\(shape) → \(size): \(report)")
        }
    }

    @Test func matchesPyTorch() throws {
        let fixture = try Fixture(named: "adaptive_avg_pool")
        // Inputs and projections are drawn as in the script (SplitMix64, seeds 81…88).
        for (tag, shape, size, seed) in [("down", [2, 3, 5, 7], Size2D(height: 3, width: 4), UInt64(81)),
                                         ("up", [2, 3, 5, 7], Size2D(height: 7, width: 9), 83),
                                         ("global", [2, 3, 5, 7], Size2D(1), 85), ("replicate", [2, 3, 1, 1], Size2D(7), 87)] {
            let pool = AdaptiveAveragePool2d(outputSize: size)
            let expected = try fixture("\(tag).output")
            #expect(try pool.outputShape(for: shape) == expected.shape, "\(tag)")
            let y = pool.forward(GradientCheck.randomTensor(shape, seed: seed), mode: .training)
            #expect(y.shape == expected.shape, "\(tag)")
            #expect(relativeError(y.values, expected.data) <= 1e-6, "\(tag) output")
            let dx = try #require(pool.backward(GradientCheck.randomTensor(y.shape, seed: seed + 1), computeInputGradient: true))
            #expect(relativeError(dx.values, try fixture("\(tag).input_gradient").data) <= 1e-6, "\(tag) input gradient")
            #expect(pool.backward(GradientCheck.randomTensor(y.shape, seed: seed + 1), computeInputGradient: false) == nil)
        }
    }

    @Test func shapes() throws {
        let pool = AdaptiveAveragePool2d(outputSize: 7)
        #expect(try pool.outputShape(for: [4, 512, 1, 1]) == [4, 512, 7, 7])
        #expect(throws: ShapeError.self) { try pool.outputShape(for: [4, 512, 7]) }
        #expect(throws: ShapeError.self) { try pool.outputShape(for: [4, 512, 0, 3]) }
    }
}
