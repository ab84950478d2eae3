// ConvolutionPath: how one convolution is computed, as a value that holds what its way needs.
//
// Four paths compute the same function (Convolution2DGeometry's semantics):
// - `im2col` (Im2colConvolution.swift): the general reference path, unfold into a scratch column
//   matrix, then GEMM. Applies to every geometry.
// - `pointwise` (PointwiseConvolution.swift): 1×1 kernels with stride 1 and no padding, a plain GEMM.
// - `depthwise` (DepthwiseConvolution.swift): groups == input channels > 1, direct loops.
// - `dnnl` (DnnlConvolutionPath.swift): oneDNN's primitives in their blocked layouts. Chosen for
//   depthwise convolutions of ≥ 16 channels, where `thaw bench conv` measured it 2–10× faster than the
//   direct loops on MobileNetV2 (BENCHMARKS.md). Dense 3×3 convolutions were also faster through
//   oneDNN, but stay on im2col for now: see BENCHMARKS.md for why.
// A pointwise or depthwise value exists only for a geometry it applies to, and an im2col or dnnl one
// carries its scratch or primitives, so the passes take nothing but their operands.
// `Convolution2D.algorithm(for:)` names the fastest path; `ConvolutionPaths` makes the value.
//
// Note: accumulation. As in llm.c, every backward pass accumulates (`+=`) into its gradient outputs
// (`dInput`, `dWeight`, `dBias`). Callers zero `dInput` first when they want it fresh.

/// The passes of a convolution on one geometry, on NCHW row-major tensors (Note: accumulation).
///
/// Layouts: input `[N, inputChannels, H, W]`, weight `[outputChannels, inputChannels / groups, kh, kw]`,
/// bias `[outputChannels]`, output `[N, outputChannels, OH, OW]`.
public protocol ConvolutionKernel {
    /// The sizes the passes compute.
    var geometry: Convolution2DGeometry { get }

    /// output = conv(input, weight) + bias.
    /// - Parameters:
    ///   - output: `[N, outputChannels, OH, OW]`, overwritten.
    ///   - input: `[N, inputChannels, H, W]`.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    ///   - bias: `[outputChannels]`, or nil.
    func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                 bias: UnsafePointer<Float>?)

    /// dInput += d(output)/d(input)ᵀ · dOutput.
    /// - Parameters:
    ///   - dInput: `[N, inputChannels, H, W]`, accumulated into.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>)

    /// dWeight += dOutput ⋆ input, and dBias += Σ dOutput over batch and positions.
    /// - Parameters:
    ///   - dWeight: `[outputChannels, inputChannels / groups, kh, kw]`, accumulated into.
    ///   - dBias: `[outputChannels]` accumulated into, or nil when there is no bias.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - input: `[N, inputChannels, H, W]`, the forward input.
    func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                         dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>)

    /// Both backward passes: dWeight += dOutput ⋆ input, dBias += Σ dOutput, and, when `dInput` is
    /// given, dInput += convᵀ(dOutput, weight). Same sums in the same order as `backwardWeights` then
    /// `backwardData` (the default); im2col does it in one sweep over the batch.
    /// - Parameters:
    ///   - dInput: `[N, inputChannels, H, W]` accumulated into, or nil to skip the input gradient.
    ///   - dWeight: `[outputChannels, inputChannels / groups, kh, kw]`, accumulated into.
    ///   - dBias: `[outputChannels]` accumulated into, or nil when there is no bias.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - input: `[N, inputChannels, H, W]`, the forward input.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                  dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>)
}

extension ConvolutionKernel {
    /// `backwardWeights`, then `backwardData` when `dInput` is given.
    public func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                         dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        backwardWeights(dWeight: dWeight, dBias: dBias, dOutput: dOutput, input: input)
        if let dInput { backwardData(dInput: dInput, dOutput: dOutput, weight: weight) }
    }
}

