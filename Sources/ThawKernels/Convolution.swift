// Convolution: 2-D convolution forward and backward on NCHW tensors, with PyTorch's semantics
// (cross-correlation, symmetric zero padding, stride, dilation, groups).
//
// Three paths compute the same function:
// - `im2col`: the general reference path. Each image's group is unfolded into a column matrix
//   in a caller-owned scratch buffer and multiplied with `Gemm.multiply`. With stride 1 across and
//   one output row per input row ("same" padding), each kernel tap's rows are one contiguous run
//   of the input plane, so im2col copies and col2im adds one run per tap instead of row by row.
// - `pointwise`: 1×1 kernels with stride 1 and no padding. The input already is the column
//   matrix, so the convolution is a plain GEMM with no unfolding.
// - `depthwise`: groups == input channels (> 1), each output channel reading one input channel
//   (channel multiplier = outputs / inputs). A direct loop; GEMMs of one row would be wasteful.
// - `dnnl`: oneDNN's primitives in their own blocked layouts, with reorders from and to NCHW in
//   every call (`DnnlConvolution`, which the caller creates per geometry and passes in). Chosen for
//   depthwise convolutions of ≥ 16 channels, where `thaw bench conv` measured it 2–10× faster than
//   the direct loops on MobileNetV2 (BENCHMARKS.md). Dense 3×3 convolutions were also faster
//   through oneDNN, but stay on im2col for now: see BENCHMARKS.md for why.
//
// Note: accumulation. As in llm.c, every backward kernel accumulates (`+=`) into its gradient
// outputs (`dInput`, `dWeight`, `dBias`). Callers zero `dInput` first when they want it fresh.

/// A height and a width: a kernel extent, a stride, a padding or a dilation.
///
/// An integer literal means the same value for both dimensions (`kernelSize: 3`).
public struct Size2D: Sendable, Equatable, Hashable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// The vertical extent.
    public var height: Int
    /// The horizontal extent.
    public var width: Int

    /// Creates a pair from its two values.
    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }

    /// Creates a pair with the same value in both dimensions.
    public init(_ both: Int) { self.init(height: both, width: both) }

    /// Creates a pair with the same value in both dimensions from a literal.
    public init(integerLiteral value: Int) { self.init(value) }

    /// `(height, width)`.
    public var description: String { "(\(height), \(width))" }
}

/// The sizes that define one 2-D convolution on one batch.
public struct Convolution2DGeometry: Sendable, Equatable {
    /// Images in the batch.
    public var batch: Int
    /// Input channels.
    public var inputChannels: Int
    /// Input height.
    public var inputHeight: Int
    /// Input width.
    public var inputWidth: Int
    /// Output channels.
    public var outputChannels: Int
    /// Kernel extent.
    public var kernel: Size2D
    /// Step between neighbouring output positions.
    public var stride: Size2D
    /// Zeros added on each side (top and bottom, left and right).
    public var padding: Size2D
    /// Spacing between kernel taps (1 = dense kernel).
    public var dilation: Size2D
    /// Channel groups; input and output channels must both be divisible by it.
    public var groups: Int

    /// Creates a geometry.
    public init(
        batch: Int, inputChannels: Int, inputHeight: Int, inputWidth: Int, outputChannels: Int,
        kernel: Size2D, stride: Size2D = 1, padding: Size2D = 0, dilation: Size2D = 1, groups: Int = 1
    ) {
        self.batch = batch
        self.inputChannels = inputChannels
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.outputChannels = outputChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
    }

    /// Output height: ⌊(H + 2·padding − dilation·(kernel − 1) − 1) / stride⌋ + 1, as in PyTorch.
    public var outputHeight: Int {
        Convolution2DGeometry.outputExtent(inputHeight, kernel.height, stride.height, padding.height, dilation.height)
    }

    /// Output width, by the same formula as `outputHeight`.
    public var outputWidth: Int {
        Convolution2DGeometry.outputExtent(inputWidth, kernel.width, stride.width, padding.width, dilation.width)
    }

