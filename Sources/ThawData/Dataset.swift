// Dataset: indexed labelled samples of a fixed shape, copied one at a time into batch buffers.
//
// The training loop never sees files: a sampler picks indices, and BatchAssembler copies those
// samples into a batch buffer through `copySample`. InMemoryDataset keeps every sample in one
// flat Float array; DatasetSubset is a view of selected indices of another dataset.

/// Labelled samples of one shape, addressed by index in `0..<count`.
public protocol Dataset {
    /// The number of samples.
    var count: Int { get }
    /// The shape of one sample, outermost first (for images: channels, height, width).
    var sampleShape: [Int] { get }
    /// The number of classes; every label is in `0..<classCount`.
    var classCount: Int { get }
    /// Copies sample `index` (the product of `sampleShape` values, row-major) to `destination`.
    func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>)
    /// The class label of sample `index`. Not called for a sample that is not `isLabelled`.
    func label(_ index: Int) -> Int32
    /// Whether training may use the label of sample `index`: false for the unlabelled target-domain
    /// samples of domain adaptation (see ``DomainMixture``). True by default.
    func isLabelled(_ index: Int) -> Bool
    /// The domain of sample `index`: 0 for the (labelled) source domain, 1 for the target domain. 0 by default.
    func domain(_ index: Int) -> Int32
}

extension Dataset {
    /// Every sample is labelled unless a dataset says otherwise.
    public func isLabelled(_ index: Int) -> Bool { true }
    /// Every sample is from the source domain unless a dataset says otherwise.
    public func domain(_ index: Int) -> Int32 { 0 }

    /// The number of Float values in one sample.
    public var sampleSize: Int { sampleShape.reduce(1, *) }

    /// A view of the samples at `indices`, in that order.
    /// - Parameter indices: Indices into this dataset, each in `0..<count`; repeats are allowed.
    public func subset(_ indices: [Int]) -> DatasetSubset<Self> {
        DatasetSubset(base: self, indices: indices)
    }

    /// A view of the first `length` samples (or all of them, if there are fewer).
    public func prefix(_ length: Int) -> DatasetSubset<Self> {
        subset(Array(0..<max(0, min(length, count))))
    }

    /// A copy of one sample's values, for tests and inspection.
    public func sample(_ index: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: sampleSize) { buffer, initialized in
            if let base = buffer.baseAddress { copySample(index, into: base) }
            initialized = sampleSize
        }
    }
}

/// A dataset held in memory: all samples in one flat row-major Float array, plus labels.
public struct InMemoryDataset: Dataset, Sendable {
    /// Every sample's values, sample after sample (`count * sampleSize` values).
    public let features: [Float]
    /// Every sample's label.
    public let labels: [Int32]
    /// The shape of one sample.
    public let sampleShape: [Int]
    /// The number of classes.
    public let classCount: Int

    /// Creates a dataset from flat features and labels.
    /// - Parameters:
    ///   - features: `labels.count * product(sampleShape)` values.
    ///   - labels: One label per sample, each in `0..<classCount`.
    ///   - sampleShape: The shape of one sample.
    ///   - classCount: The number of classes.
    public init(features: [Float], labels: [Int32], sampleShape: [Int], classCount: Int) {
        let sampleSize = sampleShape.reduce(1, *)
        precondition(features.count == labels.count * sampleSize,
                     "InMemoryDataset: \(features.count) values do not make \(labels.count) samples of shape \(sampleShape)")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < classCount }, "InMemoryDataset: a label is outside 0..<\(classCount)")
        self.features = features
        self.labels = labels
        self.sampleShape = sampleShape
        self.classCount = classCount
    }

    /// The number of samples.
    public var count: Int { labels.count }

    /// Copies sample `index` into `destination`.
    public func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(index >= 0 && index < count, "sample index \(index) out of range 0..<\(count)")
        let size = sampleSize
        features.withUnsafeBufferPointer { destination.update(from: $0.baseAddress! + index * size, count: size) }
    }

    /// The label of sample `index`.
    public func label(_ index: Int) -> Int32 { labels[index] }
}

/// Images held in memory as bytes, a quarter of the size of floats, each pixel mapped to
/// `byte × scale + shift` as it is copied out (normalization folded into one multiply-add).
public struct ByteImageDataset: Dataset, Sendable {
    /// Every sample's pixels, sample after sample (`count * sampleSize` bytes).
    public let pixels: [UInt8]
    /// Every sample's label.
    public let labels: [Int32]
    /// The shape of one sample.
    public let sampleShape: [Int]
    /// The number of classes.
    public let classCount: Int
    /// Multiplies each byte as it is copied out.
    public let scale: Float
    /// Added to each scaled byte.
    public let shift: Float

    /// Creates a dataset from flat pixels and labels; a copied pixel is `byte × scale + shift`.
    public init(pixels: [UInt8], labels: [Int32], sampleShape: [Int], classCount: Int, scale: Float, shift: Float) {
        precondition(pixels.count == labels.count * sampleShape.reduce(1, *),
                     "ByteImageDataset: \(pixels.count) bytes do not make \(labels.count) samples of shape \(sampleShape)")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < classCount }, "ByteImageDataset: a label is outside 0..<\(classCount)")
        self.pixels = pixels
        self.labels = labels
        self.sampleShape = sampleShape
        self.classCount = classCount
        self.scale = scale
        self.shift = shift
    }

    /// The number of samples.
    public var count: Int { labels.count }

    /// Copies sample `index` into `destination`, converting bytes to normalized floats.
    public func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(index >= 0 && index < count, "sample index \(index) out of range 0..<\(count)")
        let size = sampleSize
        let (scale, shift) = (scale, shift)
        pixels.withUnsafeBufferPointer { bytes in
            let source = bytes.baseAddress! + index * size
            for i in 0..<size { destination[i] = Float(source[i]) * scale + shift }
        }
    }

    /// The label of sample `index`.
    public func label(_ index: Int) -> Int32 { labels[index] }
}

/// The samples of another dataset at chosen indices, in order (see ``Dataset/subset(_:)``).
public struct DatasetSubset<Base: Dataset>: Dataset {
    /// The dataset the samples come from.
    public let base: Base
    /// For each sample of the subset, its index in `base`.
    public let indices: [Int]

    /// Creates a view of `base` at `indices`; each index must be in `0..<base.count`.
    public init(base: Base, indices: [Int]) {
        precondition(indices.allSatisfy { $0 >= 0 && $0 < base.count }, "subset index out of range 0..<\(base.count)")
        self.base = base
        self.indices = indices
    }

    /// The number of selected samples.
    public var count: Int { indices.count }
    /// The base dataset's sample shape.
    public var sampleShape: [Int] { base.sampleShape }
    /// The base dataset's class count.
    public var classCount: Int { base.classCount }
    /// Copies the base sample at `indices[index]`.
    public func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        base.copySample(indices[index], into: destination)
    }
    /// The label of the base sample at `indices[index]`.
    public func label(_ index: Int) -> Int32 { base.label(indices[index]) }
    /// Whether the base sample at `indices[index]` is labelled.
    public func isLabelled(_ index: Int) -> Bool { base.isLabelled(indices[index]) }
    /// The domain of the base sample at `indices[index]`.
    public func domain(_ index: Int) -> Int32 { base.domain(indices[index]) }
}

extension DatasetSubset: Sendable where Base: Sendable {}
