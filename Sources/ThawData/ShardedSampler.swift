// ShardedSampler: which samples each rank trains on at each step, identical plans on every rank.
//
// Note: sharding. Every rank computes the same epoch order, a permutation seeded by
// (seed, epoch). Step s's global batch is order[s*B ..< min((s+1)*B, size)]. Rank r takes the
// contiguous slice [r*L, (r+1)*L) of that batch, where L = ceil(B / worldSize) is the local batch
// capacity, and pads it with nil up to L. So every rank runs the same number of steps with the
// same batch capacity, the real entries of all ranks together are exactly the global batch, and
// the last ranks' slices may be short or empty (all padding) on the final step of an epoch.
// Because the global batch does not depend on worldSize, N ranks see the same batches as 1 rank.
//

import ThawKernels

/// Shuffling with ThawKernels' SplitMix64, so orders are reproducible on every platform.
extension SplitMix64 {
    /// A uniform integer in `0..<bound` (Lemire's multiply-and-reject, unbiased); `bound` must be positive.
    public mutating func next(below bound: Int) -> Int {
        let range = UInt64(bound)
        var product = next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold { product = next().multipliedFullWidth(by: range) }
        }
        return Int(product.high)
    }

    /// A permutation of `0..<count` (Fisher–Yates), reproducible from `seed`.
    public static func permutation(count: Int, seed: UInt64) -> [Int] {
        var generator = SplitMix64(seed: seed)
        var order = Array(0..<count)
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) {
                order.swapAt(i, generator.next(below: i + 1))
            }
        }
        return order
    }

    /// Mixes a seed and an epoch into one well-spread seed.
    public static func epochSeed(_ seed: UInt64, epoch: Int) -> UInt64 {
        var generator = SplitMix64(seed: seed ^ 0x5348_5546_464C_4521)
        generator.state ^= UInt64(truncatingIfNeeded: epoch) &* 0xD6E8_FEB8_6659_FD93
        return generator.next()
    }
}

/// The training plan of one rank: for each epoch and step, the dataset indices of its local batch.
///
/// See "Note: sharding" in this file. The sampler caches the order of the last epoch it was asked
/// about, so asking for every step of an epoch costs one shuffle.
public final class ShardedSampler {
    /// The number of samples in the dataset.
    public let datasetSize: Int
    /// The number of ranks sharing each global batch.
    public let worldSize: Int
    /// This rank.
    public let rank: Int
    /// The number of samples in a full global batch, summed over ranks.
    public let globalBatchSize: Int
    /// The run's seed; each epoch's order is seeded by (seed, epoch).
    public let seed: UInt64
    /// Whether epochs are shuffled; if false every epoch visits samples in index order.
    public let shuffle: Bool
    private var cachedEpoch: Int?
    private var cachedOrder: [Int] = []

    /// Creates the plan for one rank.
    /// - Parameters:
    ///   - datasetSize: The number of samples (may be 0).
    ///   - worldSize: The number of ranks (at least 1).
    ///   - rank: This rank, in `0..<worldSize`.
    ///   - globalBatchSize: Samples per step over all ranks (at least 1).
    ///   - seed: The run's seed.
    ///   - shuffle: Whether to shuffle each epoch.
    public init(datasetSize: Int, worldSize: Int, rank: Int, globalBatchSize: Int, seed: UInt64, shuffle: Bool) {
        precondition(datasetSize >= 0, "datasetSize \(datasetSize) is negative")
        precondition(worldSize >= 1, "worldSize \(worldSize) must be at least 1")
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) is not in 0..<\(worldSize)")
        precondition(globalBatchSize >= 1, "globalBatchSize \(globalBatchSize) must be at least 1")
        self.datasetSize = datasetSize
        self.worldSize = worldSize
        self.rank = rank
        self.globalBatchSize = globalBatchSize
        self.seed = seed
        self.shuffle = shuffle
    }

    /// The number of steps in every epoch, the same on every rank: ceil(datasetSize / globalBatchSize).
    public var stepsPerEpoch: Int { ceilingDivision(datasetSize, globalBatchSize) }

    /// The length of every local batch, real entries plus padding: ceil(globalBatchSize / worldSize).
    public var localBatchCapacity: Int { ceilingDivision(globalBatchSize, worldSize) }

    /// The order in which epoch `epoch` visits the dataset (a permutation of `0..<datasetSize`).
    public func epochOrder(_ epoch: Int) -> [Int] {
        if cachedEpoch != epoch {
            cachedOrder = shuffle
                ? SplitMix64.permutation(count: datasetSize, seed: SplitMix64.epochSeed(seed, epoch: epoch))
                : Array(0..<datasetSize)
            cachedEpoch = epoch
        }
        return cachedOrder
    }

    /// The dataset indices of the whole global batch of a step (all ranks together).
    public func globalBatch(epoch: Int, step: Int) -> ArraySlice<Int> {
        precondition(step >= 0 && step < stepsPerEpoch, "step \(step) is not in 0..<\(stepsPerEpoch)")
        let start = step * globalBatchSize   // < datasetSize, since step < stepsPerEpoch
        return epochOrder(epoch)[start..<(start + min(globalBatchSize, datasetSize - start))]
    }

    /// The number of real samples in a step's global batch, summed over ranks (divide losses by this).
    public func globalRealCount(epoch: Int, step: Int) -> Int {
        precondition(step >= 0 && step < stepsPerEpoch, "step \(step) is not in 0..<\(stepsPerEpoch)")
        return min(globalBatchSize, datasetSize - step * globalBatchSize)
    }

    /// This rank's local batch: exactly `localBatchCapacity` entries, dataset indices then nil padding.
    public func localBatch(epoch: Int, step: Int) -> [Int?] {
        let batch = globalBatch(epoch: epoch, step: step)
        let capacity = localBatchCapacity
        // Clamped by subtraction, so no size near Int.max overflows.
        let start = batch.startIndex + min(CheckedSize.product(rank, capacity) ?? batch.count, batch.count)
        let end = start + min(capacity, batch.endIndex - start)
        var local: [Int?] = batch[start..<end].map { $0 }
        local.append(contentsOf: repeatElement(nil, count: capacity - local.count))
        return local
    }
}

