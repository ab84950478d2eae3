// ImageAugmentation: seeded random crop with padding and horizontal flip, applied in place to a
// batch of [C, H, W] images after they are assembled.
//
// Every random choice is keyed by (seed, epoch, sample index), never by rank or position in the
// batch, so a sample is augmented the same way whichever rank draws it: N ranks see exactly the
// batches one process sees, and a resumed run sees exactly what the uninterrupted one did.
// Padding repeats the border pixels (for Fashion-MNIST, whose borders are black, that is the
// same as torchvision's zero padding before normalization).
import ThawKernels

/// Random crop with padding and horizontal flip for image batches.
public final class ImageAugmentation {
    /// Pixels of padding on each side before the random crop back to the original size (0 = no crop).
    public let cropPadding: Int
    /// Whether to flip each image left-right with probability ½.
    public let horizontalFlip: Bool
    /// The run's seed.
    public let seed: UInt64
    private var scratch: [Float] = []

    /// Creates an augmentation.
    public init(cropPadding: Int, horizontalFlip: Bool, seed: UInt64) {
        precondition(cropPadding >= 0, "crop padding must be ≥ 0")
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
        self.seed = seed
    }

    /// Whether it changes anything.
    public var isIdentity: Bool { cropPadding == 0 && !horizontalFlip }

    /// The crop offset (each in `0...2 × cropPadding`) and flip for one sample in one epoch.
    public func choice(epoch: Int, sampleIndex: Int) -> (top: Int, left: Int, flip: Bool) {
        var generator = SplitMix64(seed: SplitMix64.mix(seed, 0xA06_3E47, UInt64(epoch), UInt64(sampleIndex)))
        let span = UInt64(2 * cropPadding + 1)
        let top = Int(generator.next() % span), left = Int(generator.next() % span)
        let flip = horizontalFlip && generator.next() & 1 == 1
        return (top, left, flip)
    }

    /// Augments the rows of a batch in place.
    /// - Parameters:
    ///   - batch: `[rows, C, H, W]` values.
    ///   - sampleShape: `[C, H, W]`.
    ///   - sampleIndices: Each row's dataset index, or nil for padding rows (left alone).
    ///   - epoch: The epoch, which keys the random choices with the seed and the sample index.
    public func apply(to batch: UnsafeMutablePointer<Float>, sampleShape: [Int], sampleIndices: [Int?], epoch: Int) {
        guard !isIdentity else { return }
        precondition(sampleShape.count == 3, "augmentation needs [C, H, W] images, not \(sampleShape)")
        // Legend: C channels, H×W image, P padding.
        let (C, H, W, P) = (sampleShape[0], sampleShape[1], sampleShape[2], cropPadding)
        if scratch.count < C * H * W { scratch = [Float](repeating: 0, count: C * H * W) }
        scratch.withUnsafeMutableBufferPointer { copy in
            guard let source = copy.baseAddress else { return }
            for (row, index) in sampleIndices.enumerated() {
                guard let index else { continue }
                let image = batch + row * C * H * W
                let (top, left, flip) = choice(epoch: epoch, sampleIndex: index)
                // Output pixel (y, x) reads padded pixel (y + top, x + left), i.e. source (y + top − P, x + left − P),
                // clamped to the border; with a flip, x is mirrored first.
                let shiftY = top - P, shiftX = left - P
                if shiftY == 0 && shiftX == 0 && !flip { continue }
                source.update(from: image, count: C * H * W)
                for channel in 0..<C {
                    let plane = source + channel * H * W
                    let out = image + channel * H * W
                    for y in 0..<H {
                        let sourceRow = plane + min(max(y + shiftY, 0), H - 1) * W
                        let outRow = out + y * W
                        for x in 0..<W {
                            let column = flip ? W - 1 - x : x
                            outRow[x] = sourceRow[min(max(column + shiftX, 0), W - 1)]
                        }
                    }
                }
            }
        }
    }
}
