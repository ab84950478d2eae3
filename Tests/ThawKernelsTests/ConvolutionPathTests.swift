// Tests that the convolution fast paths (1×1 GEMM, depthwise direct loops) compute exactly what the
// general im2col reference path computes, forward and both backwards; that the one-sweep `backward`
// equals the two separate backward passes; that im2col/col2im are adjoint; and that im2col/col2im
// (whose stride-1 "same" geometries take a one-copy-per-tap shortcut) match their definitions.
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
        let path = ConvolutionPaths(bias: true).path(algorithm, for: g)
        #expect(path.algorithm == algorithm, "\(algorithm) path for \(g)")
        // Gradients start non-zero to check that backward accumulates rather than overwrites.
        let dx = Tensor(shape: [g.inputCount])
        dx.fill(0.5)
        let dw = Tensor(shape: [g.weightCount])
        dw.fill(0.25)
        let db = Tensor(shape: [g.outputChannels])
        db.fill(-1)
        path.forward(output: y.data, input: x.data, weight: w.data, bias: b.data)
        path.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data)
        path.backwardWeights(dWeight: dw.data, dBias: db.data, dOutput: dy.data, input: x.data)
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

    /// One geometry per path, plus a grouped strided one and a "same"-padded one for im2col.
    static let combined: [(Convolution2D.Algorithm, Convolution2DGeometry)] = [
        (.im2col, Convolution2DGeometry(batch: 3, inputChannels: 4, inputHeight: 6, inputWidth: 5, outputChannels: 6, kernel: 3, padding: 1)),
        (.im2col, Convolution2DGeometry(batch: 2, inputChannels: 4, inputHeight: 7, inputWidth: 6, outputChannels: 6, kernel: 3,
                                        stride: 2, padding: 1, groups: 2)),
        (.pointwise, pointwise[1]),
        (.depthwise, depthwise[3]),
    ]

    /// `backward` (one sweep over the batch) gives what `backwardWeights` then `backwardData` give,
    /// and with no input gradient leaves `dInput` alone and still gives the same parameter gradients.
    @Test(arguments: combined)
    func combinedBackwardMatchesSeparatePasses(algorithm: Convolution2D.Algorithm, geometry g: Convolution2DGeometry) {
        let separate = run(algorithm, g)
        for withInputGradient in [true, false] {
            let x = GradientCheck.randomTensor([g.inputCount], seed: 1)
            let w = GradientCheck.randomTensor([g.weightCount], seed: 2)
            let dy = GradientCheck.randomTensor([g.outputCount], seed: 4)
            let path = ConvolutionPaths(bias: true).path(algorithm, for: g)
            let dx = Tensor(shape: [g.inputCount])
            dx.fill(0.5)
            let dw = Tensor(shape: [g.weightCount])
            dw.fill(0.25)
            let db = Tensor(shape: [g.outputChannels])
            db.fill(-1)
            path.backward(dInput: withInputGradient ? dx.data : nil, dWeight: dw.data, dBias: db.data, dOutput: dy.data,
                          input: x.data, weight: w.data)
            #expect(relativeError(dw.values, separate.dw) < 1e-5, "backward-weights \(g)")
            #expect(relativeError(db.values, separate.db) < 1e-5, "bias \(g)")
            if withInputGradient {
                #expect(relativeError(dx.values, separate.dx) < 1e-5, "backward-data \(g)")
            } else {
                #expect(dx.values.allSatisfy { $0 == 0.5 }, "dInput touched without an input gradient \(g)")
            }
        }
    }

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
        #expect(PointwiseConvolution(geometry: base) != nil && PointwiseConvolution(geometry: padded) == nil)
        #expect(DepthwiseConvolution(geometry: depthwise) != nil && DepthwiseConvolution(geometry: singleChannel) == nil)
        #expect(Im2colConvolution(geometry: padded, scratch: Tensor(shape: [0])).scratchCount == 4 * 8 * 8)
    }

    /// Geometries for the unfold tests; the first four take the contiguous one-copy-per-tap shortcut.
    static let unfold: [Convolution2DGeometry] = [
        Convolution2DGeometry(batch: 1, inputChannels: 3, inputHeight: 6, inputWidth: 5, outputChannels: 1, kernel: 3, padding: 1),
        Convolution2DGeometry(batch: 1, inputChannels: 2, inputHeight: 5, inputWidth: 5, outputChannels: 1, kernel: 3, padding: 2, dilation: 2),
        Convolution2DGeometry(batch: 1, inputChannels: 2, inputHeight: 4, inputWidth: 6, outputChannels: 1,
                              kernel: Size2D(height: 3, width: 5), padding: Size2D(height: 1, width: 2)),
        // stride.height · W == OW with stride 2: output rows still map onto a run of input rows.
        Convolution2DGeometry(batch: 1, inputChannels: 2, inputHeight: 4, inputWidth: 3, outputChannels: 1,
                              kernel: 2, stride: Size2D(height: 2, width: 1), padding: 2),
        // General path: strided, or padding wider than the kernel reaches (whole rows and columns of zeros).
        Convolution2DGeometry(batch: 1, inputChannels: 2, inputHeight: 7, inputWidth: 6, outputChannels: 1, kernel: 3, stride: 2, padding: 1),
        Convolution2DGeometry(batch: 1, inputChannels: 1, inputHeight: 3, inputWidth: 4, outputChannels: 1, kernel: 1, padding: 2),
    ]

    /// The column matrix by its definition: entry (c, i, j; oh, ow) reads input (c, oh·s + i·d − p, ow·s + j·d − p) or 0.
    func directColumns(_ x: [Float], channels: Int, _ g: Convolution2DGeometry) -> [Float] {
        let (H, W, OH, OW, KH, KW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth, g.kernel.height, g.kernel.width)
        var columns = [Float](repeating: 0, count: channels * KH * KW * OH * OW)
        for c in 0..<channels {
            for i in 0..<KH {
                for j in 0..<KW {
                    for oh in 0..<OH {
                        for ow in 0..<OW {
                            let h = oh * g.stride.height + i * g.dilation.height - g.padding.height
                            let w = ow * g.stride.width + j * g.dilation.width - g.padding.width
                            guard (0..<H).contains(h), (0..<W).contains(w) else { continue }
                            columns[(((c * KH + i) * KW + j) * OH + oh) * OW + ow] = x[(c * H + h) * W + w]
                        }
                    }
                }
            }
        }
        return columns
    }

    @Test(arguments: unfold)
    func im2colAndCol2imMatchTheirDefinition(geometry g: Convolution2DGeometry) {
        let channels = g.inputChannels
        let x = GradientCheck.randomTensor([channels * g.inputHeight * g.inputWidth], seed: 5)
        let expected = directColumns(x.values, channels: channels, g)
        let unfolded = Tensor(shape: [expected.count])
        unfolded.fill(7) // im2col must overwrite everything, padding entries included
        Im2colConvolution.im2col(columns: unfolded.data, input: x.data, channels: channels, geometry: g)
        #expect(unfolded.values == expected, "im2col \(g)")

        // col2im by definition: every column entry adds onto the input it was read from.
        let c = GradientCheck.randomTensor([expected.count], seed: 6)
        let marker = directColumns([Float](repeating: 1, count: x.count), channels: channels, g)
        let indices = directColumns((0..<x.count).map { Float($0) }, channels: channels, g)
        var folded = [Float](repeating: 0.5, count: x.count)
        for (k, value) in c.values.enumerated() where marker[k] == 1 { folded[Int(indices[k])] += value }
        let dInput = Tensor(shape: [x.count])
        dInput.fill(0.5) // col2im accumulates
        Im2colConvolution.col2im(dInput: dInput.data, columns: c.data, channels: channels, geometry: g)
        #expect(relativeError(dInput.values, folded) < 1e-6, "col2im \(g)")
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
        Im2colConvolution.im2col(columns: unfolded.data, input: x.data, channels: 2, geometry: g)
        let folded = Tensor(shape: [2 * 5 * 6])
        Im2colConvolution.col2im(dInput: folded.data, columns: c.data, channels: 2, geometry: g)
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