/// Evaluation sharding: each rank scores a disjoint contiguous slice, every sample exactly once.
///
/// Rank r gets `[r*size/worldSize, (r+1)*size/worldSize)`. All ranks run the same number of
/// steps (enough for the longest slice), padding with nil, so collective calls stay in step.
public struct EvaluationSharder: Sendable {
    /// The number of samples evaluated.
    public let datasetSize: Int
    /// The number of ranks.
    public let worldSize: Int
    /// This rank.
    public let rank: Int
    /// The length of every local batch, real entries plus padding.
    public let localBatchCapacity: Int

    /// Creates the evaluation plan of one rank.
    /// - Parameters:
    ///   - datasetSize: The number of samples (may be 0).
    ///   - worldSize: The number of ranks (at least 1).
    ///   - rank: This rank, in `0..<worldSize`.
    ///   - localBatchCapacity: Samples per step on each rank (at least 1).
    public init(datasetSize: Int, worldSize: Int, rank: Int, localBatchCapacity: Int) {
        precondition(datasetSize >= 0, "datasetSize \(datasetSize) is negative")
        precondition(worldSize >= 1, "worldSize \(worldSize) must be at least 1")
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) is not in 0..<\(worldSize)")
        precondition(localBatchCapacity >= 1, "localBatchCapacity \(localBatchCapacity) must be at least 1")
        self.datasetSize = datasetSize
        self.worldSize = worldSize
        self.rank = rank
        self.localBatchCapacity = localBatchCapacity
    }

    /// The dataset indices this rank evaluates.
    public var range: Range<Int> { slice(of: rank) }

    /// The number of steps, the same on every rank: enough for the longest slice.
    public var stepCount: Int {
        let longest = (0..<worldSize).map { slice(of: $0).count }.max() ?? 0
        return ceilingDivision(longest, localBatchCapacity)
    }

    /// This rank's batch at `step`: exactly `localBatchCapacity` entries, indices then nil padding.
    public func localBatch(step: Int) -> [Int?] {
        precondition(step >= 0 && step < stepCount, "step \(step) is not in 0..<\(stepCount)")
        let mine = range
        let start = mine.lowerBound + min(step * localBatchCapacity, mine.count)
        let end = start + min(localBatchCapacity, mine.upperBound - start)
        var local: [Int?] = (start..<end).map { $0 }
        local.append(contentsOf: repeatElement(nil, count: localBatchCapacity - local.count))
        return local
    }

    private func slice(of rank: Int) -> Range<Int> {
        boundary(rank)..<boundary(rank + 1)
    }

    /// rank × datasetSize / worldSize, in double width so that no size overflows.
    private func boundary(_ rank: Int) -> Int {
        let product = datasetSize.multipliedFullWidth(by: rank)
        return worldSize.dividingFullWidth((high: product.high, low: product.low)).quotient
    }
}

/// ceil(a / b) for a ≥ 0 and b ≥ 1, without the overflow of (a + b − 1) / b when a is near Int.max.
func ceilingDivision(_ a: Int, _ b: Int) -> Int {
    a / b + (a % b == 0 ? 0 : 1)
}