    /// Input channels seen by each group.
    public var inputChannelsPerGroup: Int { inputChannels / groups }
    /// Output channels produced by each group.
    public var outputChannelsPerGroup: Int { outputChannels / groups }
    /// Elements of the weight: outputChannels × inputChannelsPerGroup × kernel area.
    public var weightCount: Int { outputChannels * inputChannelsPerGroup * kernel.height * kernel.width }
    /// Elements of the input tensor.
    public var inputCount: Int { batch * inputChannels * inputHeight * inputWidth }
    /// Elements of the output tensor.
    public var outputCount: Int { batch * outputChannels * outputHeight * outputWidth }

    /// Whether the convolution is 1×1 with stride 1 and no padding (so the input is its own column matrix).
    public var isPointwise: Bool {
        kernel == 1 && stride == 1 && padding == 0
    }

    /// Whether every group has one input channel (groups == inputChannels > 1): depthwise,
    /// with `outputChannels / inputChannels` output channels per input channel.
    public var isDepthwise: Bool { groups > 1 && groups == inputChannels }

    /// ⌊(input + 2p − d(k − 1) − 1) / s⌋ + 1, or 0 when the kernel does not fit.
    static func outputExtent(_ input: Int, _ kernel: Int, _ stride: Int, _ padding: Int, _ dilation: Int) -> Int {
        let span = input + 2 * padding - dilation * (kernel - 1) - 1
        return span < 0 ? 0 : span / stride + 1
    }
}

/// 2-D convolution kernels (forward, backward-data, backward-weights) on NCHW row-major tensors.
///
/// Layouts: input `[N, inputChannels, H, W]`, weight `[outputChannels, inputChannels / groups, kh, kw]`,
/// bias `[outputChannels]`, output `[N, outputChannels, OH, OW]`.
public enum Convolution2D {
    /// How a convolution is computed. All algorithms give the same result where they apply.
    public enum Algorithm: Sendable, Equatable, CaseIterable {
        /// Unfold into a scratch column matrix, then GEMM. Applies to every geometry.
        case im2col
        /// Plain GEMM on the input. Only for 1×1 kernels with stride 1 and no padding.
        case pointwise
        /// Direct loops. Only for depthwise geometries (groups == inputChannels > 1).
        case depthwise
        /// oneDNN's primitives (blocked layouts, reorders included) through a caller-owned
        /// `DnnlConvolution` created with `accumulate: true`. Applies to every geometry.
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

    /// Elements of scratch space `algorithm` needs: one group's column matrix for im2col, none otherwise.
    public static func scratchCount(_ algorithm: Algorithm, _ geometry: Convolution2DGeometry) -> Int {
        guard algorithm == .im2col else { return 0 }
        return geometry.inputChannelsPerGroup * geometry.kernel.height * geometry.kernel.width
            * geometry.outputHeight * geometry.outputWidth
    }

    // MARK: - Dispatch

    /// output = conv(input, weight) + bias.
    /// - Parameters:
    ///   - output: `[N, outputChannels, OH, OW]`, overwritten.
    ///   - input: `[N, inputChannels, H, W]`.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    ///   - bias: `[outputChannels]`, or nil.
    ///   - geometry: The sizes.
    ///   - algorithm: The path; must support `geometry`.
    ///   - scratch: At least `scratchCount(algorithm, geometry)` elements (unused unless im2col).
    ///   - primitives: oneDNN's primitives for `geometry` (with `accumulate`); required for `.dnnl`, else unused.
    public static func forward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, geometry: Convolution2DGeometry, algorithm: Algorithm,
        scratch: UnsafeMutablePointer<Float>, primitives: DnnlConvolution? = nil
    ) {
        precondition(supports(algorithm, geometry), "\(algorithm) does not apply to \(geometry)")
        switch algorithm {
        case .dnnl: dnnl(primitives, geometry).forward(output: output, input: input, weight: weight, bias: bias)
        case .im2col: forwardIm2col(output: output, input: input, weight: weight, bias: bias, geometry: geometry, scratch: scratch)
        case .pointwise: forwardPointwise(output: output, input: input, weight: weight, bias: bias, geometry: geometry)
        case .depthwise: forwardDepthwise(output: output, input: input, weight: weight, bias: bias, geometry: geometry)
        }
    }

