// FewShotEpisodes: the parts of few-shot evaluation that need no model: prototypes and distances,
// the seeded episode sampler, the embedded pool, and a mean with its 95% interval (FewShot.swift
// has the evaluator that embeds and fine-tunes).
import Foundation
import ThawKernels

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
