// Tests that oneDNN's convolution primitives (`DnnlConvolution`, both layouts) compute what Thaw's
// own kernels compute: forward, backward-data, backward-weights and the bias gradient, on dense,
// depthwise, grouped, strided, padded and dilated geometries; that its passes overwrite, or with
// `accumulate` add; that the `.dnnl` kernel path behaves as the other paths (accumulating, one-sweep
// backward with and without the input gradient); which geometries the dispatcher sends to it; that
// instances share one workspace for their blocked copies; and that a bias-less instance's forward
// takes a bias (batch norm folded in) or none.
import Testing
@testable import ThawKernels
import ThawTesting

@Suite struct DnnlConvolutionTests {
    /// Forward output, input gradient, weight gradient and bias gradient on seeded data.
    struct Results {
        var y: [Float], dx: [Float], dw: [Float], db: [Float]
    }

    static func operands(_ g: Convolution2DGeometry) -> (x: Tensor, w: Tensor, b: Tensor, dy: Tensor) {
        (GradientCheck.randomTensor([g.inputCount], seed: 1), GradientCheck.randomTensor([g.weightCount], seed: 2),
         GradientCheck.randomTensor([g.outputChannels], seed: 3), GradientCheck.randomTensor([g.outputCount], seed: 4))
    }

