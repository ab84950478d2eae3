// FewShot: few-shot evaluation with prototype heads (Snell et al., "Prototypical Networks").
//
// A backbone's embedding of an image is the model's output before its `head` group (inference mode,
// spatially averaged when it is still a feature map). A class prototype is the mean embedding of that
// class's k support examples; a query gets the class of its nearest prototype. Accuracy is averaged over
// many sampled episodes (N classes, k support and q query examples each), each a pure function of
// (seed, episode index), and reported with a 95% interval 1.96·sd/√episodes.
//
// The embeddings of a pool of images are computed once; episodes only pick rows of the pool. With
// episodic fine-tuning the pool holds the input of the lowest fine-tuned group instead, and every episode
// trains the top groups on its support set, classifies its queries, then puts the weights back.
import Foundation
import ThawRun
import ThawTrainer
import ThawData
import ThawKernels
import ThawNN
import ThawOptim

/// How a query is compared with a prototype.
public enum PrototypeDistance: String, CaseIterable, Codable, Sendable {
    /// Squared Euclidean distance ‖e − c‖².
    case euclidean
    /// One minus the cosine of the angle between the embedding and the prototype.
    case cosine
}

/// How a pre-head output that is still a feature map becomes one vector per image.
public enum EmbeddingPooling: String, CaseIterable, Codable, Sendable {
    /// The mean over spatial positions of a `[N, C, H, W]` output (what MobileNetV2's head does first).
    case average
    /// Every value of the output, flattened.
    case flatten
}

/// A bad few-shot setting, naming the option or field at fault.
public struct FewShotError: Error, CustomStringConvertible, Equatable {
    /// The option or field, such as `--classes` or `--ways`.
    public var field: String
    /// What is wrong and what was expected.
    public var message: String

    /// Creates an error for `field`.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    /// `field: message`.
    public var description: String { "\(field): \(message)" }
}

/// Runs few-shot episodes with a backbone: frozen prototypes, or episodic fine-tuning of the top groups.
public final class FewShotEvaluator {
    /// The backbone (its head group is never run).
    public let model: Model
    /// The index of the group that is not part of the embedding (the group named `head`, else the last).
    public let headIndex: Int
    /// The lowest group trained per episode (`headIndex` when nothing is fine-tuned).
    public let firstTunedGroup: Int
    /// How a feature-map output becomes a vector.
    public let pooling: EmbeddingPooling
    /// Episodic fine-tuning: optimizer steps per episode (0 = none).
    public let fineTuneSteps: Int
    /// Episodic fine-tuning: the SGD learning rate.
    public let fineTuneLearningRate: Float
    private let averagePool = GlobalAveragePool()
    private let batchSize: Int
    /// Plain SGD over the tuned groups (nil when nothing is fine-tuned).
    private let optimizer: Optimizer?

    /// Prepares an evaluator.
    /// - Parameters:
    ///   - model: The backbone, with its weights loaded.
    ///   - pooling: How a feature-map output becomes a vector.
    ///   - fineTuneGroups: How many groups below the head to fine-tune per episode (0 = none).
    ///   - fineTuneSteps: SGD steps per episode on the support set.
    ///   - fineTuneLearningRate: The SGD learning rate.
    ///   - batchSize: Images per forward pass when embedding the pool.
    /// - Throws: ``FewShotError`` naming `--fine-tune-groups` when the model has fewer groups below its head.
    public init(model: Model, pooling: EmbeddingPooling, fineTuneGroups: Int = 0, fineTuneSteps: Int = 0,
                fineTuneLearningRate: Float = 0.01, batchSize: Int = 64) throws(FewShotError) {
        self.model = model
        headIndex = model.groupNames.lastIndex(of: "head") ?? model.groups.count - 1
        guard headIndex >= 1 else { throw FewShotError(field: "model.architecture", message: "the model has no group below its head to embed with") }
        guard fineTuneGroups >= 0, fineTuneGroups <= headIndex else {
            throw FewShotError(field: "--fine-tune-groups", message: "expected 0...\(headIndex) (the groups below the head: "
                               + model.groupNames[..<headIndex].joined(separator: ", ") + "), got \(fineTuneGroups)")
        }
        guard fineTuneSteps >= 0 else { throw FewShotError(field: "--fine-tune-steps", message: "expected an integer ≥ 0, got \(fineTuneSteps)") }
        guard fineTuneLearningRate > 0 else { throw FewShotError(field: "--fine-tune-learning-rate", message: "expected a number > 0") }
        self.pooling = pooling
        self.firstTunedGroup = fineTuneSteps > 0 ? headIndex - fineTuneGroups : headIndex
        self.fineTuneSteps = fineTuneGroups > 0 ? fineTuneSteps : 0
        self.fineTuneLearningRate = fineTuneLearningRate
        self.batchSize = max(1, batchSize)
        // The tuned groups run in training mode (a top slice with the head, so this never fails).
        try? model.setTrainableGroups(Array(model.groupNames[firstTunedGroup...]))
        if self.fineTuneSteps > 0, let sgd = try? Optimizer(rule: .sgd(momentum: 0, nesterov: false), store: model.store) {
            sgd.initializeState(forNewlyTrainableGroups: Array(firstTunedGroup..<headIndex), store: model.store)
            optimizer = sgd
        } else {
            optimizer = nil
        }
    }

