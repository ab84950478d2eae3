// DepthwiseConvolution: the `.depthwise` convolution path, groups == input channels > 1, each output
// channel reading one input channel (channel multiplier = outputs / inputs). Direct loops: GEMMs of
// one row would be wasteful (Note: accumulation, in ConvolutionPath.swift).
//
// Note: the depthwise tap loop. All three passes walk the same (image, output channel, kernel tap,
// valid output row) nest, `forEachTapRow`; they differ only in what they do along one row.

/// A depthwise convolution with direct loops.
public struct DepthwiseConvolution: ConvolutionKernel {
    /// The sizes; always depthwise.
    public let geometry: Convolution2DGeometry

    /// The depthwise path for `geometry`, or nil unless groups == input channels > 1.
    public init?(geometry: Convolution2DGeometry) {
        guard geometry.isDepthwise else { return nil }
        self.geometry = geometry
    }

    /// One valid row of one kernel tap: where it starts in the input and output planes.
    struct TapRow {
        /// Index into the weight of the tap: (o·kh + i)·kw + j.
        let weight: Int
        /// Index into the input (or its gradient) of the row's element read by output column 0.
        let input: Int
        /// Index into the output (or its gradient) of the row's output column 0.
        let output: Int
        /// The output columns whose input lies inside the input plane.
        let columns: Range<Int>
    }

    /// The depthwise tap loop (Note: the depthwise tap loop): for every image, output channel o (reading
    /// input channel o / multiplier), kernel tap and valid output row, calls `row`; `tapDone` after each
    /// tap's last row, with the tap's weight index.
    @inline(__always)
    func forEachTapRow(_ row: (TapRow) -> Void, tapDone: (_ weight: Int) -> Void = { _ in }) {
        // Legend: M channel multiplier; OW output width; KH, KW kernel.
        let g = geometry
        let M = g.outputChannels / g.inputChannels
        let (OW, KH, KW) = (g.outputWidth, g.kernel.height, g.kernel.width)
        let (planeIn, planeOut) = (g.inputHeight * g.inputWidth, g.outputHeight * OW)
        for n in 0..<g.batch {
            for o in 0..<g.outputChannels {
                let input = (n * g.inputChannels + o / M) * planeIn
                let output = (n * g.outputChannels + o) * planeOut
                g.forEachKernelTap { tap in
                    let weight = (o * KH + tap.row) * KW + tap.column
                    for oh in tap.rows {
                        row(TapRow(weight: weight, input: input + tap.inputOffset(row: oh), output: output + oh * OW, columns: tap.columns))
                    }
                    tapDone(weight)
                }
            }
        }
    }

    /// output[o] = bias[o] + Σ over taps of w · input under the tap.
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?) {
        let (planeOut, SW) = (geometry.outputHeight * geometry.outputWidth, geometry.stride.width)
        for n in 0..<geometry.batch {
            for o in 0..<geometry.outputChannels {
                (output + (n * geometry.outputChannels + o) * planeOut).update(repeating: bias?[o] ?? 0, count: planeOut)
            }
        }
        forEachTapRow { row in
            let (w, source, target) = (weight[row.weight], input + row.input, output + row.output)
            for ow in row.columns { target[ow] += w * source[ow * SW] }
        }
    }

    /// dInput += Σ w · dOutput over the taps that read each input.
    public func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        let SW = geometry.stride.width
        forEachTapRow { row in
            let (w, target, source) = (weight[row.weight], dInput + row.input, dOutput + row.output)
            for ow in row.columns { target[ow * SW] += w * source[ow] }
        }
    }

    /// dW[o, i, j] += Σ dOutput · input under tap (i, j) (one sum per tap, then added), and dBias += Σ dOutput.
    public func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                                dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>) {
        let SW = geometry.stride.width
        var sum: Float = 0
        forEachTapRow({ row in
            let (source, gradient) = (input + row.input, dOutput + row.output)
            for ow in row.columns { sum += gradient[ow] * source[ow * SW] }
        }, tapDone: { weight in
            dWeight[weight] += sum
            sum = 0
        })
        if let dBias { ConvolutionBias.backward(dBias: dBias, dOutput: dOutput, geometry: geometry) }
    }
}
