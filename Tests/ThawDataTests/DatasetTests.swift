// Tests for InMemoryDataset, subsets and BatchAssembler.
import Testing
import ThawData

@Suite struct DatasetTests {
    /// Three samples of shape [2]: sample i holds (10i, 10i + 1) and label i.
    static let dataset = InMemoryDataset(features: [0, 1, 10, 11, 20, 21], labels: [0, 1, 2], sampleShape: [2], classCount: 3)

    @Test func copiesSamplesAndLabels() {
        let dataset = DatasetTests.dataset
        #expect(dataset.count == 3)
        #expect(dataset.sampleSize == 2)
        #expect(dataset.sample(1) == [10, 11])
        #expect(dataset.label(2) == 2)
    }

    @Test func subsetAndPrefixSelectSamples() {
        let subset = DatasetTests.dataset.subset([2, 0, 2])
        #expect(subset.count == 3)
        #expect(subset.sample(0) == [20, 21])
        #expect(subset.sample(1) == [0, 1])
        #expect((0..<3).map { subset.label($0) } == [2, 0, 2])
        #expect(subset.sampleShape == [2])
        #expect(subset.classCount == 3)
        let prefix = DatasetTests.dataset.prefix(2)
        #expect(prefix.count == 2)
        #expect(prefix.sample(1) == [10, 11])
        #expect(DatasetTests.dataset.prefix(10).count == 3)
    }

    @Test func assemblerFillsRowsAndZeroesPadding() {
        let indices: [Int?] = [2, nil, 0, nil]
        var features = [Float](repeating: 9, count: 8)
        var labels = [Int32](repeating: 9, count: 4)
        var weights = [Float](repeating: 9, count: 4)
        let real = features.withUnsafeMutableBufferPointer { featureBuffer in
            labels.withUnsafeMutableBufferPointer { labelBuffer in
                weights.withUnsafeMutableBufferPointer { weightBuffer in
                    BatchAssembler.fill(from: DatasetTests.dataset, indices: indices, features: featureBuffer.baseAddress!,
                                        labels: labelBuffer, weights: weightBuffer)
                }
            }
        }
        #expect(real == 2)
        #expect(features == [20, 21, 0, 0, 0, 1, 0, 0])
        #expect(labels == [2, 0, 0, 0])
        #expect(weights == [1, 0, 1, 0])
    }
}