    /// dInput += d(output)/d(input)ᵀ · dOutput.
    /// - Parameters:
    ///   - dInput: `[N, inputChannels, H, W]`, accumulated into.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    ///   - geometry: The sizes.
    ///   - algorithm: The path; must support `geometry`.
    ///   - scratch: At least `scratchCount(algorithm, geometry)` elements (unused unless im2col).
    ///   - primitives: oneDNN's primitives for `geometry` (with `accumulate`); required for `.dnnl`, else unused.
    public static func backwardData(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        geometry: Convolution2DGeometry, algorithm: Algorithm, scratch: UnsafeMutablePointer<Float>,
        primitives: DnnlConvolution? = nil
    ) {
        precondition(supports(algorithm, geometry), "\(algorithm) does not apply to \(geometry)")
        switch algorithm {
        case .dnnl: dnnl(primitives, geometry).backwardData(dInput: dInput, dOutput: dOutput, weight: weight)
        case .im2col: backwardDataIm2col(dInput: dInput, dOutput: dOutput, weight: weight, geometry: geometry, scratch: scratch)
        case .pointwise: backwardDataPointwise(dInput: dInput, dOutput: dOutput, weight: weight, geometry: geometry)
        case .depthwise: backwardDataDepthwise(dInput: dInput, dOutput: dOutput, weight: weight, geometry: geometry)
        }
    }

    /// dWeight += dOutput ⋆ input, and dBias += Σ dOutput over batch and positions.
    /// - Parameters:
    ///   - dWeight: `[outputChannels, inputChannels / groups, kh, kw]`, accumulated into.
    ///   - dBias: `[outputChannels]` accumulated into, or nil when there is no bias.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - input: `[N, inputChannels, H, W]`, the forward input.
    ///   - geometry: The sizes.
    ///   - algorithm: The path; must support `geometry`.
    ///   - scratch: At least `scratchCount(algorithm, geometry)` elements (unused unless im2col).
    ///   - primitives: oneDNN's primitives for `geometry` (with `accumulate`); required for `.dnnl`, else unused.
    public static func backwardWeights(
        dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
        dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
        geometry: Convolution2DGeometry, algorithm: Algorithm, scratch: UnsafeMutablePointer<Float>,
        primitives: DnnlConvolution? = nil
    ) {
        precondition(supports(algorithm, geometry), "\(algorithm) does not apply to \(geometry)")
        if algorithm == .dnnl {
            // oneDNN computes the bias gradient with the weights' when its primitives have a bias.
            let primitives = dnnl(primitives, geometry)
            primitives.backwardWeights(dWeight: dWeight, dBias: primitives.hasBias ? dBias : nil, dOutput: dOutput, input: input)
            if let dBias, !primitives.hasBias { backwardBias(dBias: dBias, dOutput: dOutput, geometry: geometry) }
            return
        }
        switch algorithm {
        case .dnnl: break
        case .im2col: backwardWeightsIm2col(dWeight: dWeight, dOutput: dOutput, input: input, geometry: geometry, scratch: scratch)
        case .pointwise: backwardWeightsPointwise(dWeight: dWeight, dOutput: dOutput, input: input, geometry: geometry)
        case .depthwise: backwardWeightsDepthwise(dWeight: dWeight, dOutput: dOutput, input: input, geometry: geometry)
        }
        if let dBias { backwardBias(dBias: dBias, dOutput: dOutput, geometry: geometry) }
    }