/// One way of computing a convolution, with what that way needs: the value a layer runs.
public enum ConvolutionPath: ConvolutionKernel {
    /// Unfold into a scratch column matrix, then GEMM.
    case im2col(Im2colConvolution)
    /// A plain GEMM on the input (1×1, stride 1, no padding).
    case pointwise(PointwiseConvolution)
    /// Direct loops (groups == input channels > 1).
    case depthwise(DepthwiseConvolution)
    /// oneDNN's primitives.
    case dnnl(DnnlConvolutionPath)

    /// The path's name.
    public var algorithm: Convolution2D.Algorithm {
        switch self {
        case .im2col: .im2col
        case .pointwise: .pointwise
        case .depthwise: .depthwise
        case .dnnl: .dnnl
        }
    }

    /// The value that computes the passes.
    var kernel: any ConvolutionKernel {
        switch self {
        case .im2col(let path): path
        case .pointwise(let path): path
        case .depthwise(let path): path
        case .dnnl(let path): path
        }
    }

    /// The sizes the path computes.
    public var geometry: Convolution2DGeometry { kernel.geometry }

    /// output = conv(input, weight) + bias, through the path.
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?) {
        kernel.forward(output: output, input: input, weight: weight, bias: bias)
    }

    /// dInput += convᵀ(dOutput, weight), through the path.
    public func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        kernel.backwardData(dInput: dInput, dOutput: dOutput, weight: weight)
    }

    /// dWeight += dOutput ⋆ input and dBias += Σ dOutput, through the path.
    public func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                                dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>) {
        kernel.backwardWeights(dWeight: dWeight, dBias: dBias, dOutput: dOutput, input: input)
    }

    /// Both backward passes, through the path (one sweep on im2col).
    public func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                         dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        kernel.backward(dInput: dInput, dWeight: dWeight, dBias: dBias, dOutput: dOutput, input: input, weight: weight)
    }
}

/// The choice of a convolution path, by geometry.
public enum Convolution2D {
    /// The name of a path. All paths give the same result where they apply.
    public enum Algorithm: Sendable, Equatable, CaseIterable {
        /// Unfold into a scratch column matrix, then GEMM. Applies to every geometry.
        case im2col
        /// Plain GEMM on the input. Only for 1×1 kernels with stride 1 and no padding.
        case pointwise
        /// Direct loops. Only for depthwise geometries (groups == inputChannels > 1).
        case depthwise
        /// oneDNN's primitives (blocked layouts, reorders included). Applies to every geometry.
        case dnnl
    }

    /// The fastest algorithm measured for `geometry`: oneDNN for depthwise convolutions with a kernel
    /// larger than 1×1, at least 16 channels (its blocks hold 16) and a kernel that fits inside the
    /// unpadded input (MobileNetV2's 3×3 on a 2×2 input is not: there oneDNN's backward-weights falls
    /// back to a GEMM and was 2.6× slower); otherwise `builtInAlgorithm(for:)`.
    public static func algorithm(for geometry: Convolution2DGeometry) -> Algorithm {
        let g = geometry
        let extentHeight = (g.kernel.height - 1) * g.dilation.height + 1
        let extentWidth = (g.kernel.width - 1) * g.dilation.width + 1
        if g.isDepthwise && g.kernel.height * g.kernel.width > 1 && g.inputChannels >= 16
            && g.inputHeight >= extentHeight && g.inputWidth >= extentWidth {
            return .dnnl
        }
        return builtInAlgorithm(for: g)
    }

    /// The fastest of Thaw's own algorithms that applies: pointwise, then depthwise, then im2col.
    public static func builtInAlgorithm(for geometry: Convolution2DGeometry) -> Algorithm {
        if geometry.isPointwise { return .pointwise }
        if geometry.isDepthwise { return .depthwise }
        return .im2col
    }

