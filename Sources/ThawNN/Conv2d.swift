// Conv2d: 2-D convolution over [N, C, H, W] with PyTorch's parameters and defaults.
import ThawKernels

/// A 2-D convolution. Weight is `[outputChannels, inputChannels / groups, kh, kw]`, bias `[outputChannels]`.
///
/// The kernel path is chosen once per input geometry (`Convolution2D.algorithm(for:)`, or the forced
/// `algorithm`) and made by the layer's `ConvolutionPaths`: depthwise convolutions of ≥ 16 channels
/// through oneDNN (primitives kept for the last few geometries), 1×1 stride-1 unpadded convolutions
/// as a plain GEMM, other depthwise ones (groups == inputChannels > 1) as direct loops, everything
/// else through im2col into one scratch tensor the layer reuses. If oneDNN cannot create a primitive,
/// Thaw's own path is used. In inference, a `Sequential` folds the batch norm after it into its
/// weights (`BatchNormFoldable`).
public final class Conv2d: Layer, BatchNormFoldable {
    /// Input channels.
    public let inputChannels: Int
    /// Output channels.
    public let outputChannels: Int
    /// Kernel extent.
    public let kernelSize: Size2D
    /// Step between output positions.
    public let stride: Size2D
    /// Zeros added on each side.
    public let padding: Size2D
    /// Spacing between kernel taps.
    public let dilation: Size2D
    /// Channel groups.
    public let groups: Int
    /// Whether there is a bias term.
    public let hasBias: Bool
    /// A forced kernel path, or nil to pick the fastest one that applies.
    public let algorithm: Convolution2D.Algorithm?

    private var weight: ParameterView?
    private var bias: ParameterView?
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private let foldedWeight = Tensor(shape: [0])
    private let foldedBias = Tensor(shape: [0])
    private var input: Tensor?
    private var geometry: Convolution2DGeometry?
    /// The paths this layer runs, with their scratch and oneDNN primitives.
    private let paths: ConvolutionPaths
    /// The LoRA update on a 1×1 convolution, if one is attached.
    public private(set) var adapter: LowRankAdapter?

    /// Creates a convolution.
    /// - Parameters:
    ///   - inputChannels: Channels of the input; divisible by `groups`.
    ///   - outputChannels: Channels of the output; divisible by `groups`.
    ///   - kernelSize: Kernel extent (an integer for a square kernel).
    ///   - stride: Step between output positions.
    ///   - padding: Zeros added on each side.
    ///   - dilation: Spacing between kernel taps.
    ///   - groups: Channel groups (`inputChannels` for depthwise).
    ///   - bias: Whether to add a learned bias.
    ///   - algorithm: Force a kernel path (for tests and benchmarks); nil picks automatically.
    public init(
        _ inputChannels: Int, _ outputChannels: Int, kernelSize: Size2D, stride: Size2D = 1, padding: Size2D = 0,
        dilation: Size2D = 1, groups: Int = 1, bias: Bool = true, algorithm: Convolution2D.Algorithm? = nil
    ) {
        precondition(groups >= 1 && inputChannels % groups == 0 && outputChannels % groups == 0,
                     "Conv2d: channels \(inputChannels)→\(outputChannels) are not divisible by groups \(groups)")
        precondition(min(kernelSize.height, kernelSize.width, stride.height, stride.width, dilation.height, dilation.width) >= 1
                     && min(padding.height, padding.width) >= 0, "Conv2d: kernel, stride and dilation must be ≥ 1, padding ≥ 0")
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.hasBias = bias
        self.algorithm = algorithm
        self.paths = ConvolutionPaths(bias: bias)
    }

    /// Whether this is a 1×1, stride-1, unpadded, ungrouped convolution: a linear map of each position's
    /// channels, which a LoRA update can adapt.
    public var isPointwise: Bool {
        kernelSize == 1 && stride == 1 && padding == 0 && groups == 1
    }

