// Im2colConvolution: the `.im2col` convolution path, the general reference one. Each image's group
// is unfolded into a column matrix in a scratch tensor and multiplied with `Gemm.multiply`. With
// stride 1 across and one output row per input row ("same" padding), each kernel tap's rows are one
// contiguous run of the input plane, so im2col copies and col2im adds one run per tap instead of row
// by row (Note: accumulation, in ConvolutionPath.swift; Note: kernel taps, in ConvolutionGeometry.swift).

/// A convolution of any geometry through im2col and GEMM.
public struct Im2colConvolution: ConvolutionKernel {
    /// The sizes.
    public let geometry: Convolution2DGeometry
    /// Where one group's column matrix is unfolded; resized by every pass (it only grows).
    let scratch: Tensor

    /// The im2col path for `geometry`, unfolding into `scratch` (which may be shared with other geometries).
    public init(geometry: Convolution2DGeometry, scratch: Tensor) {
        self.geometry = geometry
        self.scratch = scratch
    }

    /// Elements of one group's column matrix: (inputChannels / groups)·kh·kw × OH·OW.
    public var scratchCount: Int { GroupBlocks(geometry).K * GroupBlocks(geometry).P }

    /// The scratch, sized for one group's column matrix.
    func columns() -> UnsafeMutablePointer<Float> {
        scratch.resize(to: [scratchCount])
        return scratch.data
    }

