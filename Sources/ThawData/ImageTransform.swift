// ImageTransform: makes a dataset's images fit a pretrained backbone, one sample at a time:
// bilinear resize to the backbone's resolution, grayscale repeated to 3 channels, and the
// backbone's normalization. Nothing is precomputed, so no enlarged copy of the data is held.

/// How pixels are normalized after resizing.
public struct PixelNormalization: Sendable, Equatable {
    /// Per-channel mean, subtracted from pixels in [0, 1].
    public var mean: [Float]
    /// Per-channel standard deviation, divided by after the mean.
    public var standardDeviation: [Float]

    /// torchvision's ImageNet statistics, used by its pretrained backbones.
    public static let imageNet = PixelNormalization(mean: [0.485, 0.456, 0.406], standardDeviation: [0.229, 0.224, 0.225])

    /// Creates a normalization.
    public init(mean: [Float], standardDeviation: [Float]) {
        self.mean = mean
        self.standardDeviation = standardDeviation
    }
}

/// A dataset whose images are resized, channel-repeated and re-normalized on access.
public struct TransformedImageDataset<Base: Dataset>: Dataset {
    /// The source images, shaped [C, H, W].
    public let base: Base
    /// How the source normalized its pixels (to undo it first), as (mean, standard deviation).
    public let sourceNormalization: (mean: Float, standardDeviation: Float)
    /// The output [channels, height, width].
    public let sampleShape: [Int]
    /// The output normalization.
    public let normalization: PixelNormalization

    /// Wraps `base`.
    /// - Parameters:
    ///   - base: Images [1 or 3, H, W].
    ///   - sourceNormalization: The affine map the source applied to [0, 1] pixels.
    ///   - size: Output height and width.
    ///   - channels: Output channels (a single source channel is repeated).
    ///   - normalization: The output normalization (one mean and deviation per output channel).
    public init(base: Base, sourceNormalization: (mean: Float, standardDeviation: Float), size: Int, channels: Int,
                normalization: PixelNormalization) {
        precondition(base.sampleShape.count == 3 && (base.sampleShape[0] == channels || base.sampleShape[0] == 1),
                     "images must be [1 or \(channels), H, W]")
        precondition(normalization.mean.count == channels && normalization.standardDeviation.count == channels)
        self.base = base
        self.sourceNormalization = sourceNormalization
        self.sampleShape = [channels, size, size]
        self.normalization = normalization
    }

    /// The number of samples.
    public var count: Int { base.count }
    /// The number of classes.
    public var classCount: Int { base.classCount }
    /// The label of sample `index`.
    public func label(_ index: Int) -> Int32 { base.label(index) }
    /// Whether sample `index` is labelled.
    public func isLabelled(_ index: Int) -> Bool { base.isLabelled(index) }
    /// The domain of sample `index`.
    public func domain(_ index: Int) -> Int32 { base.domain(index) }

    /// Resizes (bilinear, align-corners false, as torchvision) and normalizes one sample.
    public func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        // Legend: C channels, H×W source, S output side.
        let (C, H, W) = (base.sampleShape[0], base.sampleShape[1], base.sampleShape[2])
        let S = sampleShape[1]
        let source = UnsafeMutablePointer<Float>.allocate(capacity: C * H * W)
        defer { source.deallocate() }
        base.copySample(index, into: source)
        let scaleY = Float(H) / Float(S), scaleX = Float(W) / Float(S)
        for channel in 0..<sampleShape[0] {
            let plane = source + (C == 1 ? 0 : channel) * H * W
            let out = destination + channel * S * S
            let mean = normalization.mean[channel], deviation = normalization.standardDeviation[channel]
            for y in 0..<S {
                let sy = max(0, (Float(y) + 0.5) * scaleY - 0.5)
                let y0 = min(Int(sy), H - 1), y1 = min(y0 + 1, H - 1)
                let fy = sy - Float(y0)
                for x in 0..<S {
                    let sx = max(0, (Float(x) + 0.5) * scaleX - 0.5)
                    let x0 = min(Int(sx), W - 1), x1 = min(x0 + 1, W - 1)
                    let fx = sx - Float(x0)
                    let top = plane[y0 * W + x0] * (1 - fx) + plane[y0 * W + x1] * fx
                    let bottom = plane[y1 * W + x0] * (1 - fx) + plane[y1 * W + x1] * fx
                    let value = (top * (1 - fy) + bottom * fy) * sourceNormalization.standardDeviation + sourceNormalization.mean
                    out[y * S + x] = (value - mean) / deviation
                }
            }
        }
    }
}