    /// Thaw's own path for `g` (pointwise, depthwise or im2col), gradients accumulated from zero.
    static func thaw(_ g: Convolution2DGeometry) -> Results {
        let (x, w, b, dy) = operands(g)
        let path = ConvolutionPaths(bias: true).builtInPath(for: g)
        let (y, dx, dw, db) = (Tensor(shape: [g.outputCount]), Tensor(shape: [g.inputCount]),
                               Tensor(shape: [g.weightCount]), Tensor(shape: [g.outputChannels]))
        path.forward(output: y.data, input: x.data, weight: w.data, bias: b.data)
        path.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data)
        path.backwardWeights(dWeight: dw.data, dBias: db.data, dOutput: dy.data, input: x.data)
        return Results(y: y.values, dx: dx.values, dw: dw.values, db: db.values)
    }

    /// oneDNN's primitives for `g`, on outputs pre-filled with garbage (they must be overwritten).
    static func dnnl(_ g: Convolution2DGeometry, _ layout: DnnlConvolution.Layout) throws -> Results {
        let (x, w, b, dy) = operands(g)
        let convolution = try DnnlConvolution(geometry: g, bias: true, layout: layout, threads: 1)
        let (y, dx, dw, db) = (Tensor(shape: [g.outputCount]), Tensor(shape: [g.inputCount]),
                               Tensor(shape: [g.weightCount]), Tensor(shape: [g.outputChannels]))
        for tensor in [y, dx, dw, db] { tensor.fill(1000) }
        convolution.forward(output: y.data, input: x.data, weight: w.data, bias: b.data)
        convolution.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data)
        convolution.backwardWeights(dWeight: dw.data, dBias: db.data, dOutput: dy.data, input: x.data)
        return Results(y: y.values, dx: dx.values, dw: dw.values, db: db.values)
    }

    static let geometries: [Convolution2DGeometry] = [
        // Dense 3×3, "same" padding.
        Convolution2DGeometry(batch: 3, inputChannels: 5, inputHeight: 8, inputWidth: 7, outputChannels: 6, kernel: 3, padding: 1),
        // Strided and padded, as ResNet's downsampling 3×3 and its 7×7 stem.
        Convolution2DGeometry(batch: 2, inputChannels: 4, inputHeight: 9, inputWidth: 10, outputChannels: 8, kernel: 3, stride: 2, padding: 1),
        Convolution2DGeometry(batch: 2, inputChannels: 3, inputHeight: 16, inputWidth: 16, outputChannels: 8, kernel: 7, stride: 2, padding: 3),
        // 1×1: pointwise, and strided (ResNet's downsample, which Thaw runs through im2col).
        Convolution2DGeometry(batch: 2, inputChannels: 16, inputHeight: 4, inputWidth: 4, outputChannels: 24, kernel: 1),
        Convolution2DGeometry(batch: 2, inputChannels: 8, inputHeight: 6, inputWidth: 6, outputChannels: 16, kernel: 1, stride: 2),
        // Depthwise 3×3, stride 1 and 2, and with a channel multiplier of 2.
        Convolution2DGeometry(batch: 2, inputChannels: 16, inputHeight: 8, inputWidth: 8, outputChannels: 16, kernel: 3, padding: 1, groups: 16),
        Convolution2DGeometry(batch: 2, inputChannels: 16, inputHeight: 9, inputWidth: 8, outputChannels: 16, kernel: 3, stride: 2, padding: 1, groups: 16),
        Convolution2DGeometry(batch: 2, inputChannels: 4, inputHeight: 6, inputWidth: 6, outputChannels: 8, kernel: 3, padding: 1, groups: 4),
        // Grouped, and dilated with uneven sizes.
        Convolution2DGeometry(batch: 2, inputChannels: 6, inputHeight: 7, inputWidth: 6, outputChannels: 9, kernel: 3, padding: 1, groups: 3),
        Convolution2DGeometry(batch: 1, inputChannels: 3, inputHeight: 9, inputWidth: 11, outputChannels: 4,
                              kernel: Size2D(height: 3, width: 5), stride: Size2D(height: 1, width: 2),
                              padding: Size2D(height: 2, width: 1), dilation: 2),
    ]

    @Test(arguments: geometries, DnnlConvolution.Layout.allCases)
    func matchesThawKernels(geometry g: Convolution2DGeometry, layout: DnnlConvolution.Layout) throws {
        let reference = Self.thaw(g)
        let result = try Self.dnnl(g, layout)
        #expect(relativeError(result.y, reference.y) < 1e-4, "forward \(g) \(layout)")
        #expect(relativeError(result.dx, reference.dx) < 1e-4, "backward-data \(g) \(layout)")
        #expect(relativeError(result.dw, reference.dw) < 1e-4, "backward-weights \(g) \(layout)")
        #expect(relativeError(result.db, reference.db) < 1e-4, "bias gradient \(g) \(layout)")
    }

    /// Calling a pass twice gives the same result as once: oneDNN overwrites, it does not accumulate.
    @Test(arguments: DnnlConvolution.Layout.allCases)
    func passesOverwrite(layout: DnnlConvolution.Layout) throws {
        let g = Self.geometries[1]
        let once = try Self.dnnl(g, layout)
        let (x, w, _, dy) = Self.operands(g)
        let convolution = try DnnlConvolution(geometry: g, bias: false, layout: layout, threads: 1)
        let (dx, dw) = (Tensor(shape: [g.inputCount]), Tensor(shape: [g.weightCount]))
        for _ in 0..<2 {
            convolution.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data)
            convolution.backwardWeights(dWeight: dw.data, dBias: nil, dOutput: dy.data, input: x.data)
        }
        #expect(relativeError(dx.values, once.dx) < 1e-6)
        #expect(relativeError(dw.values, once.dw) < 1e-6)
    }

    /// With `accumulate`, the backward passes add onto what the outputs held (here 0.5 everywhere).
    @Test(arguments: DnnlConvolution.Layout.allCases)
    func accumulateAdds(layout: DnnlConvolution.Layout) throws {
        let g = Self.geometries[5]
        let reference = Self.thaw(g)
        let (x, w, _, dy) = Self.operands(g)
        let convolution = try DnnlConvolution(geometry: g, bias: true, layout: layout, threads: 1, accumulate: true)
        let (dx, dw, db) = (Tensor(shape: [g.inputCount]), Tensor(shape: [g.weightCount]), Tensor(shape: [g.outputChannels]))
        for tensor in [dx, dw, db] { tensor.fill(0.5) }
        convolution.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data)
        convolution.backwardWeights(dWeight: dw.data, dBias: db.data, dOutput: dy.data, input: x.data)
        #expect(relativeError(dx.values, reference.dx.map { $0 + 0.5 }) < 1e-4)
        #expect(relativeError(dw.values, reference.dw.map { $0 + 0.5 }) < 1e-4)
        #expect(relativeError(db.values, reference.db.map { $0 + 0.5 }) < 1e-4)
    }

    /// The `.dnnl` `ConvolutionPath`: the same results as Thaw's own path through the dispatch
    /// functions, gradients accumulated onto non-zero starts, and the one-sweep `backward` with and
    /// without the input gradient (which it must then leave alone).
    @Test(arguments: [geometries[0], geometries[6], geometries[9]])
    func kernelPathMatchesBuiltIn(geometry g: Convolution2DGeometry) throws {
        let reference = Self.thaw(g)
        let (x, w, b, dy) = Self.operands(g)
        let path = ConvolutionPath.dnnl(try DnnlConvolutionPath(geometry: g, bias: true))
        let y = Tensor(shape: [g.outputCount])
        path.forward(output: y.data, input: x.data, weight: w.data, bias: b.data)
        #expect(relativeError(y.values, reference.y) < 1e-4)
        for withInputGradient in [true, false] {
            let (dx, dw, db) = (Tensor(shape: [g.inputCount]), Tensor(shape: [g.weightCount]), Tensor(shape: [g.outputChannels]))
            dx.fill(0.5)
            dw.fill(0.25)
            db.fill(-1)
            path.backward(dInput: withInputGradient ? dx.data : nil, dWeight: dw.data, dBias: db.data, dOutput: dy.data,
                          input: x.data, weight: w.data)
            #expect(relativeError(dw.values, reference.dw.map { $0 + 0.25 }) < 1e-4)
            #expect(relativeError(db.values, reference.db.map { $0 - 1 }) < 1e-4)
            if withInputGradient {
                #expect(relativeError(dx.values, reference.dx.map { $0 + 0.5 }) < 1e-4)
            } else {
                #expect(dx.values.allSatisfy { $0 == 0.5 }, "dInput touched without an input gradient")
            }
        }
    }

    /// oneDNN for depthwise convolutions of ≥ 16 channels whose kernel fits in the input; Thaw's own
    /// paths for dense, 1×1 and grouped convolutions, for few channels and for inputs smaller than the kernel.
    @Test func dispatchSendsMeasuredShapesToDnnl() {
        let depthwise = Convolution2DGeometry(batch: 32, inputChannels: 144, inputHeight: 16, inputWidth: 16, outputChannels: 144,
                                              kernel: 3, padding: 1, groups: 144)
        #expect(Convolution2D.algorithm(for: depthwise) == .dnnl)
        #expect(Convolution2D.builtInAlgorithm(for: depthwise) == .depthwise)
        var tiny = depthwise
        (tiny.inputHeight, tiny.inputWidth) = (2, 2)
        #expect(Convolution2D.algorithm(for: tiny) == .depthwise)
        var stridedToTwo = depthwise
        (stridedToTwo.inputHeight, stridedToTwo.inputWidth, stridedToTwo.stride) = (4, 4, 2)
        #expect(stridedToTwo.outputHeight == 2 && Convolution2D.algorithm(for: stridedToTwo) == .dnnl)
        var few = depthwise
        (few.inputChannels, few.outputChannels, few.groups) = (8, 8, 8)
        #expect(Convolution2D.algorithm(for: few) == .depthwise)
        var dense = depthwise
        dense.groups = 1
        #expect(Convolution2D.algorithm(for: dense) == .im2col)
        var pointwise = dense
        (pointwise.kernel, pointwise.padding) = (1, 0)
        #expect(Convolution2D.algorithm(for: pointwise) == .pointwise)
        var strided1x1 = pointwise
        strided1x1.stride = 2
        #expect(Convolution2D.algorithm(for: strided1x1) == .im2col)
        var stem = dense
        stem.inputChannels = 3
        #expect(Convolution2D.algorithm(for: stem) == .im2col)
        var grouped = dense
        grouped.groups = 4
        #expect(Convolution2D.algorithm(for: grouped) == .im2col)
        #expect(Convolution2D.supports(.dnnl, grouped))
    }

    /// Names of the chosen implementations come back.
    @Test func reportsImplementations() throws {
        let g = Self.geometries[5]
        let plain = try DnnlConvolution(geometry: g, bias: false, layout: .plain, threads: 1)
        let blocked = try DnnlConvolution(geometry: g, bias: false, layout: .blocked, threads: 1)
        #expect(!plain.implementations.forward.isEmpty && plain.implementations.forward != "?")
        #expect(!blocked.implementations.backwardWeights.isEmpty && blocked.implementations.backwardWeights != "?")
        #expect(!DnnlConvolution.version.hasPrefix("?"))
    }

    /// Two instances of different sizes, called in turn on one workspace, hold the larger one's buffer
    /// (not the sum), and each still computes what Thaw's kernels compute.
    @Test func instancesShareOneWorkspace() throws {
        let small = Convolution2DGeometry(batch: 2, inputChannels: 16, inputHeight: 8, inputWidth: 8, outputChannels: 16,
                                          kernel: 3, padding: 1, groups: 16)
        let large = Convolution2DGeometry(batch: 2, inputChannels: 32, inputHeight: 12, inputWidth: 12, outputChannels: 32,
                                          kernel: 3, stride: 2, padding: 1, groups: 32)
        let workspace = DnnlWorkspace()
        var instances: [(Convolution2DGeometry, DnnlConvolution)] = []
        for g in [small, large] {
            let convolution = try DnnlConvolution(geometry: g, bias: true, layout: .blocked, threads: 1)
            convolution.workspace = workspace
            instances.append((g, convolution))
        }
        for (g, convolution) in instances + instances {
            let (x, w, b, dy) = Self.operands(g)
            let (y, dx, dw, db) = (Tensor(shape: [g.outputCount]), Tensor(shape: [g.inputCount]),
                                   Tensor(shape: [g.weightCount]), Tensor(shape: [g.outputChannels]))
            convolution.forward(output: y.data, input: x.data, weight: w.data, bias: b.data)
            convolution.backwardData(dInput: dx.data, dOutput: dy.data, weight: w.data)
            convolution.backwardWeights(dWeight: dw.data, dBias: db.data, dOutput: dy.data, input: x.data)
            let reference = Self.thaw(g)
            #expect(relativeError(y.values, reference.y) < 1e-4, "forward \(g)")
            #expect(relativeError(dx.values, reference.dx) < 1e-4, "backward-data \(g)")
            #expect(relativeError(dw.values, reference.dw) < 1e-4, "backward-weights \(g)")
            #expect(relativeError(db.values, reference.db) < 1e-4, "bias gradient \(g)")
        }
        let needs = instances.map { $0.1.workspaceBytesPerCall }
        #expect(needs.allSatisfy { $0 > 0 }, "blocked layouts need workspace: \(needs)")
        #expect(workspace.retainedBytes == needs.max(), "workspace holds \(workspace.retainedBytes) bytes for calls of \(needs)")
    }

    /// A convolution created without a bias gradient still adds a given bias in its forward (a batch
    /// norm folded into it), and adds nothing when given none.
    @Test func forwardTakesABiasOrNone() throws {
        let g = Convolution2DGeometry(batch: 2, inputChannels: 16, inputHeight: 8, inputWidth: 8, outputChannels: 16,
                                      kernel: 3, padding: 1, groups: 16)
        let (x, w, b, _) = Self.operands(g)
        let convolution = try DnnlConvolution(geometry: g, bias: false, layout: .blocked, threads: 1)
        let depthwise = try #require(DepthwiseConvolution(geometry: g))
        for bias in [Optional(b), nil] {
            let (expected, y) = (Tensor(shape: [g.outputCount]), Tensor(shape: [g.outputCount]))
            y.fill(1000)
            depthwise.forward(output: expected.data, input: x.data, weight: w.data, bias: bias.map { UnsafePointer($0.data) })
            convolution.forward(output: y.data, input: x.data, weight: w.data, bias: bias.map { UnsafePointer($0.data) })
            #expect(relativeError(y.values, expected.values) < 1e-4, "forward with bias \(bias != nil)")
        }
    }
}