    /// Per image and group: unfold, then output = W·columns (+ bias).
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?) {
        // Legend: GroupBlocks' (C/O channels per group, K column-matrix rows, P output positions).
        let (g, b, columns) = (geometry, GroupBlocks(geometry), columns())
        for n in 0..<g.batch {
            for group in 0..<g.groups {
                Self.im2col(columns: columns, input: input + b.input(n, group), channels: b.C, geometry: g)
                let out = output + b.output(n, group)
                ConvolutionBias.fill(out, bias: bias.map { $0 + group * b.O }, channels: b.O, positions: b.P)
                Gemm.multiply(.none, .none, m: b.O, n: b.P, k: b.K, a: weight + b.weight(group), b: columns,
                              beta: bias == nil ? 0 : 1, c: out)
            }
        }
    }

    /// Per image and group: columns = Wᵀ·dOutput, then `col2im`.
    public func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        let (g, b, columns) = (geometry, GroupBlocks(geometry), columns())
        for n in 0..<g.batch {
            for group in 0..<g.groups {
                Gemm.multiply(.transposed, .none, m: b.K, n: b.P, k: b.O, a: weight + b.weight(group),
                              b: dOutput + b.output(n, group), beta: 0, c: columns)
                Self.col2im(dInput: dInput + b.input(n, group), columns: columns, channels: b.C, geometry: g)
            }
        }
    }

    /// Per image and group: unfold, then dW += dOutput·columnsᵀ; and dBias += Σ dOutput.
    public func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                                dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>) {
        let (g, b, columns) = (geometry, GroupBlocks(geometry), columns())
        for n in 0..<g.batch {
            for group in 0..<g.groups {
                Self.im2col(columns: columns, input: input + b.input(n, group), channels: b.C, geometry: g)
                Gemm.multiply(.none, .transposed, m: b.O, n: b.K, k: b.P, a: dOutput + b.output(n, group), b: columns,
                              beta: 1, c: dWeight + b.weight(group))
            }
        }
        if let dBias { ConvolutionBias.backward(dBias: dBias, dOutput: dOutput, geometry: g) }
    }

    /// Both backward passes in one sweep: each image's output gradient is read from memory once and
    /// feeds both GEMMs (and the bias sum) while it is in cache; for a wide early layer the batch's
    /// output gradient is megabytes. Same sums in the same order as `backwardWeights` then `backwardData`.
    public func backward(dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                         dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        let (g, b, columns) = (geometry, GroupBlocks(geometry), columns())
        var image = g
        image.batch = 1
        for n in 0..<g.batch {
            for group in 0..<g.groups {
                let dOut = dOutput + b.output(n, group)
                Self.im2col(columns: columns, input: input + b.input(n, group), channels: b.C, geometry: g)
                Gemm.multiply(.none, .transposed, m: b.O, n: b.K, k: b.P, a: dOut, b: columns, beta: 1, c: dWeight + b.weight(group))
                guard let dInput else { continue }
                Gemm.multiply(.transposed, .none, m: b.K, n: b.P, k: b.O, a: weight + b.weight(group), b: dOut, beta: 0, c: columns)
                Self.col2im(dInput: dInput + b.input(n, group), columns: columns, channels: b.C, geometry: g)
            }
            if let dBias { ConvolutionBias.backward(dBias: dBias, dOutput: dOutput + b.output(n, 0), geometry: image) }
        }
    }

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
        // Legend: OH, OW output plane; SW stride across.
        let (OH, OW, SW) = (geometry.outputHeight, geometry.outputWidth, geometry.stride.width)
        let contiguous = isContiguousTap(geometry)
        forEachChannelTap(channels: channels, geometry: geometry) { tap, planeOffset, rowOffset in
            let (rows, cols) = (tap.rows, tap.columns)
            let (plane, destination) = (input + planeOffset, columns + rowOffset)
            destination.update(repeating: 0, count: rows.lowerBound * OW)
            destination.advanced(by: rows.upperBound * OW).update(repeating: 0, count: (OH - rows.upperBound) * OW)
            guard !rows.isEmpty, !cols.isEmpty else {
                destination.advanced(by: rows.lowerBound * OW).update(repeating: 0, count: rows.count * OW)
                return
            }
            if contiguous {
                // One copy for the whole tap, then zero the padding columns it overwrote.
                let run = tap.contiguousRun(outputWidth: OW)
                (destination + run.output).update(from: plane + run.input, count: run.count)
                zeroColumns(destination, rows: rows, outside: cols, width: OW)
                return
            }
            for oh in rows {
                let out = destination + oh * OW
                let source = plane + tap.inputOffset(row: oh)
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
        let (OW, SW) = (geometry.outputWidth, geometry.stride.width)
        let contiguous = isContiguousTap(geometry)
        forEachChannelTap(channels: channels, geometry: geometry) { tap, planeOffset, rowOffset in
            let (rows, cols) = (tap.rows, tap.columns)
            guard !rows.isEmpty, !cols.isEmpty else { return }
            let (plane, source) = (dInput + planeOffset, columns + rowOffset)
            if contiguous {
                // Zero the padding entries, then one vector add over the whole tap: the zeros
                // land on neighbouring row ends and change nothing.
                zeroColumns(source, rows: rows, outside: cols, width: OW)
                let run = tap.contiguousRun(outputWidth: OW)
                add(plane + run.input, UnsafePointer(source + run.output), count: run.count)
                return
            }
            for oh in rows {
                let column = source + oh * OW
                let target = plane + tap.inputOffset(row: oh)
                if SW == 1 {
                    for ow in cols { target[ow] += column[ow] }
                } else {
                    for ow in cols { target[ow * SW] += column[ow] }
                }
            }
        }
    }

    /// The loop nest im2col and col2im share: taps outermost (their valid ranges, two divisions each,
    /// are the same for every channel), then channels, with the offsets of channel c's input plane and
    /// of row (c·kh + i)·kw + j of the column matrix.
    @inline(__always)
    static func forEachChannelTap(channels: Int, geometry g: Convolution2DGeometry,
                                  _ body: (_ tap: KernelTap, _ planeOffset: Int, _ rowOffset: Int) -> Void) {
        // Legend: KH, KW kernel.
        let (KH, KW) = (g.kernel.height, g.kernel.width)
        g.forEachKernelTap { tap in
            for c in 0..<channels {
                body(tap, c * g.inputHeight * g.inputWidth, ((c * KH + tap.row) * KW + tap.column) * g.outputHeight * g.outputWidth)
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
}
