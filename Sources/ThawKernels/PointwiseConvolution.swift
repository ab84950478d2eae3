// PointwiseConvolution: the `.pointwise` convolution path, 1×1 kernels with stride 1 and no padding.
// The input already is the column matrix, so each pass is one GEMM per image and group, with no
// unfolding (Note: accumulation, in ConvolutionPath.swift).

/// A 1×1, stride-1, unpadded convolution as plain GEMMs.
public struct PointwiseConvolution: ConvolutionKernel {
    /// The sizes; always pointwise.
    public let geometry: Convolution2DGeometry

    /// The pointwise path for `geometry`, or nil when it is not 1×1 with stride 1 and no padding.
    public init?(geometry: Convolution2DGeometry) {
        guard geometry.isPointwise else { return nil }
        self.geometry = geometry
    }

    /// Per image and group, output = W·input (+ bias).
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?) {
        // Legend: GroupBlocks' (C/O channels per group, P = H·W positions).
        let b = GroupBlocks(geometry)
        for n in 0..<geometry.batch {
            for group in 0..<geometry.groups {
                let out = output + b.output(n, group)
                ConvolutionBias.fill(out, bias: bias.map { $0 + group * b.O }, channels: b.O, positions: b.P)
                Gemm.multiply(.none, .none, m: b.O, n: b.P, k: b.C, a: weight + b.weight(group),
                              b: input + b.input(n, group), beta: bias == nil ? 0 : 1, c: out)
            }
        }
    }

    /// dInput += Wᵀ·dOutput.
    public func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        let b = GroupBlocks(geometry)
        for n in 0..<geometry.batch {
            for group in 0..<geometry.groups {
                Gemm.multiply(.transposed, .none, m: b.C, n: b.P, k: b.O, a: weight + b.weight(group),
                              b: dOutput + b.output(n, group), beta: 1, c: dInput + b.input(n, group))
            }
        }
    }

    /// dW += dOutput·inputᵀ, and dBias += Σ dOutput.
    public func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                                dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>) {
        let b = GroupBlocks(geometry)
        for n in 0..<geometry.batch {
            for group in 0..<geometry.groups {
                Gemm.multiply(.none, .transposed, m: b.O, n: b.C, k: b.P, a: dOutput + b.output(n, group),
                              b: input + b.input(n, group), beta: 1, c: dWeight + b.weight(group))
            }
        }
        if let dBias { ConvolutionBias.backward(dBias: dBias, dOutput: dOutput, geometry: geometry) }
    }
}
