// Pooling: max, average, adaptive-average and global-average pooling on NCHW tensors, with
// PyTorch's semantics (floor output size, zero-padding counted in the average, first maximum wins
// ties, adaptive windows from ⌊o·I/O⌋ to ⌈(o+1)·I/O⌉).
//
// Backward kernels accumulate (`+=`) into dInput, as in llm.c; callers zero it first.

/// The sizes that define one 2-D pooling on one batch.
public struct Pooling2DGeometry: Sendable, Equatable {
    /// Images in the batch.
    public var batch: Int
    /// Channels (pooling is per channel).
    public var channels: Int
    /// Input height.
    public var inputHeight: Int
    /// Input width.
    public var inputWidth: Int
    /// Window extent.
    public var kernel: Size2D
    /// Step between neighbouring windows.
    public var stride: Size2D
    /// Implicit padding on each side (−∞ for max pooling, 0 for average pooling).
    public var padding: Size2D

    /// Creates a geometry.
    public init(batch: Int, channels: Int, inputHeight: Int, inputWidth: Int, kernel: Size2D, stride: Size2D, padding: Size2D = 0) {
        self.batch = batch
        self.channels = channels
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    /// Output height: ⌊(H + 2·padding − kernel) / stride⌋ + 1 (PyTorch's `ceil_mode=False`).
    public var outputHeight: Int { Convolution2DGeometry.outputExtent(inputHeight, kernel.height, stride.height, padding.height, 1) }
    /// Output width, by the same formula.
    public var outputWidth: Int { Convolution2DGeometry.outputExtent(inputWidth, kernel.width, stride.width, padding.width, 1) }
    /// Elements of the output tensor.
    public var outputCount: Int { batch * channels * outputHeight * outputWidth }
}

/// Pooling kernels on NCHW row-major tensors.
public enum Pooling2D {
    /// Max pooling. Padding behaves as −∞; the first maximum in row-major window order wins ties,
    /// and a NaN in a window propagates, as in PyTorch.
    /// - Parameters:
    ///   - output: `[N, C, OH, OW]`, overwritten.
    ///   - indices: `[N, C, OH, OW]` positions `h·W + w` of each maximum within its input plane
    ///     (PyTorch's `return_indices` convention), or nil when backward will not run.
    ///   - input: `[N, C, H, W]`.
    ///   - geometry: The sizes; padding must be at most half the kernel so no window is all padding.
    public static func maxForward(
        output: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>?, input: UnsafePointer<Float>,
        geometry g: Pooling2DGeometry
    ) {
        // Legend: H, W input plane; OH, OW output plane.
        let (H, W, OH, OW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth)
        for plane in 0..<(g.batch * g.channels) {
            let x = input + plane * H * W
            let y = output + plane * OH * OW
            let index = indices.map { $0 + plane * OH * OW }
            for oh in 0..<OH {
                let rows = window(oh, stride: g.stride.height, padding: g.padding.height, kernel: g.kernel.height, extent: H)
                for ow in 0..<OW {
                    let cols = window(ow, stride: g.stride.width, padding: g.padding.width, kernel: g.kernel.width, extent: W)
                    var best = -Float.infinity
                    var bestIndex = rows.lowerBound * W + cols.lowerBound
                    for h in rows {
                        for w in cols {
                            let value = x[h * W + w]
                            if value > best || value.isNaN {
                                best = value
                                bestIndex = h * W + w
                                if value.isNaN { break }
                            }
                        }
                        if best.isNaN { break }
                    }
                    y[oh * OW + ow] = best
                    index?[oh * OW + ow] = Int32(bestIndex)
                }
            }
        }
    }