    /// Both backward passes in one sweep: dWeight += dOutput ⋆ input, dBias += Σ dOutput, and, when
    /// `dInput` is given, dInput += convᵀ(dOutput, weight).
    ///
    /// Same sums in the same order as `backwardWeights` then `backwardData`. On the im2col path each
    /// image's output gradient is read from memory once and feeds both GEMMs (and the bias sum) while
    /// it is in cache; for a wide early layer the batch's output gradient is megabytes.
    /// - Parameters:
    ///   - dInput: `[N, inputChannels, H, W]` accumulated into, or nil to skip the input gradient.
    ///   - dWeight: `[outputChannels, inputChannels / groups, kh, kw]`, accumulated into.
    ///   - dBias: `[outputChannels]` accumulated into, or nil when there is no bias.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - input: `[N, inputChannels, H, W]`, the forward input.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    ///   - geometry: The sizes.
    ///   - algorithm: The path; must support `geometry`.
    ///   - scratch: At least `scratchCount(algorithm, geometry)` elements (unused unless im2col).
    ///   - primitives: oneDNN's primitives for `geometry` (with `accumulate`); required for `.dnnl`, else unused.
    public static func backward(
        dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
        dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry, algorithm: Algorithm, scratch: UnsafeMutablePointer<Float>,
        primitives: DnnlConvolution? = nil
    ) {
        precondition(supports(algorithm, g), "\(algorithm) does not apply to \(g)")
        guard algorithm == .im2col else {
            backwardWeights(dWeight: dWeight, dBias: dBias, dOutput: dOutput, input: input, geometry: g, algorithm: algorithm,
                            scratch: scratch, primitives: primitives)
            if let dInput {
                backwardData(dInput: dInput, dOutput: dOutput, weight: weight, geometry: g, algorithm: algorithm,
                             scratch: scratch, primitives: primitives)
            }
            return
        }
        // Legend: as in `forwardIm2col`.
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let K = C * g.kernel.height * g.kernel.width
        let P = g.outputHeight * g.outputWidth
        let planeIn = g.inputHeight * g.inputWidth
        var image = g
        image.batch = 1
        for n in 0..<N {
            for group in 0..<G {
                let dOut = dOutput + (n * g.outputChannels + group * O) * P
                im2col(columns: scratch, input: input + (n * g.inputChannels + group * C) * planeIn, channels: C, geometry: g)
                Gemm.multiply(.none, .transposed, m: O, n: K, k: P, a: dOut, b: scratch, beta: 1, c: dWeight + group * O * K)
                guard let dInput else { continue }
                Gemm.multiply(.transposed, .none, m: K, n: P, k: O, a: weight + group * O * K, b: dOut, beta: 0, c: scratch)
                col2im(dInput: dInput + (n * g.inputChannels + group * C) * planeIn, columns: scratch, channels: C, geometry: g)
            }
            if let dBias { backwardBias(dBias: dBias, dOutput: dOutput + n * g.outputChannels * P, geometry: image) }
        }
    }

    /// The primitives a `.dnnl` call needs: given, for this geometry, accumulating (programmer bugs otherwise).
    static func dnnl(_ primitives: DnnlConvolution?, _ geometry: Convolution2DGeometry) -> DnnlConvolution {
        guard let primitives else { preconditionFailure("the dnnl path needs a DnnlConvolution for \(geometry)") }
        precondition(primitives.geometry == geometry && primitives.accumulate,
                     "DnnlConvolution for \(primitives.geometry) (accumulate \(primitives.accumulate)) used for \(geometry)")
        return primitives
    }

    // MARK: - im2col path

