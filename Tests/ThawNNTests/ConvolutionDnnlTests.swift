// Tests for Conv2d on the oneDNN path: which layers take it, finite-difference gradients through it
// (depthwise as chosen, dense when forced),
// and that it matches Thaw's own path when the batch size changes between calls (new primitives).
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct ConvolutionDnnlTests {
    @Test func depthwiseGradients() throws {
        let conv = Conv2d(16, 16, kernelSize: 3, stride: 2, padding: 1, groups: 16)
        let shape = [2, 16, 6, 7]
        #expect(conv.algorithm(for: conv.geometry(for: shape)) == .dnnl)
        let report = GradientCheck.run(LayerHarness(conv, seed: 3), input: GradientCheck.randomTensor(shape, seed: 4))
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func denseGradients() throws {
        let conv = Conv2d(16, 8, kernelSize: 3, padding: 1, bias: false, algorithm: .dnnl)
        let shape = [2, 16, 5, 5]
        #expect(Conv2d(16, 8, kernelSize: 3, padding: 1).algorithm(for: conv.geometry(for: shape)) == .im2col)
        let report = GradientCheck.run(LayerHarness(conv, seed: 5), input: GradientCheck.randomTensor(shape, seed: 6))
        #expect(report.worst < 1e-2, "\(report)")
    }

    /// The same weights on the oneDNN path and on Thaw's own path give the same output and gradients,
    /// across batch sizes 3, 2, 3 (the primitives are rebuilt for each new geometry); the weight gradient
    /// accumulates over the three backward calls on both.
    @Test(arguments: [Convolution2D.Algorithm.depthwise, .im2col])
    func matchesBuiltInPathAcrossBatchSizes(builtIn: Convolution2D.Algorithm) throws {
        let groups = builtIn == .depthwise ? 24 : 1
        let make = { (algorithm: Convolution2D.Algorithm) in
            Conv2d(24, 24, kernelSize: 3, padding: 1, groups: groups, algorithm: algorithm)
        }
        let (dnnl, reference) = (LayerHarness(make(.dnnl), seed: 7), LayerHarness(make(builtIn), seed: 7))
        for (step, batch) in [3, 2, 3].enumerated() {
            let x = GradientCheck.randomTensor([batch, 24, 5, 6], seed: UInt64(10 + step))
            let dy = GradientCheck.randomTensor([batch, 24, 5, 6], seed: UInt64(20 + step))
            let y = dnnl.layer.forward(x, mode: .training).values
            let expectedY = reference.layer.forward(x, mode: .training).values
            #expect(relativeError(y, expectedY) < 1e-4, "forward, batch \(batch)")
            let dx = try #require(dnnl.layer.backward(dy, computeInputGradient: true)).values
            let expectedDx = try #require(reference.layer.backward(dy, computeInputGradient: true)).values
            #expect(relativeError(dx, expectedDx) < 1e-4, "input gradient, batch \(batch)")
        }
        for name in ["weight", "bias"] {
            #expect(relativeError(try #require(dnnl.store.gradient(of: name)), try #require(reference.store.gradient(of: name))) < 1e-4, "\(name)")
        }
    }
}