    /// The pool's images: the first `perClass` samples of each of `classes` in `dataset` (all of them
    /// when `perClass` is 0), in dataset order.
    /// - Throws: ``FewShotError`` naming `--classes` for a class the dataset does not have, or `--per-class`.
    public static func poolIndices(of dataset: any Dataset, classes: [Int], perClass: Int) throws(FewShotError) -> [Int] {
        guard perClass >= 0 else { throw FewShotError(field: "--per-class", message: "expected an integer ≥ 0 (0 = all), got \(perClass)") }
        for k in classes where k < 0 || k >= dataset.classCount {
            throw FewShotError(field: "--classes", message: "unknown class \(k); the dataset's classes are 0...\(dataset.classCount - 1)")
        }
        var taken: [Int: Int] = [:]
        var indices: [Int] = []
        for index in 0..<dataset.count {
            let label = Int(dataset.label(index))
            guard classes.contains(label), perClass == 0 || taken[label, default: 0] < perClass else { continue }
            taken[label, default: 0] += 1
            indices.append(index)
        }
        return indices
    }

    /// Runs `images` through groups `0..<firstTunedGroup` in inference mode and keeps the result, one
    /// row per image: the embeddings themselves when nothing is fine-tuned, else the tuned groups' input.
    public func pool(_ images: any Dataset, indices: [Int]) throws -> EmbeddingPool {
        guard images.sampleShape == model.sampleShape else {
            throw FewShotError(field: "data", message: "images of shape \(images.sampleShape) do not fit the model input \(model.sampleShape)")
        }
        let input = Tensor(shape: [min(batchSize, max(indices.count, 1))] + images.sampleShape)
        var rows: [Float] = []
        var rowShape: [Int] = []
        for start in stride(from: 0, to: indices.count, by: batchSize) {
            let batch = Array(indices[start..<min(start + batchSize, indices.count)])
            input.resize(to: [batch.count] + images.sampleShape)
            for (i, index) in batch.enumerated() { images.copySample(index, into: input.data + i * images.sampleSize) }
            var x = input
            for index in 0..<firstTunedGroup { x = model.groups[index].body.forward(x, mode: .inference) }
            if firstTunedGroup == headIndex { x = vectors(x, mode: .inference) }
            rowShape = Array(x.shape.dropFirst())
            rows.append(contentsOf: UnsafeBufferPointer(start: x.data, count: x.count))
        }
        return EmbeddingPool(rows: rows, labels: indices.map { Int(images.label($0)) }, rowShape: rowShape)
    }

    /// Mean accuracy over `episodes` episodes drawn by `sampler` from `pool` (made by ``pool(_:indices:)``).
    public func evaluate(_ pool: EmbeddingPool, sampler: EpisodeSampler, episodes: Int, distance: PrototypeDistance) -> FewShotResult {
        precondition(episodes >= 1, "FewShotEvaluator.evaluate: no episodes")
        let accuracies = (0..<episodes).map { accuracy(of: sampler.episode($0), in: pool, distance: distance) }
        let summary = MeanInterval(accuracies)
        return FewShotResult(ways: sampler.ways, shots: sampler.shots, queries: sampler.queries, episodes: episodes,
                             accuracy: summary.mean, interval95: summary.halfWidth, standardDeviation: summary.standardDeviation)
    }

