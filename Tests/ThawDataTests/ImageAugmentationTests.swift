// ImageAugmentation against a direct reference (pad by repeating the border, crop, flip), and
// the properties training relies on: choices keyed by (seed, epoch, sample) only, every offset and
// both flips reachable, padding rows untouched.
import Testing
import ThawData

@Suite struct ImageAugmentationTests {
    /// The reference: build the padded image explicitly, crop the window, then mirror it.
    func reference(_ image: [Float], channels C: Int, height H: Int, width W: Int, padding P: Int,
                   top: Int, left: Int, flip: Bool) -> [Float] {
        let paddedH = H + 2 * P, paddedW = W + 2 * P
        var padded = [Float](repeating: 0, count: C * paddedH * paddedW)
        for c in 0..<C {
            for y in 0..<paddedH {
                for x in 0..<paddedW {
                    let sy = min(max(y - P, 0), H - 1), sx = min(max(x - P, 0), W - 1)
                    padded[(c * paddedH + y) * paddedW + x] = image[(c * H + sy) * W + sx]
                }
            }
        }
        var out = [Float](repeating: 0, count: C * H * W)
        for c in 0..<C {
            for y in 0..<H {
                for x in 0..<W {
                    let cropped = padded[(c * paddedH + y + top) * paddedW + x + left]
                    out[(c * H + y) * W + (flip ? W - 1 - x : x)] = cropped
                }
            }
        }
        return out
    }

    @Test func matchesPadCropFlipDoneTheLongWay() {
        let (C, H, W, P) = (2, 5, 7, 2)
        let augmentation = ImageAugmentation(cropPadding: P, horizontalFlip: true, seed: 11)
        let image = (0..<(C * H * W)).map { Float($0) * 0.5 - 3 }
        var seen = Set<String>()
        for sample in 0..<1000 {
            var batch = image
            batch.withUnsafeMutableBufferPointer { buffer in
                augmentation.apply(to: buffer.baseAddress!, sampleShape: [C, H, W], sampleIndices: [sample], epoch: 3)
            }
            let choice = augmentation.choice(epoch: 3, sampleIndex: sample)
            seen.insert("\(choice.top),\(choice.left),\(choice.flip)")
            #expect(batch == reference(image, channels: C, height: H, width: W, padding: P, top: choice.top, left: choice.left, flip: choice.flip),
                    "sample \(sample) with \(choice)")
        }
        // 5 × 5 offsets × 2 flips are all reachable.
        #expect(seen.count == 50, "only \(seen.count) of 50 crop/flip choices came up")
    }

    @Test func choicesDependOnSeedEpochAndSampleOnly() {
        let a = ImageAugmentation(cropPadding: 4, horizontalFlip: true, seed: 1)
        let b = ImageAugmentation(cropPadding: 4, horizontalFlip: true, seed: 1)
        let other = ImageAugmentation(cropPadding: 4, horizontalFlip: true, seed: 2)
        let samples = 0..<64
        #expect(samples.map { a.choice(epoch: 5, sampleIndex: $0) == b.choice(epoch: 5, sampleIndex: $0) }.allSatisfy { $0 })
        #expect(samples.filter { a.choice(epoch: 5, sampleIndex: $0) != a.choice(epoch: 6, sampleIndex: $0) }.count > 40)
        #expect(samples.filter { a.choice(epoch: 5, sampleIndex: $0) != other.choice(epoch: 5, sampleIndex: $0) }.count > 40)
        let flips = (0..<1000).filter { a.choice(epoch: 0, sampleIndex: $0).flip }.count
        #expect(flips > 430 && flips < 570, "\(flips) flips in 1000")
    }

    @Test func paddingRowsAndTheIdentityAreLeftAlone() {
        let shape = [1, 4, 4]
        var batch = (0..<32).map(Float.init)
        let original = batch
        ImageAugmentation(cropPadding: 0, horizontalFlip: false, seed: 3).apply(to: &batch, sampleShape: shape, sampleIndices: [0, 1], epoch: 0)
        #expect(batch == original)
        let flip = ImageAugmentation(cropPadding: 0, horizontalFlip: true, seed: 3)
        // Find a sample that flips, put it in row 0, and a padding row in row 1.
        let flipped = (0..<100).first { flip.choice(epoch: 0, sampleIndex: $0).flip } ?? 0
        flip.apply(to: &batch, sampleShape: shape, sampleIndices: [flipped, nil], epoch: 0)
        #expect(Array(batch[0..<4]) == [3, 2, 1, 0])
        #expect(Array(batch[16..<32]) == Array(original[16..<32]), "a padding row changed")
    }
}