    /// Unfolds `channels` input planes of one image into a column matrix.
    ///
    /// Row `(c·kh + i)·kw + j` holds, for every output position `(oh, ow)`, the input value under
    /// kernel tap `(i, j)` of channel `c`, or 0 where the tap falls in the padding.
    /// - Parameters:
    ///   - columns: `[channels·kh·kw, OH·OW]`, overwritten.
    ///   - input: The first of `channels` consecutive `[H, W]` planes.
    ///   - channels: How many planes to unfold (one group's input channels).
    ///   - geometry: The sizes.
    public static func im2col(
        columns: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, channels: Int, geometry: Convolution2DGeometry
    ) {
        // Legend: H, W input plane; OH, OW output plane; KH, KW kernel; S stride; P padding; D dilation.
        let (H, W, OH, OW) = (geometry.inputHeight, geometry.inputWidth, geometry.outputHeight, geometry.outputWidth)
        let (KH, KW) = (geometry.kernel.height, geometry.kernel.width)
        let (SH, SW, PH, PW, DH, DW) = (geometry.stride.height, geometry.stride.width, geometry.padding.height,
                                        geometry.padding.width, geometry.dilation.height, geometry.dilation.width)
        let contiguous = isContiguousTap(geometry)
        // Taps outermost: their valid ranges (two divisions each) are the same for every channel.
        for i in 0..<KH {
            let rowOffset = i * DH - PH
            let rows = validOutputRange(outputs: OH, inputs: H, stride: SH, offset: rowOffset)
            for j in 0..<KW {
                let columnOffset = j * DW - PW
                let cols = validOutputRange(outputs: OW, inputs: W, stride: SW, offset: columnOffset)
                for c in 0..<channels {
                    let plane = input + c * H * W
                    let destination = columns + ((c * KH + i) * KW + j) * OH * OW
                    destination.update(repeating: 0, count: rows.lowerBound * OW)
                    destination.advanced(by: rows.upperBound * OW).update(repeating: 0, count: (OH - rows.upperBound) * OW)
                    guard !rows.isEmpty, !cols.isEmpty else {
                        destination.advanced(by: rows.lowerBound * OW).update(repeating: 0, count: rows.count * OW)
                        continue
                    }
                    if contiguous {
                        // One copy for the whole tap, then zero the padding columns it overwrote.
                        let first = rows.lowerBound * OW + cols.lowerBound
                        let span = (rows.upperBound - 1) * OW + cols.upperBound - first
                        (destination + first).update(from: plane + (rows.lowerBound * SH + rowOffset) * W + columnOffset + cols.lowerBound,
                                                     count: span)
                        zeroColumns(destination, rows: rows, outside: cols, width: OW)
                        continue
                    }
                    for oh in rows {
                        let out = destination + oh * OW
                        let source = plane + (oh * SH + rowOffset) * W + columnOffset
                        for ow in 0..<cols.lowerBound { out[ow] = 0 }
                        if SW == 1 {
                            // Stride 1: the valid run is one contiguous copy.
                            (out + cols.lowerBound).update(from: source + cols.lowerBound, count: cols.count)
                        } else {
                            for ow in cols { out[ow] = source[ow * SW] }
                        }
                        for ow in cols.upperBound..<OW { out[ow] = 0 }
                    }
                }
            }
        }
    }

    /// Folds a column matrix back onto `channels` input planes, accumulating (`+=`); the adjoint of `im2col`.
    ///
    /// When `isContiguousTap(geometry)` holds, the entries of `columns` that fall in the padding are
    /// set to zero on the way (they do not contribute to `dInput` either way).
    /// - Parameters:
    ///   - dInput: The first of `channels` consecutive `[H, W]` planes, accumulated into.
    ///   - columns: `[channels·kh·kw, OH·OW]`.
    ///   - channels: How many planes to fold onto.
    ///   - geometry: The sizes.
    public static func col2im(
        dInput: UnsafeMutablePointer<Float>, columns: UnsafeMutablePointer<Float>, channels: Int, geometry: Convolution2DGeometry
    ) {
        // Legend: as in `im2col`.
        let (H, W, OH, OW) = (geometry.inputHeight, geometry.inputWidth, geometry.outputHeight, geometry.outputWidth)
        let (KH, KW) = (geometry.kernel.height, geometry.kernel.width)
        let (SH, SW, PH, PW, DH, DW) = (geometry.stride.height, geometry.stride.width, geometry.padding.height,
                                        geometry.padding.width, geometry.dilation.height, geometry.dilation.width)
        let contiguous = isContiguousTap(geometry)
        // Taps outermost, as in `im2col`.
        for i in 0..<KH {
            let rowOffset = i * DH - PH
            let rows = validOutputRange(outputs: OH, inputs: H, stride: SH, offset: rowOffset)
            for j in 0..<KW {
                let columnOffset = j * DW - PW
                let cols = validOutputRange(outputs: OW, inputs: W, stride: SW, offset: columnOffset)
                guard !rows.isEmpty, !cols.isEmpty else { continue }
                for c in 0..<channels {
                    let plane = dInput + c * H * W
                    let source = columns + ((c * KH + i) * KW + j) * OH * OW
                    if contiguous {
                        // Zero the padding entries, then one vector add over the whole tap: the zeros
                        // land on neighbouring row ends and change nothing.
                        zeroColumns(source, rows: rows, outside: cols, width: OW)
                        let first = rows.lowerBound * OW + cols.lowerBound
                        let span = (rows.upperBound - 1) * OW + cols.upperBound - first
                        add(plane + (rows.lowerBound * SH + rowOffset) * W + columnOffset + cols.lowerBound,
                            UnsafePointer(source + first), count: span)
                        continue
                    }
                    for oh in rows {
                        let column = source + oh * OW
                        let target = plane + (oh * SH + rowOffset) * W + columnOffset
                        if SW == 1 {
                            for ow in cols { target[ow] += column[ow] }
                        } else {
                            for ow in cols { target[ow * SW] += column[ow] }
                        }
                    }
                }
            }
        }
    }

