// Tests for the on-the-fly image transform used with pretrained backbones.
import Testing
import ThawData

@Suite struct ImageTransformTests {
    /// A 1×2×2 image with pixels 0, 1, 2, 3 (already in [0, 1] units, source normalization identity).
    let image = InMemoryDataset(features: [0, 1, 2, 3], labels: [4], sampleShape: [1, 2, 2], classCount: 5)

    func transformed(size: Int, channels: Int, normalization: PixelNormalization) -> [Float] {
        let dataset = TransformedImageDataset(base: image, sourceNormalization: (0, 1), size: size, channels: channels,
                                              normalization: normalization)
        var out = [Float](repeating: .nan, count: channels * size * size)
        out.withUnsafeMutableBufferPointer { dataset.copySample(0, into: $0.baseAddress!) }
        #expect(dataset.sampleShape == [channels, size, size])
        #expect(dataset.label(0) == 4 && dataset.classCount == 5)
        return out
    }

    @Test func bilinearUpsamplingMatchesHandComputedValues() {
        // 2→4 with half-pixel centers (torchvision's align_corners=False): source coordinates
        // -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel).
        let out = transformed(size: 4, channels: 1, normalization: PixelNormalization(mean: [0], standardDeviation: [1]))
        let row0: [Float] = [0, 0.25, 0.75, 1]
        #expect(Array(out[0..<4]) == row0)
        // Row 1 sits at y = 0.25: a quarter of the way from row 0 (0, 1) to row 1 (2, 3).
        #expect(Array(out[4..<8]) == row0.map { $0 + 0.5 })
        #expect(Array(out[12..<16]) == row0.map { $0 + 2 })
    }

    @Test func grayscaleRepeatsAndNormalizesPerChannel() {
        let out = transformed(size: 2, channels: 3, normalization: .imageNet)
        for channel in 0..<3 {
            let expected = [0, 1, 2, 3].map { (Float($0) - PixelNormalization.imageNet.mean[channel]) / PixelNormalization.imageNet.standardDeviation[channel] }
            #expect(Array(out[(channel * 4)..<(channel * 4 + 4)]) == expected)
        }
    }

    @Test func sourceNormalizationIsUndoneFirst() {
        // Pixels stored as (p − 0.5) / 2 come back as p before the output normalization.
        let stored = InMemoryDataset(features: [-0.25, 0.25], labels: [0], sampleShape: [1, 1, 2], classCount: 1)
        let dataset = TransformedImageDataset(base: stored, sourceNormalization: (0.5, 2), size: 1, channels: 1,
                                              normalization: PixelNormalization(mean: [0], standardDeviation: [1]))
        var out: [Float] = [0]
        out.withUnsafeMutableBufferPointer { dataset.copySample(0, into: $0.baseAddress!) }
        // One output pixel at source x = 0.5: halfway between p = 0 and p = 1.
        #expect(out == [0.5])
    }
}
