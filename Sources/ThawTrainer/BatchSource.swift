// BatchSource: where a step's model outputs come from. Either the raw samples run through every
// group (augmented, for training), or the frozen prefix's cached output runs through the trainable
// groups only (see FeatureCaching.swift). Both fill the same target buffers, so the trainer's loop
// is the same line for either.
import ThawData
import ThawKernels
import ThawNN

/// The buffers of one local batch: the model's input and the per-row targets.
final class BatchBuffers {
    /// The raw input, `[rows] + sampleShape`.
    let input: Tensor
    /// The cached boundary features of the rows.
    let features = Tensor(shape: [0])
    private let labels: UnsafeMutableBufferPointer<Int32>
    private let weights: UnsafeMutableBufferPointer<Float>
    private let labelWeights: UnsafeMutableBufferPointer<Float>
    private let domains: UnsafeMutableBufferPointer<Int32>
    private let sampleShape: [Int]

    /// Room for `capacity` rows of `sampleShape`.
    init(capacity: Int, sampleShape: [Int]) {
        self.sampleShape = sampleShape
        input = Tensor(shape: [capacity] + sampleShape)
        labels = .allocate(capacity: capacity)
        labels.initialize(repeating: 0)
        weights = .allocate(capacity: capacity)
        weights.initialize(repeating: 0)
        labelWeights = .allocate(capacity: capacity)
        labelWeights.initialize(repeating: 0)
        domains = .allocate(capacity: capacity)
        domains.initialize(repeating: 0)
    }

    deinit {
        labels.deallocate()
        weights.deallocate()
        labelWeights.deallocate()
        domains.deallocate()
    }

    /// Fills the input and the targets with the samples at `indices`.
    func assemble(_ indices: [Int?], from dataset: any Dataset) {
        input.resize(to: [indices.count] + sampleShape)
        BatchAssembler.fill(from: dataset, indices: indices, features: input.data, labels: labels, weights: weights,
                            labelWeights: labelWeights, domains: domains)
    }

    /// Fills only the targets (the features come from a cache).
    func assembleTargets(_ indices: [Int?], from dataset: any Dataset) {
        BatchAssembler.fillTargets(from: dataset, indices: indices, labels: labels, weights: weights, labelWeights: labelWeights, domains: domains)
    }

    /// The assembled batch's targets.
    func targets(rows: Int) -> BatchTargets {
        BatchTargets(labels: UnsafePointer(labels.baseAddress!), labelWeights: UnsafePointer(labelWeights.baseAddress!),
                     sampleWeights: UnsafePointer(weights.baseAddress!), domains: UnsafePointer(domains.baseAddress!), rows: rows)
    }
}

/// Where the model's outputs for a batch come from.
enum BatchSource {
    /// The raw samples through every group, augmented when training with an augmentation.
    case raw(augmentation: ImageAugmentation?)
    /// The frozen prefix's output from `cache` through the trainable groups; rows the cache does not
    /// hold yet (evaluation fills as it goes) are computed once and stored. `needsRawInput`: a layer
    /// above the boundary also reads the raw batch (BERT's padding mask).
    case cached(FeatureCache, needsRawInput: Bool)

    /// Runs the model on the rows `indices` of `dataset` (nil = a padding row; targets filled into `buffers`).
    func forward(_ indices: [Int?], of dataset: any Dataset, model: Model, buffers: BatchBuffers, epoch: Int, training: Bool,
                 timeline: Timeline? = nil) throws -> Tensor {
        switch self {
        case .raw(let augmentation):
            timeline.span("batch assembly", category: "data") {
                buffers.assemble(indices, from: dataset)
                if training { augmentation?.apply(to: buffers.input.data, sampleShape: model.sampleShape, sampleIndices: indices, epoch: epoch) }
            }
            return try model.forward(buffers.input, training: training)
        case .cached(let cache, let needsRawInput):
            guard cache.holds(indices) else {
                timeline.span("batch assembly", category: "data") { buffers.assemble(indices, from: dataset) }
                let features = model.forward(buffers.input, groups: 0..<cache.boundary, training: false)
                cache.store(features, indices: indices)
                return model.forward(features, fromGroup: cache.boundary, training: training)
            }
            timeline.span("cache copy", category: "data") {
                buffers.assembleTargets(indices, from: dataset)
                cache.load(indices, into: buffers.features)
                if needsRawInput {
                    buffers.assemble(indices, from: dataset)
                    model.observeRawInput(buffers.input, belowGroup: cache.boundary)
                }
            }
            return model.forward(buffers.features, fromGroup: cache.boundary, training: training)
        }
    }
}