    /// Whether `algorithm` can compute `geometry`.
    public static func supports(_ algorithm: Algorithm, _ geometry: Convolution2DGeometry) -> Bool {
        switch algorithm {
        case .im2col, .dnnl: return true
        case .pointwise: return geometry.isPointwise
        case .depthwise: return geometry.isDepthwise
        }
    }
}

/// The paths of one convolution layer: makes `ConvolutionPath` values and owns what they need, the
/// im2col scratch (one, reused by every geometry) and oneDNN's primitives for the geometries met most
/// recently (training, last and evaluation batches differ in size), newest last. The primitives hold no
/// activation buffers: those come from the shared `DnnlWorkspace`.
public final class ConvolutionPaths {
    /// Whether the layer has a bias (oneDNN's primitives then compute its gradient).
    public let hasBias: Bool
    /// How many geometries keep their primitives.
    public static let keptGeometries = 4

    private let scratch = Tensor(shape: [0])
    private var primitivesByGeometry: [(geometry: Convolution2DGeometry, primitives: DnnlConvolutionPath?)] = []

    /// Creates the paths of a layer with or without a bias.
    public init(bias: Bool) { hasBias = bias }

    /// The `algorithm` path for `geometry`, or Thaw's own (`builtInPath(for:)`) when `algorithm` does
    /// not apply or oneDNN refuses the geometry (the refusal is remembered with the primitives).
    ///
    /// oneDNN runs on one OpenMP thread whatever OpenBLAS uses: with 2 threads on the shared 2-core
    /// host its depthwise passes were 1.2–35× slower than Thaw's single-threaded loops (BENCHMARKS.md).
    public func path(_ algorithm: Convolution2D.Algorithm, for geometry: Convolution2DGeometry) -> ConvolutionPath {
        switch algorithm {
        case .im2col: return .im2col(Im2colConvolution(geometry: geometry, scratch: scratch))
        case .pointwise: if let path = PointwiseConvolution(geometry: geometry) { return .pointwise(path) }
        case .depthwise: if let path = DepthwiseConvolution(geometry: geometry) { return .depthwise(path) }
        case .dnnl: if let path = primitives(for: geometry) { return .dnnl(path) }
        }
        return builtInPath(for: geometry)
    }

    /// Thaw's own fastest path for `geometry` (`Convolution2D.builtInAlgorithm(for:)`, which always applies).
    public func builtInPath(for geometry: Convolution2DGeometry) -> ConvolutionPath {
        path(Convolution2D.builtInAlgorithm(for: geometry), for: geometry)
    }

    /// oneDNN's primitives for `geometry`: kept, or created (the oldest dropped beyond `keptGeometries`); nil if refused.
    private func primitives(for geometry: Convolution2DGeometry) -> DnnlConvolutionPath? {
        if let kept = primitivesByGeometry.first(where: { $0.geometry == geometry }) { return kept.primitives }
        let primitives = try? DnnlConvolutionPath(geometry: geometry, bias: hasBias)
        primitivesByGeometry.append((geometry, primitives))
        if primitivesByGeometry.count > Self.keptGeometries { primitivesByGeometry.removeFirst() }
        return primitives
    }
}

/// The bias terms every path but oneDNN computes the same way.
public enum ConvolutionBias {
    /// Writes each channel's bias over its plane (so a GEMM can accumulate onto it); nothing without a bias.
    static func fill(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, channels: Int, positions: Int) {
        guard let bias else { return }
        for c in 0..<channels { (out + c * positions).update(repeating: bias[c], count: positions) }
    }

    /// dBias[o] += Σ over images and positions of dOutput[n, o].
    public static func backward(dBias: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, geometry g: Convolution2DGeometry) {
        // Legend: P output positions.
        let P = g.outputHeight * g.outputWidth
        for n in 0..<g.batch {
            for o in 0..<g.outputChannels {
                let plane = dOutput + (n * g.outputChannels + o) * P
                var sum: Float = 0
                for p in 0..<P { sum += plane[p] }
                dBias[o] += sum
            }
        }
    }
}
