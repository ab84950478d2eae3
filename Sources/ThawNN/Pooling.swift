// Pooling layers: MaxPool2d, AvgPool2d (PyTorch defaults: floor mode, padding counted in the
// average), AdaptiveAveragePool2d (a fixed output size, PyTorch's window formula) and
// GlobalAveragePool ([N, C, H, W] → [N, C], i.e. adaptive_avg_pool2d((1, 1)) then flatten).
import ThawKernels

/// Max pooling over `[N, C, H, W]`, remembering each window's argmax for backward.
public final class MaxPool2d: Layer {
    /// The windows.
    public let window: PoolingWindow
    /// Window extent.
    public var kernelSize: Size2D { window.kernelSize }
    /// Step between windows.
    public var stride: Size2D { window.stride }
    /// Implicit −∞ padding on each side.
    public var padding: Size2D { window.padding }

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var indices: [Int32] = []
    private var geometry: Pooling2DGeometry?

    /// Creates a max-pooling layer.
    /// - Parameters:
    ///   - kernelSize: Window extent.
    ///   - stride: Step between windows; nil means `kernelSize`, as in PyTorch.
    ///   - padding: Implicit padding; at most half the kernel, as PyTorch requires.
    public init(kernelSize: Size2D, stride: Size2D? = nil, padding: Size2D = 0) {
        window = PoolingWindow(layer: "MaxPool2d", kernelSize: kernelSize, stride: stride, padding: padding)
    }

    /// `[N, C, H, W]` → `[N, C, OH, OW]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { try window.outputShape(for: inputShape) }

    /// y = max over each window.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        let g = window.geometry(for: x.shape)
        output.resize(to: [g.batch, g.channels, g.outputHeight, g.outputWidth])
        if mode == .training {
            if indices.count < g.outputCount { indices = [Int32](repeating: 0, count: g.outputCount) }
            indices.withUnsafeMutableBufferPointer { Pooling2D.maxForward(output: output.data, indices: $0.baseAddress, input: x.data, geometry: g) }
            geometry = g
        } else {
            Pooling2D.maxForward(output: output.data, indices: nil, input: x.data, geometry: g)
            geometry = nil
        }
        return output
    }

    /// Routes each output gradient to its window's maximum.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let g = geometry else { preconditionFailure("MaxPool2d.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: [g.batch, g.channels, g.inputHeight, g.inputWidth])
        inputGradient.zero()
        indices.withUnsafeBufferPointer { index in
            guard let base = index.baseAddress else { return }
            Pooling2D.maxBackward(dInput: inputGradient.data, dOutput: dY.data, indices: base, geometry: g)
        }
        return inputGradient
    }
}

/// Average pooling over `[N, C, H, W]`; zero padding counts in the divisor (`count_include_pad=True`).
public final class AvgPool2d: Layer {
    /// The windows.
    public let window: PoolingWindow
    /// Window extent.
    public var kernelSize: Size2D { window.kernelSize }
    /// Step between windows.
    public var stride: Size2D { window.stride }
    /// Implicit zero padding on each side.
    public var padding: Size2D { window.padding }

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var geometry: Pooling2DGeometry?

    /// Creates an average-pooling layer.
    /// - Parameters:
    ///   - kernelSize: Window extent.
    ///   - stride: Step between windows; nil means `kernelSize`, as in PyTorch.
    ///   - padding: Implicit zero padding; at most half the kernel, as PyTorch requires.
    public init(kernelSize: Size2D, stride: Size2D? = nil, padding: Size2D = 0) {
        window = PoolingWindow(layer: "AvgPool2d", kernelSize: kernelSize, stride: stride, padding: padding)
    }

    /// `[N, C, H, W]` → `[N, C, OH, OW]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { try window.outputShape(for: inputShape) }

    /// y = mean over each (padded) window.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        let g = window.geometry(for: x.shape)
        output.resize(to: [g.batch, g.channels, g.outputHeight, g.outputWidth])
        Pooling2D.averageForward(output: output.data, input: x.data, geometry: g)
        geometry = mode == .training ? g : nil
        return output
    }

    /// Spreads each output gradient evenly over its window.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let g = geometry else { preconditionFailure("AvgPool2d.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: [g.batch, g.channels, g.inputHeight, g.inputWidth])
        inputGradient.zero()
        Pooling2D.averageBackward(dInput: inputGradient.data, dOutput: dY.data, geometry: g)
        return inputGradient
    }
}