    /// Whether each im2col row maps onto one contiguous run of its input plane: stride 1 across and
    /// one output row per input row (`stride.height · W == OW`, as with "same" padding).
    static func isContiguousTap(_ geometry: Convolution2DGeometry) -> Bool {
        geometry.stride.width == 1 && geometry.stride.height * geometry.inputWidth == geometry.outputWidth
    }

    /// Zeroes the entries of `rows` of a `[_, width]` matrix whose column lies outside `columns`.
    ///
    /// Column-major order on purpose: the borders are one or two entries per row, and a row-wise
    /// loop would become a `memset` call per row.
    @inline(__always)
    static func zeroColumns(_ matrix: UnsafeMutablePointer<Float>, rows: Range<Int>, outside columns: Range<Int>, width: Int) {
        for column in 0..<columns.lowerBound {
            for row in rows { matrix[row * width + column] = 0 }
        }
        for column in columns.upperBound..<width {
            for row in rows { matrix[row * width + column] = 0 }
        }
    }

    /// target[k] += source[k] for k in 0..<count, on non-overlapping buffers.
    @inline(__always)
    static func add(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        let t = UnsafeMutableBufferPointer(start: target, count: count)
        let s = UnsafeBufferPointer(start: source, count: count)
        for k in 0..<count { t[k] += s[k] }
    }

    /// The reference path: per image and group, unfold then `Gemm.multiply`.
    public static func forwardIm2col(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, geometry g: Convolution2DGeometry, scratch: UnsafeMutablePointer<Float>
    ) {
        // Legend: N batch, C/O input/output channels per group, K rows of the column matrix, P output positions.
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let K = C * g.kernel.height * g.kernel.width
        let P = g.outputHeight * g.outputWidth
        let planeIn = g.inputHeight * g.inputWidth
        for n in 0..<N {
            for group in 0..<G {
                im2col(columns: scratch, input: input + (n * g.inputChannels + group * C) * planeIn, channels: C, geometry: g)
                let out = output + (n * g.outputChannels + group * O) * P
                fillBias(out, bias: bias.map { $0 + group * O }, channels: O, positions: P)
                Gemm.multiply(.none, .none, m: O, n: P, k: K, a: weight + group * O * K, b: scratch,
                              beta: bias == nil ? 0 : 1, c: out)
            }
        }
    }

    /// Reference backward-data: per image and group, columns = Wᵀ·dOutput, then `col2im`.
    public static func backwardDataIm2col(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry, scratch: UnsafeMutablePointer<Float>
    ) {
        // Legend: as in `forwardIm2col`.
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let K = C * g.kernel.height * g.kernel.width
        let P = g.outputHeight * g.outputWidth
        let planeIn = g.inputHeight * g.inputWidth
        for n in 0..<N {
            for group in 0..<G {
                Gemm.multiply(.transposed, .none, m: K, n: P, k: O, a: weight + group * O * K,
                              b: dOutput + (n * g.outputChannels + group * O) * P, beta: 0, c: scratch)
                col2im(dInput: dInput + (n * g.inputChannels + group * C) * planeIn, columns: scratch, channels: C, geometry: g)
            }
        }
    }

    /// Reference backward-weights: per image and group, unfold then dW += dOutput·columnsᵀ.
    public static func backwardWeightsIm2col(
        dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry, scratch: UnsafeMutablePointer<Float>
    ) {
        // Legend: as in `forwardIm2col`.
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let K = C * g.kernel.height * g.kernel.width
        let P = g.outputHeight * g.outputWidth
        let planeIn = g.inputHeight * g.inputWidth
        for n in 0..<N {
            for group in 0..<G {
                im2col(columns: scratch, input: input + (n * g.inputChannels + group * C) * planeIn, channels: C, geometry: g)
                Gemm.multiply(.none, .transposed, m: O, n: K, k: P,
                              a: dOutput + (n * g.outputChannels + group * O) * P, b: scratch,
                              beta: 1, c: dWeight + group * O * K)
            }
        }
    }

