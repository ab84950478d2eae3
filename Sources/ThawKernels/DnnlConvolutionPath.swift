// DnnlConvolutionPath: the `.dnnl` convolution path, oneDNN's primitives in their blocked layouts
// with reorders from and to NCHW in every call (`DnnlConvolution`), on one OpenMP thread, and
// accumulating backward passes (Note: accumulation, in ConvolutionPath.swift).

/// oneDNN's primitives for one geometry, created as the `.dnnl` path needs them: blocked layout,
/// one thread, backward passes that add into their outputs.
public struct DnnlConvolutionPath: ConvolutionKernel {
    /// The primitives.
    public let primitives: DnnlConvolution

    /// Creates the primitives for `geometry`.
    /// - Parameters:
    ///   - geometry: The sizes.
    ///   - bias: Whether the backward-weights primitive also computes the bias gradient.
    /// - Throws: `DnnlError` when oneDNN cannot create a primitive for the geometry.
    public init(geometry: Convolution2DGeometry, bias: Bool) throws(DnnlError) {
        primitives = try DnnlConvolution(geometry: geometry, bias: bias, layout: .blocked, threads: 1, accumulate: true)
    }

    /// The sizes the primitives were created for.
    public var geometry: Convolution2DGeometry { primitives.geometry }

    /// output = conv(input, weight) + bias (a bias is taken even without a bias gradient: a folded batch norm).
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?) {
        primitives.forward(output: output, input: input, weight: weight, bias: bias)
    }

    /// dInput += convᵀ(dOutput, weight).
    public func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        primitives.backwardData(dInput: dInput, dOutput: dOutput, weight: weight)
    }

    /// dWeight += dOutput ⋆ input and dBias += Σ dOutput: oneDNN computes the bias gradient with the
    /// weights' when its primitives have a bias, Thaw's sum does otherwise.
    public func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                                dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>) {
        primitives.backwardWeights(dWeight: dWeight, dBias: primitives.hasBias ? dBias : nil, dOutput: dOutput, input: input)
        if let dBias, !primitives.hasBias { ConvolutionBias.backward(dBias: dBias, dOutput: dOutput, geometry: geometry) }
    }
}
