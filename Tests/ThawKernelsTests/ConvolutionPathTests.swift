// Tests that the convolution fast paths (1×1 GEMM, depthwise direct loops) compute exactly what the
// general im2col reference path computes, forward and both backwards, and that im2col/col2im are adjoint.
import Testing
import ThawKernels
import ThawTesting

@Suite struct ConvolutionPathTests {
    /// Forward output, input gradient, weight gradient and bias gradient of one path on seeded data.
    func run(_ algorithm: Convolution2D.Algorithm, _ g: Convolution2DGeometry) -> (y: [Float], dx: [Float], dw: [Float], db: [Float]) {
        let x = GradientCheck.randomTensor([g.inputCount], seed: 1)
        let w = GradientCheck.randomTensor([g.weightCount], seed: 2)
        let b = GradientCheck.randomTensor([g.outputChannels], seed: 3)
        let dy = GradientCheck.randomTensor([g.outputCount], seed: 4)
        let y = Tensor(shape: [g.outputCount])
        let scratch = Tensor(shape: [max(1, Convolution2D.scratchCount(algorithm, g))])
        // Gradients start non-zero to check that backward accumulates rather than overwrites.
        let dx = Tensor(shape: [g.inputCount])
        dx.fill(0.5)
        let dw = Tensor(shape: [g.weightCount])
        dw.fill(0.25)
        let db = Tensor(shape: [g.outputChannels])
        db.fill(-1)
        Convolution2D.forward(output: y.data, input: x.data, weight: w.data, bias: b.data, geometry: g, algorithm: algorithm, scratch: scratch.data)
        Convolution2D.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data, geometry: g, algorithm: algorithm, scratch: scratch.data)
        Convolution2D.backwardWeights(dWeight: dw.data, dBias: db.data, dOutput: dy.data, input: x.data, geometry: g,
                                      algorithm: algorithm, scratch: scratch.data)
        return (y.values, dx.values, dw.values, db.values)
    }

    func expectSame(_ fast: Convolution2D.Algorithm, _ g: Convolution2DGeometry) {
        #expect(Convolution2D.supports(fast, g))
        #expect(Convolution2D.algorithm(for: g) == fast)
        let reference = run(.im2col, g)
        let result = run(fast, g)
        #expect(relativeError(result.y, reference.y) < 1e-5, "forward \(g)")
        #expect(relativeError(result.dx, reference.dx) < 1e-5, "backward-data \(g)")
        #expect(relativeError(result.dw, reference.dw) < 1e-5, "backward-weights \(g)")
        #expect(relativeError(result.db, reference.db) < 1e-5, "bias \(g)")
    }

    static let pointwise: [Convolution2DGeometry] = [
        Convolution2DGeometry(batch: 2, inputChannels: 6, inputHeight: 5, inputWidth: 3, outputChannels: 4, kernel: 1),
        Convolution2DGeometry(batch: 3, inputChannels: 6, inputHeight: 4, inputWidth: 4, outputChannels: 9, kernel: 1, groups: 3),
        Convolution2DGeometry(batch: 1, inputChannels: 8, inputHeight: 7, inputWidth: 7, outputChannels: 16, kernel: 1, dilation: 2),
    ]

    static let depthwise: [Convolution2DGeometry] = [
        Convolution2DGeometry(batch: 2, inputChannels: 4, inputHeight: 7, inputWidth: 7, outputChannels: 4, kernel: 3, stride: 1, padding: 1, groups: 4),
        Convolution2DGeometry(batch: 2, inputChannels: 4, inputHeight: 8, inputWidth: 7, outputChannels: 4, kernel: 3, stride: 2, padding: 1, groups: 4),
        Convolution2DGeometry(batch: 1, inputChannels: 3, inputHeight: 6, inputWidth: 9, outputChannels: 6,
                              kernel: Size2D(height: 3, width: 5), stride: Size2D(height: 1, width: 2),
                              padding: Size2D(height: 0, width: 2), dilation: Size2D(height: 2, width: 1), groups: 3),
        Convolution2DGeometry(batch: 2, inputChannels: 5, inputHeight: 5, inputWidth: 5, outputChannels: 15, kernel: 5, stride: 3, padding: 2, groups: 5),
    ]

    @Test(arguments: pointwise)
    func pointwiseMatchesIm2col(geometry: Convolution2DGeometry) { expectSame(.pointwise, geometry) }

    @Test(arguments: depthwise)
    func depthwiseMatchesIm2col(geometry: Convolution2DGeometry) { expectSame(.depthwise, geometry) }

    @Test func dispatchPicksTheRightPath() {
        let base = Convolution2DGeometry(batch: 1, inputChannels: 4, inputHeight: 6, inputWidth: 6, outputChannels: 8, kernel: 1)
        #expect(Convolution2D.algorithm(for: base) == .pointwise)
        var strided = base
        strided.stride = 2
        #expect(Convolution2D.algorithm(for: strided) == .im2col)
        var padded = base
        padded.padding = 1
        #expect(Convolution2D.algorithm(for: padded) == .im2col)
        var depthwise = base
        depthwise.kernel = 3
        depthwise.groups = 4
        #expect(Convolution2D.algorithm(for: depthwise) == .depthwise)
        var singleChannel = base
        singleChannel.inputChannels = 1
        singleChannel.kernel = 3
        #expect(Convolution2D.algorithm(for: singleChannel) == .im2col)
        #expect(Convolution2D.scratchCount(.pointwise, base) == 0)
        #expect(Convolution2D.scratchCount(.im2col, padded) == 4 * 8 * 8)
    }

    /// ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩: the backward fold is the exact adjoint of the unfold.
    @Test func col2imIsTheAdjointOfIm2col() {
        let g = Convolution2DGeometry(batch: 1, inputChannels: 2, inputHeight: 5, inputWidth: 6, outputChannels: 1,
                                      kernel: Size2D(height: 3, width: 2), stride: Size2D(height: 2, width: 1),
                                      padding: Size2D(height: 1, width: 2), dilation: Size2D(height: 1, width: 2))
        let rows = 2 * 3 * 2
        let columnCount = rows * g.outputHeight * g.outputWidth
        let x = GradientCheck.randomTensor([2 * 5 * 6], seed: 8)
        let c = GradientCheck.randomTensor([columnCount], seed: 9)
        let unfolded = Tensor(shape: [columnCount])
        unfolded.fill(7) // im2col must overwrite everything, padding entries included
        Convolution2D.im2col(columns: unfolded.data, input: x.data, channels: 2, geometry: g)
        let folded = Tensor(shape: [2 * 5 * 6])
        Convolution2D.col2im(dInput: folded.data, columns: c.data, channels: 2, geometry: g)
        let left = zip(unfolded.values, c.values).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let right = zip(x.values, folded.values).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(left - right) < 1e-4 * max(1, abs(left)))
        #expect(g.outputHeight == 3 && g.outputWidth == 8)
    }
}

extension Convolution2DGeometry: CustomTestStringConvertible {
    /// A compact description for test case names.
    public var testDescription: String {
        "N\(batch) C\(inputChannels)→\(outputChannels) \(inputHeight)x\(inputWidth) k\(kernel) s\(stride) p\(padding) d\(dilation) g\(groups)"
    }
}