/// Average pooling to a fixed output size, PyTorch's `AdaptiveAvgPool2d`: `[N, C, H, W]` → `[N, C, OH, OW]`.
///
/// Output row `oh` averages input rows ⌊oh·H/OH⌋ ..< ⌈(oh+1)·H/OH⌉, and likewise for columns, so any
/// H, W ≥ 1 works: torchvision's VGG pools a 1×1 map (from 32×32 images) to 7×7 by copying it.
public final class AdaptiveAveragePool2d: Layer {
    /// The output plane's size.
    public let outputSize: Size2D

    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int]?

    /// Creates an adaptive average pool.
    /// - Parameter outputSize: The output plane's size (an integer for a square one), each ≥ 1.
    public init(outputSize: Size2D) {
        precondition(outputSize.height >= 1 && outputSize.width >= 1, "AdaptiveAveragePool2d: output size \(outputSize) must be ≥ 1")
        self.outputSize = outputSize
    }

    /// `[N, C, H, W]` → `[N, C, OH, OW]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 4, inputShape[2] > 0, inputShape[3] > 0 else {
            throw ShapeError(layer: "AdaptiveAveragePool2d", shape: inputShape, expected: "[N, C, H, W] with H, W ≥ 1")
        }
        return [inputShape[0], inputShape[1], outputSize.height, outputSize.width]
    }

    /// y = the mean over each adaptive window.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        precondition(x.shape.count == 4, "AdaptiveAveragePool2d: input shape \(x.shape), expected [N, C, H, W]")
        output.resize(to: [x.shape[0], x.shape[1], outputSize.height, outputSize.width])
        Pooling2D.adaptiveAverageForward(output: output.data, input: x.data, planes: x.shape[0] * x.shape[1],
                                         inputSize: Size2D(height: x.shape[2], width: x.shape[3]), outputSize: outputSize)
        inputShape = mode == .training ? x.shape : nil
        return output
    }

    /// Spreads each output gradient evenly over its window; overlapping windows add up.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("AdaptiveAveragePool2d.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: shape)
        inputGradient.zero()
        Pooling2D.adaptiveAverageBackward(dInput: inputGradient.data, dOutput: dY.data, planes: shape[0] * shape[1],
                                          inputSize: Size2D(height: shape[2], width: shape[3]), outputSize: outputSize)
        return inputGradient
    }
}

/// The mean of each channel plane: `[N, C, H, W]` → `[N, C]`.
///
/// This is torchvision's `adaptive_avg_pool2d(x, (1, 1))` followed by `flatten(1)`, so a classifier
/// `Linear(C, classes)` can follow directly.
public final class GlobalAveragePool: Layer {
    private let output = Tensor(shape: [0])
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int]?

    /// Creates a global average pool.
    public init() {}

    /// `[N, C, H, W]` → `[N, C]`.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 4, inputShape[2] > 0, inputShape[3] > 0 else {
            throw ShapeError(layer: "GlobalAveragePool", shape: inputShape, expected: "[N, C, H, W] with H, W ≥ 1")
        }
        return [inputShape[0], inputShape[1]]
    }

    /// y[n, c] = mean of x[n, c, :, :].
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        precondition(x.shape.count == 4, "GlobalAveragePool: input shape \(x.shape), expected [N, C, H, W]")
        output.resize(to: [x.shape[0], x.shape[1]])
        Pooling2D.globalAverageForward(output: output.data, input: x.data, planes: x.shape[0] * x.shape[1], planeSize: x.shape[2] * x.shape[3])
        inputShape = mode == .training ? x.shape : nil
        return output
    }

    /// dX[n, c, h, w] = dY[n, c] / (H·W).
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("GlobalAveragePool.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: shape)
        inputGradient.zero()
        Pooling2D.globalAverageBackward(dInput: inputGradient.data, dOutput: dY.data, planes: shape[0] * shape[1], planeSize: shape[2] * shape[3])
        return inputGradient
    }
}

/// The windows of a 2-D pooling layer (max or average), checked once, with PyTorch's rules.
public struct PoolingWindow: Sendable, Equatable {
    /// The layer's name, for messages.
    public let layer: String
    /// Window extent.
    public let kernelSize: Size2D
    /// Step between windows.
    public let stride: Size2D
    /// Implicit padding on each side.
    public let padding: Size2D

    /// Windows of `kernelSize` every `stride` (nil: `kernelSize`, as in PyTorch), padded by at most half the kernel.
    public init(layer: String, kernelSize: Size2D, stride: Size2D?, padding: Size2D) {
        let stride = stride ?? kernelSize
        precondition(min(kernelSize.height, kernelSize.width, stride.height, stride.width) >= 1, "\(layer): kernel and stride must be ≥ 1")
        precondition(padding.height >= 0 && padding.width >= 0 && 2 * padding.height <= kernelSize.height && 2 * padding.width <= kernelSize.width,
                     "\(layer): padding \(padding) must be between 0 and half the kernel \(kernelSize)")
        self.layer = layer
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
    }

    /// `[N, C, H, W]` → `[N, C, OH, OW]`, or a ShapeError naming the layer.
    public func outputShape(for shape: [Int]) throws(ShapeError) -> [Int] {
        guard shape.count == 4 else { throw ShapeError(layer: layer, shape: shape, expected: "[N, C, H, W]") }
        let g = geometry(for: shape)
        guard g.outputHeight > 0, g.outputWidth > 0 else {
            throw ShapeError(layer: layer, shape: shape, expected: "[N, C, H, W] with H, W + 2·padding \(padding) ≥ kernel \(kernelSize)")
        }
        return [shape[0], shape[1], g.outputHeight, g.outputWidth]
    }

    /// The geometry for an input shape (a wrong rank is a programming error here: shapes were checked).
    func geometry(for shape: [Int]) -> Pooling2DGeometry {
        precondition(shape.count == 4, "\(layer): input shape \(shape), expected [N, C, H, W]")
        return Pooling2DGeometry(batch: shape[0], channels: shape[1], inputHeight: shape[2], inputWidth: shape[3],
                                 kernel: kernelSize, stride: stride, padding: padding)
    }
}