    /// Attaches a LoRA update of `rank` scaled by `alpha / rank` to a pointwise convolution, with
    /// factors shaped as PEFT's (`[rank, in, 1, 1]`, `[out, rank, 1, 1]`). Must happen before a
    /// ``Model`` lays the layer out.
    /// - Throws: ``AdapterError`` for a convolution that is not pointwise, a rank outside
    ///   1...min(in, out), or a second adapter.
    public func attachAdapter(rank: Int, alpha: Float, dropout: Float = 0, seed: UInt64 = 0) throws(AdapterError) {
        let layer = "Conv2d(\(inputChannels) → \(outputChannels), kernel \(kernelSize.height)×\(kernelSize.width))"
        guard isPointwise else { throw AdapterError(layer: layer, reason: .notPointwise) }
        guard adapter == nil else { throw AdapterError(layer: layer, reason: .alreadyAdapted) }
        let width = min(inputChannels, outputChannels)
        guard rank >= 1, rank <= width else { throw AdapterError(layer: layer, reason: .rank(rank, width: width)) }
        adapter = LowRankAdapter(rank: rank, alpha: alpha, dropout: dropout, seed: seed,
                                 inputDimensions: inputChannels, outputDimensions: outputChannels, layout: .channels)
    }

    /// The adapter's dropout, the only nested layer (so the trainer reseeds it).
    public var children: [any Layer] { adapter?.dropout.map { [$0] } ?? [] }

    /// Inputs to each output: (inputChannels / groups) · kh · kw.
    public var fanIn: Int { inputChannels / groups * kernelSize.height * kernelSize.width }

    /// `weight` and optionally `bias`, both uniform in ±1/sqrt(fanIn) like PyTorch.
    public var parameterSpecs: [ParameterSpec] {
        var specs = [ParameterSpec("weight", shape: [outputChannels, inputChannels / groups, kernelSize.height, kernelSize.width],
                                   initializer: .uniformFanIn(fanIn))]
        if hasBias { specs.append(ParameterSpec("bias", shape: [outputChannels], initializer: .uniformFanIn(fanIn))) }
        return specs + (adapter?.parameterSpecs ?? [])
    }

    /// Binds weight, bias and adapter views.
    public func bind(parameters: [ParameterView], state: [StateView]) {
        weight = parameters[0]
        bias = hasBias ? parameters[1] : nil
        adapter?.bind(parameters[(hasBias ? 2 : 1)...])
    }