    // MARK: - Pointwise path (1×1, stride 1, no padding)

    /// 1×1 forward: per image and group, output = W·input, with no unfolding.
    public static func forwardPointwise(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, geometry g: Convolution2DGeometry
    ) {
        precondition(g.isPointwise, "pointwise path needs a 1x1 kernel, stride 1 and no padding")
        // Legend: N batch, C/O input/output channels per group, P positions (H·W = OH·OW).
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let P = g.inputHeight * g.inputWidth
        for n in 0..<N {
            for group in 0..<G {
                let out = output + (n * g.outputChannels + group * O) * P
                fillBias(out, bias: bias.map { $0 + group * O }, channels: O, positions: P)
                Gemm.multiply(.none, .none, m: O, n: P, k: C, a: weight + group * O * C,
                              b: input + (n * g.inputChannels + group * C) * P, beta: bias == nil ? 0 : 1, c: out)
            }
        }
    }

    /// 1×1 backward-data: dInput += Wᵀ·dOutput.
    public static func backwardDataPointwise(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry
    ) {
        precondition(g.isPointwise, "pointwise path needs a 1x1 kernel, stride 1 and no padding")
        // Legend: as in `forwardPointwise`.
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let P = g.inputHeight * g.inputWidth
        for n in 0..<N {
            for group in 0..<G {
                Gemm.multiply(.transposed, .none, m: C, n: P, k: O, a: weight + group * O * C,
                              b: dOutput + (n * g.outputChannels + group * O) * P,
                              beta: 1, c: dInput + (n * g.inputChannels + group * C) * P)
            }
        }
    }