    /// Max-pooling backward: routes each output gradient to its window's maximum (`+=`).
    /// - Parameters:
    ///   - dInput: `[N, C, H, W]`, accumulated into.
    ///   - dOutput: `[N, C, OH, OW]`.
    ///   - indices: The indices written by `maxForward`.
    ///   - geometry: The sizes.
    public static func maxBackward(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, indices: UnsafePointer<Int32>,
        geometry g: Pooling2DGeometry
    ) {
        // Legend: P input positions per plane, Q output positions per plane.
        let P = g.inputHeight * g.inputWidth
        let Q = g.outputHeight * g.outputWidth
        for plane in 0..<(g.batch * g.channels) {
            let dx = dInput + plane * P
            let dy = dOutput + plane * Q
            let index = indices + plane * Q
            for q in 0..<Q { dx[Int(index[q])] += dy[q] }
        }
    }

    /// Average pooling with zero padding counted in the divisor (PyTorch's default `count_include_pad=True`).
    ///
    /// With floor-mode output sizes every window lies inside the padded input, so the divisor is
    /// always the full kernel area.
    /// - Parameters:
    ///   - output: `[N, C, OH, OW]`, overwritten.
    ///   - input: `[N, C, H, W]`.
    ///   - geometry: The sizes.
    public static func averageForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, geometry g: Pooling2DGeometry) {
        // Legend: H, W input plane; OH, OW output plane.
        let (H, W, OH, OW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth)
        let scale = 1 / Float(g.kernel.height * g.kernel.width)
        for plane in 0..<(g.batch * g.channels) {
            let x = input + plane * H * W
            let y = output + plane * OH * OW
            for oh in 0..<OH {
                let rows = window(oh, stride: g.stride.height, padding: g.padding.height, kernel: g.kernel.height, extent: H)
                for ow in 0..<OW {
                    let cols = window(ow, stride: g.stride.width, padding: g.padding.width, kernel: g.kernel.width, extent: W)
                    var sum: Float = 0
                    for h in rows {
                        for w in cols { sum += x[h * W + w] }
                    }
                    y[oh * OW + ow] = sum * scale
                }
            }
        }
    }

