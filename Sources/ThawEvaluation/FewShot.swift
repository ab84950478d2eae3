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

/// Prototype arithmetic on row-major embeddings (`rows × dimension` values).
public enum Prototypes {
    /// The mean embedding of each class.
    /// - Parameters:
    ///   - embeddings: `labels.count × dimension` values, one row per example.
    ///   - labels: Each row's class, in `0..<classes`.
    ///   - classes: The number of prototypes.
    ///   - dimension: The embedding width.
    /// - Returns: `classes × dimension` values; a class without examples gets a zero row.
    public static func means(embeddings: [Float], labels: [Int], classes: Int, dimension: Int) -> [Float] {
        precondition(embeddings.count == labels.count * dimension, "Prototypes.means: \(embeddings.count) values for \(labels.count) rows of \(dimension)")
        var sums = [Float](repeating: 0, count: classes * dimension)
        var counts = [Int](repeating: 0, count: classes)
        embeddings.withUnsafeBufferPointer { e in
            sums.withUnsafeMutableBufferPointer { s in
                for (row, label) in labels.enumerated() {
                    precondition(label >= 0 && label < classes, "Prototypes.means: label \(label) outside 0..<\(classes)")
                    counts[label] += 1
                    let source = e.baseAddress! + row * dimension, target = s.baseAddress! + label * dimension
                    for j in 0..<dimension { target[j] += source[j] }
                }
                for k in 0..<classes where counts[k] > 0 {
                    let scale = 1 / Float(counts[k]), target = s.baseAddress! + k * dimension
                    for j in 0..<dimension { target[j] *= scale }
                }
            }
        }
        return sums
    }

    /// The distance of one embedding to every prototype.
    /// - Parameters:
    ///   - embedding: `dimension` values.
    ///   - prototypes: `classes × dimension` values.
    ///   - distance: The distance.
    public static func distances(_ embedding: UnsafeBufferPointer<Float>, prototypes: UnsafeBufferPointer<Float>,
                                 distance: PrototypeDistance) -> [Float] {
        let dimension = embedding.count
        let classes = prototypes.count / max(dimension, 1)
        let e = embedding.baseAddress!, p = prototypes.baseAddress!
        var embeddingNorm: Float = 0
        for j in 0..<dimension { embeddingNorm += e[j] * e[j] }
        return (0..<classes).map { k in
            let c = p + k * dimension
            switch distance {
            case .euclidean:
                var sum: Float = 0
                for j in 0..<dimension { let d = e[j] - c[j]; sum += d * d }
                return sum
            case .cosine:
                var dot: Float = 0, norm: Float = 0
                for j in 0..<dimension { dot += e[j] * c[j]; norm += c[j] * c[j] }
                let denominator = (embeddingNorm * norm).squareRoot()
                return denominator > 0 ? 1 - dot / denominator : 1
            }
        }
    }

    /// The class of the nearest prototype for each row of `embeddings` (ties go to the lower class).
    public static func nearest(embeddings: [Float], prototypes: [Float], dimension: Int, distance: PrototypeDistance) -> [Int] {
        precondition(dimension > 0 && embeddings.count % dimension == 0 && prototypes.count % dimension == 0, "Prototypes.nearest: ragged rows")
        return embeddings.withUnsafeBufferPointer { e in
            prototypes.withUnsafeBufferPointer { p in
                (0..<(e.count / dimension)).map { row in
                    let d = distances(UnsafeBufferPointer(rebasing: e[(row * dimension)..<((row + 1) * dimension)]), prototypes: p, distance: distance)
                    var best = 0
                    for k in d.indices where d[k] < d[best] { best = k }
                    return best
                }
            }
        }
    }
}

/// A mean with its 95% confidence interval over independent trials (episodes).
public struct MeanInterval: Codable, Equatable, Sendable {
    /// The mean.
    public var mean: Double
    /// The sample standard deviation (divisor n − 1; 0 for one trial).
    public var standardDeviation: Double
    /// The interval's half width: 1.96 · sd / √n.
    public var halfWidth: Double
    /// The number of trials.
    public var count: Int

    /// Summarizes `values` (at least one).
    public init(_ values: [Double]) {
        precondition(!values.isEmpty, "MeanInterval: no values")
        count = values.count
        mean = values.reduce(0, +) / Double(count)
        let center = mean
        let squares = values.reduce(0) { $0 + ($1 - center) * ($1 - center) }
        standardDeviation = count > 1 ? (squares / Double(count - 1)).squareRoot() : 0
        halfWidth = 1.96 * standardDeviation / Double(count).squareRoot()
    }
}

/// One few-shot episode: the classes drawn and, for each, the pool rows used as support and as queries.
public struct Episode: Equatable, Sendable {
    /// The dataset classes of this episode, in episode order (episode class i is `classes[i]`).
    public var classes: [Int]
    /// For each episode class, the pool rows of its support examples.
    public var support: [[Int]]
    /// For each episode class, the pool rows of its queries (disjoint from its support).
    public var queries: [[Int]]
}

/// Draws episodes from a labelled pool: N of the allowed classes, then k + q distinct rows of each.
/// Episode `i` depends only on (seed, i), so results do not depend on evaluation order.
public struct EpisodeSampler: Sendable {
    /// The classes episodes may draw from.
    public let classes: [Int]
    /// Classes per episode (N).
    public let ways: Int
    /// Support examples per class (k).
    public let shots: Int
    /// Queries per class (q).
    public let queries: Int
    /// The seed.
    public let seed: UInt64
    private let rowsByClass: [Int: [Int]]