    /// The query accuracy of one episode.
    public func accuracy(of episode: Episode, in pool: EmbeddingPool, distance: PrototypeDistance) -> Double {
        let supportRows = episode.support.flatMap { $0 }, queryRows = episode.queries.flatMap { $0 }
        let supportLabels = episode.support.enumerated().flatMap { k, rows in rows.map { _ in k } }
        let queryLabels = episode.queries.enumerated().flatMap { k, rows in rows.map { _ in k } }
        let support: [Float], queries: [Float]
        if fineTuneSteps == 0 {
            support = pool.gather(supportRows)
            queries = pool.gather(queryRows)
        } else {
            let snapshot = model.store.snapshot(of: tunedRange)
            defer { model.store.restore(snapshot) }
            let supportInput = Tensor(shape: [supportRows.count] + pool.rowShape, values: pool.gather(supportRows))
            for _ in 0..<fineTuneSteps { fineTuneStep(supportInput, labels: supportLabels, classes: episode.classes.count) }
            // Only the parameter updates carry over: running statistics of a 5-image batch would skew the embedding.
            model.store.restore(state: snapshot)
            support = embed(supportInput)
            queries = embed(Tensor(shape: [queryRows.count] + pool.rowShape, values: pool.gather(queryRows)))
        }
        let dimension = support.count / max(supportRows.count, 1)
        let prototypes = Prototypes.means(embeddings: support, labels: supportLabels, classes: episode.classes.count, dimension: dimension)
        let predicted = Prototypes.nearest(embeddings: queries, prototypes: prototypes, dimension: dimension, distance: distance)
        return Double(zip(predicted, queryLabels).filter { $0 == $1 }.count) / Double(max(queryLabels.count, 1))
    }

    /// Groups `firstTunedGroup..<headIndex` in inference mode on pooled group inputs, as vectors.
    private func embed(_ input: Tensor) -> [Float] {
        vectors(model.forward(input, groups: firstTunedGroup..<headIndex, training: false), mode: .inference).values
    }

    /// One SGD step of the prototype loss on the support set: logits are −‖e_i − c_j‖² / D (D the embedding
    /// width, so wide embeddings do not saturate the softmax) with the class means c_j of the current support
    /// embeddings held constant, so ∂L/∂e_i = 2 Σ_j (p_ij − y_ij) c_j / (n D).
    private func fineTuneStep(_ input: Tensor, labels: [Int], classes: Int) {
        let x = model.forward(input, groups: firstTunedGroup..<headIndex, training: true)
        let embeddings = vectors(x, mode: .training)
        let n = labels.count, dimension = embeddings.count / max(n, 1)
        let values = embeddings.values
        let prototypes = Prototypes.means(embeddings: values, labels: labels, classes: classes, dimension: dimension)
        let dEmbeddings = Tensor(shape: embeddings.shape)
        dEmbeddings.zero()
        values.withUnsafeBufferPointer { e in
            prototypes.withUnsafeBufferPointer { p in
                for i in 0..<n {
                    let logits = Prototypes.distances(UnsafeBufferPointer(rebasing: e[(i * dimension)..<((i + 1) * dimension)]), prototypes: p,
                                                      distance: .euclidean).map { -Double($0) / Double(dimension) }
                    let largest = logits.max() ?? 0
                    let exponentials = logits.map { exp($0 - largest) }
                    let total = exponentials.reduce(0, +)
                    let row = dEmbeddings.data + i * dimension
                    for j in 0..<classes {
                        let coefficient = Float(2 * (exponentials[j] / total - (j == labels[i] ? 1 : 0)) / Double(n * dimension))
                        let c = p.baseAddress! + j * dimension
                        for d in 0..<dimension { row[d] += coefficient * c[d] }
                    }
                }
            }
        }
        model.store.zeroGradients(in: tunedRange)
        model.backward(dEmbeddings.reshapedForBackward(to: x.shape, pooled: x.shape.count == 4 && pooling == .average, pool: averagePool),
                       groups: firstTunedGroup..<headIndex, afterGroup: { _ in })
        optimizer?.step(store: model.store, groups: firstTunedGroup..<headIndex,
                        learningRates: model.groupNames.indices.map { (firstTunedGroup..<headIndex).contains($0) ? fineTuneLearningRate : 0 })
    }

    /// `[N, C, H, W]` → `[N, C]` under average pooling; any other output is used flat.
    private func vectors(_ x: Tensor, mode: LayerMode) -> Tensor {
        guard x.shape.count == 4, pooling == .average else { return x }
        return averagePool.forward(x, mode: mode)
    }

    private var tunedRange: Range<Int> {
        model.store.groupRanges[firstTunedGroup].lowerBound..<model.store.groupRanges[headIndex - 1].upperBound
    }

}

extension Tensor {
    /// The gradient of a pooled or flattened embedding, in the shape of the tensor it came from.
    fileprivate func reshapedForBackward(to shape: [Int], pooled: Bool, pool: GlobalAveragePool) -> Tensor {
        if pooled { return pool.backward(self, computeInputGradient: true) ?? self }
        let result = Tensor(shape: shape)
        result.data.update(from: data, count: count)
        return result
    }
}