    /// `[N, inputChannels, H, W]` → `[N, outputChannels, OH, OW]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        let expected = "[N, \(inputChannels), H, W] with H, W large enough for kernel \(kernelSize), "
            + "padding \(padding), dilation \(dilation)"
        guard inputShape.count == 4, inputShape[1] == inputChannels else {
            throw ShapeError(layer: "Conv2d", shape: inputShape, expected: expected)
        }
        let g = geometry(for: inputShape)
        guard g.outputHeight > 0, g.outputWidth > 0 else { throw ShapeError(layer: "Conv2d", shape: inputShape, expected: expected) }
        if let algorithm, !Convolution2D.supports(algorithm, g) {
            throw ShapeError(layer: "Conv2d", shape: inputShape, expected: "a geometry the forced \(algorithm) path supports")
        }
        return [inputShape[0], outputChannels, g.outputHeight, g.outputWidth]
    }

    /// The kernel geometry for an input shape `[N, C, H, W]`.
    public func geometry(for inputShape: [Int]) -> Convolution2DGeometry {
        Convolution2DGeometry(
            batch: inputShape[0], inputChannels: inputChannels, inputHeight: inputShape[2], inputWidth: inputShape[3],
            outputChannels: outputChannels, kernel: kernelSize, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    /// The kernel path used for `geometry` (before any fallback from oneDNN to Thaw's own path).
    public func algorithm(for geometry: Convolution2DGeometry) -> Convolution2D.Algorithm {
        algorithm ?? Convolution2D.algorithm(for: geometry)
    }

    /// The path to run for `g`: `algorithm(for:)`'s, or Thaw's own where oneDNN refuses the geometry.
    private func path(for g: Convolution2DGeometry) -> ConvolutionPath {
        paths.path(algorithm(for: g), for: g)
    }

    /// y = conv(x, weight) + bias.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard let weight else { preconditionFailure("Conv2d used before bind") }
        precondition(x.shape.count == 4 && x.shape[1] == inputChannels, "Conv2d: input shape \(x.shape), expected [N, \(inputChannels), H, W]")
        let g = geometry(for: x.shape)
        output.resize(to: [g.batch, outputChannels, g.outputHeight, g.outputWidth])
        path(for: g).forward(output: output.data, input: x.data, weight: weight.value, bias: bias.map { UnsafePointer($0.value) })
        adapter?.forward(x, addingTo: output, mode: mode)
        input = mode == .training ? x : nil
        geometry = mode == .training ? g : nil
        return output
    }

    /// Whether `batchNorm` normalizes this convolution's output channels, so that it can be folded in.
    /// An adapted convolution is not folded: its update is not in the weight.
    public func canFold(_ batchNorm: BatchNorm2d) -> Bool { batchNorm.channels == outputChannels && adapter == nil }

    /// The inference-mode forward of this convolution followed by `batchNorm`, as one convolution:
    /// the normalization is folded into a copy of the weight and a bias (recomputed on every call, which
    /// costs one pass over the weights, so it can never be stale), and the batch-norm pass is skipped.
    /// Keeps nothing for backward. The parameters themselves are untouched.
    public func forwardFoldingBatchNorm(_ x: Tensor, _ batchNorm: BatchNorm2d) -> Tensor {
        guard let weight else { preconditionFailure("Conv2d used before bind") }
        // An adapter attached after the pairing: its update is not in the weight, so run the two apart.
        if adapter != nil { return batchNorm.forward(forward(x, mode: .inference), mode: .inference) }
        precondition(canFold(batchNorm), "Conv2d: folding a batch norm of \(batchNorm.channels) channels into \(outputChannels)")
        precondition(x.shape.count == 4 && x.shape[1] == inputChannels, "Conv2d: input shape \(x.shape), expected [N, \(inputChannels), H, W]")
        foldedWeight.resize(to: [weight.count])
        foldedBias.resize(to: [outputChannels])
        batchNorm.fold(convolutionWeight: weight.value, convolutionBias: bias.map { UnsafePointer($0.value) },
                       weightsPerChannel: weight.count / outputChannels, into: foldedWeight.data, foldedBias: foldedBias.data)
        let g = geometry(for: x.shape)
        output.resize(to: [g.batch, outputChannels, g.outputHeight, g.outputWidth])
        path(for: g).forward(output: output.data, input: x.data, weight: foldedWeight.data, bias: UnsafePointer(foldedBias.data))
        input = nil
        geometry = nil
        return output
    }

    /// dWeight += dY ⋆ x, dBias += Σ dY (each unless fixed), dX = convᵀ(dY, weight), plus the adapter's terms.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let weight, let x = input, let g = geometry else { preconditionFailure("Conv2d.backward without a training forward") }
        if computeInputGradient {
            inputGradient.resize(to: x.shape)
            inputGradient.zero()
        }
        let path = path(for: g)
        let dBias = bias.flatMap { $0.isFixed ? nil : $0.gradient }
        if weight.isFixed {
            // The base weight under adapters: its input gradient only (and a trainable bias's sum).
            if let dBias { ConvolutionBias.backward(dBias: dBias, dOutput: dY.data, geometry: g) }
            if computeInputGradient { path.backwardData(dInput: inputGradient.data, dOutput: dY.data, weight: weight.value) }
        } else {
            path.backward(dInput: computeInputGradient ? inputGradient.data : nil, dWeight: weight.gradient,
                          dBias: dBias, dOutput: dY.data, input: x.data, weight: weight.value)
        }
        adapter?.backward(dY, addingTo: computeInputGradient ? inputGradient : nil)
        return computeInputGradient ? inputGradient : nil
    }
}
