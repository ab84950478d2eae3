// Tests for ShardedSampler and EvaluationSharder: the sharding invariants for 1, 2 and 3 ranks.
import Testing
import ThawData
import ThawKernels

@Suite struct ShardedSamplerTests {
    static let sizes = [0, 1, 7, 10, 61]
    static let batchSizes = [1, 3, 4, 10, 16]

    @Test(arguments: [1, 2, 3]) func ranksTogetherCoverEachGlobalBatchExactlyOnce(worldSize: Int) {
        for size in ShardedSamplerTests.sizes {
            for batch in ShardedSamplerTests.batchSizes {
                let samplers = (0..<worldSize).map {
                    ShardedSampler(datasetSize: size, worldSize: worldSize, rank: $0, globalBatchSize: batch, seed: 5, shuffle: true)
                }
                let reference = ShardedSampler(datasetSize: size, worldSize: 1, rank: 0, globalBatchSize: batch, seed: 5, shuffle: true)
                let context = "size \(size), batch \(batch), world \(worldSize)"
                #expect(samplers.allSatisfy { $0.stepsPerEpoch == (size + batch - 1) / batch }, "\(context)")
                let capacity = (batch + worldSize - 1) / worldSize
                for epoch in 0..<2 {
                    var seen: [Int] = []
                    for step in 0..<reference.stepsPerEpoch {
                        let locals = samplers.map { $0.localBatch(epoch: epoch, step: step) }
                        #expect(locals.allSatisfy { $0.count == capacity }, "\(context)")
                        let real = locals.flatMap { $0.compactMap { $0 } }
                        // Concatenated in rank order, the real entries are the global batch, which is the same for any world size.
                        #expect(real == Array(samplers[0].globalBatch(epoch: epoch, step: step)), "\(context), step \(step)")
                        #expect(real == Array(reference.globalBatch(epoch: epoch, step: step)), "\(context), step \(step)")
                        #expect(Set(real).count == real.count, "\(context): ranks overlap")
                        let realCount = samplers[0].globalRealCount(epoch: epoch, step: step)
                        #expect(real.count == realCount)
                        #expect(locals.map { $0.filter { $0 == nil }.count }.reduce(0, +) == capacity * worldSize - realCount)
                        // Padding only at the end of a local batch.
                        for local in locals {
                            let firstPad = local.firstIndex(where: { $0 == nil }) ?? local.count
                            #expect(local[firstPad...].allSatisfy { $0 == nil })
                        }
                        seen += real
                    }
                    #expect(seen.sorted() == Array(0..<size), "\(context), epoch \(epoch): not every sample exactly once")
                }
            }
        }
    }

    @Test func orderIsDeterministicPerSeedAndEpoch() {
        let a = ShardedSampler(datasetSize: 100, worldSize: 2, rank: 1, globalBatchSize: 8, seed: 42, shuffle: true)
        let b = ShardedSampler(datasetSize: 100, worldSize: 2, rank: 1, globalBatchSize: 8, seed: 42, shuffle: true)
        for step in [0, 5, 12] {
            #expect(a.localBatch(epoch: 3, step: step) == b.localBatch(epoch: 3, step: step))
        }
        // Asking about other epochs in between does not change an epoch's order.
        let before = a.epochOrder(1)
        _ = a.epochOrder(2)
        #expect(a.epochOrder(1) == before)
        #expect(a.epochOrder(1) != a.epochOrder(2))
        let otherSeed = ShardedSampler(datasetSize: 100, worldSize: 2, rank: 1, globalBatchSize: 8, seed: 43, shuffle: true)
        #expect(otherSeed.epochOrder(1) != a.epochOrder(1))
        #expect(a.epochOrder(0) != Array(0..<100))
    }

    @Test func unshuffledOrderIsIndexOrder() {
        let sampler = ShardedSampler(datasetSize: 10, worldSize: 3, rank: 2, globalBatchSize: 7, seed: 1, shuffle: false)
        #expect(sampler.epochOrder(4) == Array(0..<10))
        #expect(sampler.localBatchCapacity == 3)
        #expect(sampler.localBatch(epoch: 0, step: 0) == [6, nil, nil])
        #expect(sampler.localBatch(epoch: 0, step: 1) == [nil, nil, nil])
        #expect(sampler.globalRealCount(epoch: 0, step: 1) == 3)
    }

    @Test func permutationIsAPermutationAndPlatformIndependent() {
        let order = SplitMix64.permutation(count: 1000, seed: 7)
        #expect(order.sorted() == Array(0..<1000))
        // SplitMix64 reference value for seed 0 (the published first output).
        var generator = SplitMix64(seed: 0)
        #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
        var bounded = SplitMix64(seed: 3)
        #expect((0..<1000).allSatisfy { _ in (0..<7).contains(bounded.next(below: 7)) })
    }

    @Test(arguments: [1, 2, 3]) func evaluationCountsEverySampleOnce(worldSize: Int) {
        for size in [0, 1, 5, 10, 11, 100] {
            for capacity in [1, 3, 4, 64] {
                let sharders = (0..<worldSize).map {
                    EvaluationSharder(datasetSize: size, worldSize: worldSize, rank: $0, localBatchCapacity: capacity)
                }
                let steps = sharders[0].stepCount
                #expect(sharders.allSatisfy { $0.stepCount == steps })
                var seen: [Int] = []
                for sharder in sharders {
                    var mine: [Int] = []
                    for step in 0..<steps {
                        let batch = sharder.localBatch(step: step)
                        #expect(batch.count == capacity)
                        mine += batch.compactMap { $0 }
                    }
                    #expect(mine == Array(sharder.range), "rank \(sharder.rank) must cover its contiguous slice")
                    seen += mine
                }
                #expect(seen == Array(0..<size), "size \(size), capacity \(capacity), world \(worldSize)")
                // Enough steps for the longest slice, and no step is padding on every rank.
                if steps > 0 {
                    #expect(sharders.contains { $0.localBatch(step: steps - 1).contains { $0 != nil } })
                }
            }
        }
    }
}