    /// Prepares a sampler and checks that every episode can be drawn.
    /// - Parameters:
    ///   - labels: The class of every pool row.
    ///   - classes: The classes episodes may use; each must occur in `labels`.
    ///   - ways: Classes per episode, at most `classes.count`.
    ///   - shots: Support examples per class, ≥ 1.
    ///   - queries: Queries per class, ≥ 1.
    ///   - seed: The seed.
    /// - Throws: ``FewShotError`` naming `--classes`, `--ways`, `--shots` or `--queries`.
    public init(labels: [Int], classes: [Int], ways: Int, shots: Int, queries: Int, seed: UInt64) throws(FewShotError) {
        guard !classes.isEmpty else { throw FewShotError(field: "--classes", message: "no classes given") }
        guard Set(classes).count == classes.count else { throw FewShotError(field: "--classes", message: "a class is listed twice: \(classes)") }
        guard ways >= 2 else { throw FewShotError(field: "--ways", message: "expected at least 2 classes per episode, got \(ways)") }
        guard ways <= classes.count else {
            throw FewShotError(field: "--ways", message: "\(ways)-way episodes need at least \(ways) classes; --classes gives \(classes.count)")
        }
        guard shots >= 1 else { throw FewShotError(field: "--shots", message: "expected at least 1 support example per class, got \(shots)") }
        guard queries >= 1 else { throw FewShotError(field: "--queries", message: "expected at least 1 query per class, got \(queries)") }
        var rows: [Int: [Int]] = [:]
        for (row, label) in labels.enumerated() where classes.contains(label) { rows[label, default: []].append(row) }
        for k in classes {
            let available = rows[k]?.count ?? 0
            guard available >= shots + queries else {
                throw FewShotError(field: available == 0 ? "--classes" : "--queries",
                                   message: "class \(k) has \(available) example(s) in the pool; \(shots) shot(s) + \(queries) queries need \(shots + queries)")
            }
        }
        self.classes = classes
        self.ways = ways
        self.shots = shots
        self.queries = queries
        self.seed = seed
        self.rowsByClass = rows
    }

    /// Episode `index`: a partial Fisher–Yates draw of the classes, then of each class's rows.
    public func episode(_ index: Int) -> Episode {
        var generator = SplitMix64(seed: SplitMix64.mix(seed, UInt64(index), 0xFE57))
        func draw(_ items: [Int], _ count: Int) -> [Int] {
            var items = items
            for i in 0..<count { items.swapAt(i, i + generator.next(below: items.count - i)) }
            return Array(items[..<count])
        }
        let chosen = draw(classes, ways)
        var support: [[Int]] = [], queryRows: [[Int]] = []
        for k in chosen {
            let rows = draw(rowsByClass[k] ?? [], shots + queries)
            support.append(Array(rows[..<shots]))
            queryRows.append(Array(rows[shots...]))
        }
        return Episode(classes: chosen, support: support, queries: queryRows)
    }
}

/// Embeddings (or pre-computed inputs of a group) of a pool of images, one row per image.
public struct EmbeddingPool: Sendable {
    /// `count × dimension` values, row-major.
    public var rows: [Float]
    /// Each row's dataset class.
    public var labels: [Int]
    /// The shape of one row (`[dimension]` for embeddings, a feature map's shape for group inputs).
    public var rowShape: [Int]

    /// Creates a pool.
    public init(rows: [Float], labels: [Int], rowShape: [Int]) {
        precondition(rows.count == labels.count * rowShape.reduce(1, *), "EmbeddingPool: \(rows.count) values for \(labels.count) rows of \(rowShape)")
        self.rows = rows
        self.labels = labels
        self.rowShape = rowShape
    }

    /// Values per row.
    public var rowSize: Int { rowShape.reduce(1, *) }

    /// The rows at `indices`, concatenated.
    public func gather(_ indices: [Int]) -> [Float] {
        let size = rowSize
        var result = [Float](repeating: 0, count: indices.count * size)
        rows.withUnsafeBufferPointer { source in
            result.withUnsafeMutableBufferPointer { target in
                for (i, row) in indices.enumerated() {
                    (target.baseAddress! + i * size).update(from: source.baseAddress! + row * size, count: size)
                }
            }
        }
        return result
    }
}

/// The result of one N-way k-shot evaluation.
public struct FewShotResult: Codable, Equatable, Sendable {
    /// Classes per episode.
    public var ways: Int
    /// Support examples per class.
    public var shots: Int
    /// Queries per class.
    public var queries: Int
    /// Episodes evaluated.
    public var episodes: Int
    /// Mean query accuracy over episodes, in [0, 1].
    public var accuracy: Double
    /// Half width of the 95% interval of `accuracy` (1.96 · sd / √episodes).
    public var interval95: Double
    /// Standard deviation of the per-episode accuracy.
    public var standardDeviation: Double

    enum CodingKeys: String, CodingKey {
        case ways, shots, queries, episodes, accuracy
        case interval95 = "interval_95"
        case standardDeviation = "standard_deviation"
    }
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