    /// 1×1 backward-weights: dW += dOutput·inputᵀ.
    public static func backwardWeightsPointwise(
        dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry
    ) {
        precondition(g.isPointwise, "pointwise path needs a 1x1 kernel, stride 1 and no padding")
        // Legend: as in `forwardPointwise`.
        let (N, G) = (g.batch, g.groups)
        let (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        let P = g.inputHeight * g.inputWidth
        for n in 0..<N {
            for group in 0..<G {
                Gemm.multiply(.none, .transposed, m: O, n: C, k: P,
                              a: dOutput + (n * g.outputChannels + group * O) * P,
                              b: input + (n * g.inputChannels + group * C) * P,
                              beta: 1, c: dWeight + group * O * C)
            }
        }
    }

    // MARK: - Depthwise path (groups == input channels)

    /// Depthwise forward with direct loops: output channel o reads input channel o / multiplier.
    public static func forwardDepthwise(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, geometry g: Convolution2DGeometry
    ) {
        precondition(g.isDepthwise, "depthwise path needs groups == input channels > 1")
        // Legend: M channel multiplier; H, W / OH, OW planes; KH, KW kernel; S stride; P padding; D dilation.
        let M = g.outputChannels / g.inputChannels
        let (H, W, OH, OW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth)
        let (KH, KW) = (g.kernel.height, g.kernel.width)
        let (SH, SW, PH, PW, DH, DW) = (g.stride.height, g.stride.width, g.padding.height,
                                        g.padding.width, g.dilation.height, g.dilation.width)
        for n in 0..<g.batch {
            for o in 0..<g.outputChannels {
                let plane = input + (n * g.inputChannels + o / M) * H * W
                let out = output + (n * g.outputChannels + o) * OH * OW
                out.update(repeating: bias?[o] ?? 0, count: OH * OW)
                for i in 0..<KH {
                    let rowOffset = i * DH - PH
                    let rows = validOutputRange(outputs: OH, inputs: H, stride: SH, offset: rowOffset)
                    for j in 0..<KW {
                        let w = weight[(o * KH + i) * KW + j]
                        let columnOffset = j * DW - PW
                        let cols = validOutputRange(outputs: OW, inputs: W, stride: SW, offset: columnOffset)
                        for oh in rows {
                            let source = plane + (oh * SH + rowOffset) * W + columnOffset
                            let target = out + oh * OW
                            for ow in cols { target[ow] += w * source[ow * SW] }
                        }
                    }
                }
            }
        }
    }

    /// Depthwise backward-data with direct loops: dInput += Σ w · dOutput over the taps that read each input.
    public static func backwardDataDepthwise(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry
    ) {
        precondition(g.isDepthwise, "depthwise path needs groups == input channels > 1")
        // Legend: as in `forwardDepthwise`.
        let M = g.outputChannels / g.inputChannels
        let (H, W, OH, OW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth)
        let (KH, KW) = (g.kernel.height, g.kernel.width)
        let (SH, SW, PH, PW, DH, DW) = (g.stride.height, g.stride.width, g.padding.height,
                                        g.padding.width, g.dilation.height, g.dilation.width)
        for n in 0..<g.batch {
            for o in 0..<g.outputChannels {
                let plane = dInput + (n * g.inputChannels + o / M) * H * W
                let dOut = dOutput + (n * g.outputChannels + o) * OH * OW
                for i in 0..<KH {
                    let rowOffset = i * DH - PH
                    let rows = validOutputRange(outputs: OH, inputs: H, stride: SH, offset: rowOffset)
                    for j in 0..<KW {
                        let w = weight[(o * KH + i) * KW + j]
                        let columnOffset = j * DW - PW
                        let cols = validOutputRange(outputs: OW, inputs: W, stride: SW, offset: columnOffset)
                        for oh in rows {
                            let target = plane + (oh * SH + rowOffset) * W + columnOffset
                            let source = dOut + oh * OW
                            for ow in cols { target[ow * SW] += w * source[ow] }
                        }
                    }
                }
            }
        }
    }

    /// Depthwise backward-weights with direct loops: dW[o, i, j] += Σ dOutput · input under tap (i, j).
    public static func backwardWeightsDepthwise(
        dWeight: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
        geometry g: Convolution2DGeometry
    ) {
        precondition(g.isDepthwise, "depthwise path needs groups == input channels > 1")
        // Legend: as in `forwardDepthwise`.
        let M = g.outputChannels / g.inputChannels
        let (H, W, OH, OW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth)
        let (KH, KW) = (g.kernel.height, g.kernel.width)
        let (SH, SW, PH, PW, DH, DW) = (g.stride.height, g.stride.width, g.padding.height,
                                        g.padding.width, g.dilation.height, g.dilation.width)
        for n in 0..<g.batch {
            for o in 0..<g.outputChannels {
                let plane = input + (n * g.inputChannels + o / M) * H * W
                let dOut = dOutput + (n * g.outputChannels + o) * OH * OW
                for i in 0..<KH {
                    let rowOffset = i * DH - PH
                    let rows = validOutputRange(outputs: OH, inputs: H, stride: SH, offset: rowOffset)
                    for j in 0..<KW {
                        let columnOffset = j * DW - PW
                        let cols = validOutputRange(outputs: OW, inputs: W, stride: SW, offset: columnOffset)
                        var sum: Float = 0
                        for oh in rows {
                            let source = plane + (oh * SH + rowOffset) * W + columnOffset
                            let gradient = dOut + oh * OW
                            for ow in cols { sum += gradient[ow] * source[ow * SW] }
                        }
                        dWeight[(o * KH + i) * KW + j] += sum
                    }
                }
            }
        }
    }

    // MARK: - Shared pieces

    /// dBias[o] += Σ over images and positions of dOutput[n, o].
    public static func backwardBias(dBias: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, geometry g: Convolution2DGeometry) {
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

    /// Writes each channel's bias over its plane (so a GEMM can accumulate onto it).
    static func fillBias(_ out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, channels: Int, positions: Int) {
        guard let bias else { return }
        for c in 0..<channels { (out + c * positions).update(repeating: bias[c], count: positions) }
    }

    /// The output indices `o` in `0..<outputs` whose input index `o·stride + offset` lies in `0..<inputs`.
    static func validOutputRange(outputs: Int, inputs: Int, stride: Int, offset: Int) -> Range<Int> {
        let lower = min(outputs, max(0, ceilDivide(-offset, stride)))
        let upper = min(outputs, max(lower, ceilDivide(inputs - offset, stride)))
        return lower..<upper
    }

    /// ⌈a / b⌉ for b > 0 and any sign of a.
    static func ceilDivide(_ a: Int, _ b: Int) -> Int {
        a >= 0 ? (a + b - 1) / b : -((-a) / b)
    }
}
