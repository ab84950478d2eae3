// ConvolutionGeometry: the sizes of one 2-D convolution on NCHW tensors (PyTorch's semantics:
// cross-correlation, symmetric zero padding, stride, dilation, groups), and the kernel-tap walk
// every direct path shares (im2col's unfold and fold, the depthwise loops).
//
// Note: kernel taps. Tap (i, j) of the kernel reads input row oh·stride.height + i·dilation.height −
// padding.height for output row oh (likewise across). `KernelTap.rows` and `.columns` are the output
// positions whose input under the tap lies inside the unpadded input; all others read padding (zero).

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

/// One kernel tap (i, j) of a geometry and the output positions it reads real input for (Note: kernel taps).
struct KernelTap {
    /// The tap's kernel row, i.
    let row: Int
    /// The tap's kernel column, j.
    let column: Int
    /// Input row read for output row 0: i·dilation − padding (the input row of output row oh is oh·stride + rowOffset).
    let rowOffset: Int
    /// Input column read for output column 0, likewise.
    let columnOffset: Int
    /// Output rows whose input row lies inside the input.
    let rows: Range<Int>
    /// Output columns whose input column lies inside the input.
    let columns: Range<Int>
    /// The geometry's vertical stride and input width, for `inputOffset(row:)`.
    let strideHeight, inputWidth: Int

    /// Offset in an input plane of what output position (oh, 0) reads under the tap (before the column
    /// stride; valid to dereference only at the `columns`).
    @inline(__always)
    func inputOffset(row oh: Int) -> Int { (oh * strideHeight + rowOffset) * inputWidth + columnOffset }

    /// The tap's valid positions as one run, for geometries where output rows map onto consecutive
    /// input rows with stride 1 across (`Im2colConvolution.isContiguousTap`): the first valid output
    /// index in a `[OH, OW]` plane, the input offset it reads, and the run's length.
    func contiguousRun(outputWidth OW: Int) -> (output: Int, input: Int, count: Int) {
        let first = rows.lowerBound * OW + columns.lowerBound
        return (first, inputOffset(row: rows.lowerBound) + columns.lowerBound, (rows.upperBound - 1) * OW + columns.upperBound - first)
    }
}

extension Convolution2DGeometry {
    /// Calls `body` for every kernel tap, kernel rows outermost, with its valid output ranges.
    @inline(__always)
    func forEachKernelTap(_ body: (KernelTap) -> Void) {
        for i in 0..<kernel.height {
            let rowOffset = i * dilation.height - padding.height
            let rows = Self.validOutputRange(outputs: outputHeight, inputs: inputHeight, stride: stride.height, offset: rowOffset)
            for j in 0..<kernel.width {
                let columnOffset = j * dilation.width - padding.width
                let columns = Self.validOutputRange(outputs: outputWidth, inputs: inputWidth, stride: stride.width, offset: columnOffset)
                body(KernelTap(row: i, column: j, rowOffset: rowOffset, columnOffset: columnOffset, rows: rows, columns: columns,
                               strideHeight: stride.height, inputWidth: inputWidth))
            }
        }
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

/// Where one image's group starts in each operand, for the paths that run one GEMM per image and group.
///
/// Legend: C/O input/output channels per group, K rows of the column matrix (C·kh·kw; C for a 1×1
/// kernel), P output positions (OH·OW), plane input positions (H·W).
struct GroupBlocks {
    let C, O, K, P, plane: Int
    let inputChannels, outputChannels: Int

    init(_ g: Convolution2DGeometry) {
        (C, O) = (g.inputChannelsPerGroup, g.outputChannelsPerGroup)
        K = C * g.kernel.height * g.kernel.width
        P = g.outputHeight * g.outputWidth
        plane = g.inputHeight * g.inputWidth
        (inputChannels, outputChannels) = (g.inputChannels, g.outputChannels)
    }

    /// Offset of image n's group in the input (and its gradient).
    func input(_ n: Int, _ group: Int) -> Int { (n * inputChannels + group * C) * plane }
    /// Offset of image n's group in the output (and its gradient).
    func output(_ n: Int, _ group: Int) -> Int { (n * outputChannels + group * O) * P }
    /// Offset of a group's `[O, K]` block in the weight (and its gradient).
    func weight(_ group: Int) -> Int { group * O * K }
}