    /// Average-pooling backward: spreads each output gradient evenly over its window (`+=`).
    /// - Parameters:
    ///   - dInput: `[N, C, H, W]`, accumulated into.
    ///   - dOutput: `[N, C, OH, OW]`.
    ///   - geometry: The sizes.
    public static func averageBackward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, geometry g: Pooling2DGeometry) {
        // Legend: as in `averageForward`.
        let (H, W, OH, OW) = (g.inputHeight, g.inputWidth, g.outputHeight, g.outputWidth)
        let scale = 1 / Float(g.kernel.height * g.kernel.width)
        for plane in 0..<(g.batch * g.channels) {
            let dx = dInput + plane * H * W
            let dy = dOutput + plane * OH * OW
            for oh in 0..<OH {
                let rows = window(oh, stride: g.stride.height, padding: g.padding.height, kernel: g.kernel.height, extent: H)
                for ow in 0..<OW {
                    let cols = window(ow, stride: g.stride.width, padding: g.padding.width, kernel: g.kernel.width, extent: W)
                    let share = dy[oh * OW + ow] * scale
                    for h in rows {
                        for w in cols { dx[h * W + w] += share }
                    }
                }
            }
        }
    }

    /// Global average pooling: the mean of each plane.
    /// - Parameters:
    ///   - output: `planes` values (`[N, C]` for an `[N, C, H, W]` input), overwritten.
    ///   - input: `planes` consecutive planes of `planeSize` values.
    ///   - planes: N·C.
    ///   - planeSize: H·W.
    public static func globalAverageForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, planes: Int, planeSize: Int) {
        let scale = 1 / Float(max(planeSize, 1))
        for plane in 0..<planes {
            let x = input + plane * planeSize
            var sum: Float = 0
            for i in 0..<planeSize { sum += x[i] }
            output[plane] = sum * scale
        }
    }

    /// Global average pooling backward: dInput += dOutput / planeSize over each plane.
    /// - Parameters:
    ///   - dInput: `planes` planes of `planeSize` values, accumulated into.
    ///   - dOutput: `planes` values.
    ///   - planes: N·C.
    ///   - planeSize: H·W.
    public static func globalAverageBackward(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, planes: Int, planeSize: Int) {
        let scale = 1 / Float(max(planeSize, 1))
        for plane in 0..<planes {
            let dx = dInput + plane * planeSize
            let share = dOutput[plane] * scale
            for i in 0..<planeSize { dx[i] += share }
        }
    }

    /// Adaptive average pooling (PyTorch's `adaptive_avg_pool2d`): output position `o` along an axis
    /// of input extent `I` and output extent `O` averages input positions ⌊o·I/O⌋ ..< ⌈(o+1)·I/O⌉.
    ///
    /// Windows may overlap or repeat: a 1×1 input pooled to 7×7 is copied to all 49 positions.
    /// - Parameters:
    ///   - output: `planes` planes of `outputSize`, overwritten.
    ///   - input: `planes` planes of `inputSize`.
    ///   - planes: N·C.
    ///   - inputSize: (H, W), each ≥ 1.
    ///   - outputSize: (OH, OW), each ≥ 1.
    public static func adaptiveAverageForward(
        output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, planes: Int, inputSize: Size2D, outputSize: Size2D
    ) {
        // Legend: H, W input plane; OH, OW output plane.
        let (H, W) = (inputSize.height, inputSize.width)
        forEachAdaptiveWindow(planes: planes, inputSize: inputSize, outputSize: outputSize) { plane, index, rows, cols in
            let x = input + plane * H * W
            var sum: Float = 0
            for h in rows {
                for w in cols { sum += x[h * W + w] }
            }
            output[index] = sum / Float(rows.count * cols.count)
        }
    }

    /// Adaptive average pooling backward: spreads each output gradient evenly over its window (`+=`).
    /// - Parameters:
    ///   - dInput: `planes` planes of `inputSize`, accumulated into.
    ///   - dOutput: `planes` planes of `outputSize`.
    ///   - planes: N·C.
    ///   - inputSize: (H, W).
    ///   - outputSize: (OH, OW).
    public static func adaptiveAverageBackward(
        dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, planes: Int, inputSize: Size2D, outputSize: Size2D
    ) {
        // Legend: as in `adaptiveAverageForward`.
        let (H, W) = (inputSize.height, inputSize.width)
        forEachAdaptiveWindow(planes: planes, inputSize: inputSize, outputSize: outputSize) { plane, index, rows, cols in
            let dx = dInput + plane * H * W
            let share = dOutput[index] / Float(rows.count * cols.count)
            for h in rows {
                for w in cols { dx[h * W + w] += share }
            }
        }
    }

    /// Calls `body` for every output position of adaptive pooling: its plane, its index among all
    /// outputs (plane-major), and its window's input rows and columns (PyTorch's formula).
    static func forEachAdaptiveWindow(planes: Int, inputSize: Size2D, outputSize: Size2D,
                                      _ body: (_ plane: Int, _ index: Int, _ rows: Range<Int>, _ cols: Range<Int>) -> Void) {
        // Legend: H, W input plane; OH, OW output plane.
        let (H, W, OH, OW) = (inputSize.height, inputSize.width, outputSize.height, outputSize.width)
        for plane in 0..<planes {
            for oh in 0..<OH {
                let rows = adaptiveWindow(oh, input: H, output: OH)
                for ow in 0..<OW { body(plane, (plane * OH + oh) * OW + ow, rows, adaptiveWindow(ow, input: W, output: OW)) }
            }
        }
    }

    /// The input positions adaptive pooling averages for output position `o`: ⌊o·I/O⌋ ..< ⌈(o+1)·I/O⌉.
    @inline(__always)
    public static func adaptiveWindow(_ o: Int, input: Int, output: Int) -> Range<Int> {
        (o * input / output)..<(((o + 1) * input + output - 1) / output)
    }

    /// The input indices covered by output position `o`, clipped to the unpadded input.
    @inline(__always)
    static func window(_ o: Int, stride: Int, padding: Int, kernel: Int, extent: Int) -> Range<Int> {
        let start = o * stride - padding
        return max(start, 0)..<min(start + kernel, extent)
    }
}
