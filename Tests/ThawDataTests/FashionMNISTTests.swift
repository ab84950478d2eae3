// Tests for FashionMNIST against the files of the Debian package dataset-fashion-mnist, and for
// malformed look-alike files (each error names the file).
import Foundation
import Testing
import ThawData

@Suite struct FashionMNISTTests {
    @Test func testSplitHasKnownLabels() throws {
        let test = try FashionMNIST.load(.test)
        #expect(test.count == 10_000)
        #expect(test.sampleShape == [1, 28, 28])
        #expect(test.classCount == 10)
        #expect((0..<10).map { test.label($0) } == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
        // Pixel 0 of every image is black: (0 - mean) / std.
        #expect(abs(test.sample(0)[0] - (-0.2860 / 0.3530)) < 1e-6)
        // Every class appears 1,000 times in the test split.
        var counts = [Int](repeating: 0, count: 10)
        for label in test.labels { counts[Int(label)] += 1 }
        #expect(counts == [Int](repeating: 1000, count: 10))
    }

    @Test func trainSplitIsNormalized() throws {
        let train = try FashionMNIST.load(.train)
        #expect(train.count == 60_000)
        #expect(train.pixels.count == 60_000 * 784)
        var sum = 0.0
        var squares = 0.0
        var sample = [Float](repeating: 0, count: 784)
        for index in 0..<train.count {
            sample.withUnsafeMutableBufferPointer { train.copySample(index, into: $0.baseAddress!) }
            for value in sample {
                sum += Double(value)
                squares += Double(value) * Double(value)
            }
        }
        let mean = sum / Double(train.pixels.count)
        let variance = squares / Double(train.pixels.count) - mean * mean
        // Bytes normalize on copy exactly as FashionMNIST.normalize does.
        #expect(train.sample(7) == FashionMNIST.normalize(Array(train.pixels[(7 * 784)..<(8 * 784)])))
        // The documented constants are the training set's statistics to 4 digits.
        #expect(abs(mean) < 1e-3)
        #expect(abs(variance.squareRoot() - 1) < 1e-3)
    }

    @Test func missingFolderGivesHint() throws {
        let error = try #require(throws: DataError.self) { try FashionMNIST.load(.test, directory: "/nonexistent/fashion") }
        #expect(error.kind == .notFound)
        #expect(error.file == "/nonexistent/fashion")
        #expect(error.description.contains("apt-get install dataset-fashion-mnist"))
    }

    @Test func normalizeMapsBlackAndWhite() {
        let values = FashionMNIST.normalize([0, 255])
        #expect(abs(values[0] - (0 - 0.2860) / 0.3530) < 1e-6)
        #expect(abs(values[1] - (1 - 0.2860) / 0.3530) < 1e-6)
    }

    @Test func folderWithoutFilesNamesTheFile() throws {
        let error = try #require(throws: DataError.self) { try FashionMNIST.load(.train, directory: "/tmp") }
        #expect(error.kind == .notFound)
        #expect(error.file == "/tmp/train-images-idx3-ubyte.gz")
    }

    /// A folder of IDX files that look like Fashion-MNIST but are not: each case names the bad file.
    @Test func malformedFilesNameTheFileAndTheProblem() throws {
        let directory = try FormatTestSupport.temporaryDirectory()
        defer { FormatTestSupport.removeDirectory(directory) }
        let images = directory + "/t10k-images-idx3-ubyte", labels = directory + "/t10k-labels-idx1-ubyte"
        func write(images count: UInt32, side: UInt32 = 28, labels values: [UInt8], imageMagic: UInt8 = 3) throws {
            var imageBytes = IDXTests.header([count, side, side])
            imageBytes[3] = imageMagic
            imageBytes += [UInt8](repeating: 128, count: Int(count * side * side))
            try Data(imageBytes).write(to: URL(fileURLWithPath: images))
            try Data(IDXTests.header([UInt32(values.count)]) + values).write(to: URL(fileURLWithPath: labels))
        }
        try write(images: 3, labels: [0, 9, 4])
        #expect(try FashionMNIST.load(.test, directory: directory).count == 3)

        let cases: [(write: () throws -> Void, file: String, detail: String)] = [
            ({ try write(images: 3, labels: [0, 9]) }, labels, "expected [3]"),
            ({ try write(images: 2, labels: [0, 12]) }, labels, "label 12 of sample 1"),
            ({ try write(images: 2, side: 14, labels: [0, 1]) }, images, "expected [count, 28, 28]"),
            ({ try write(images: 2, labels: [0, 1], imageMagic: 1) }, images, "magic 0x00000801, expected 0x00000803"),
            ({ try Data([0x1f, 0x8b, 8, 0, 1, 2, 3]).write(to: URL(fileURLWithPath: images + ".gz")) }, images + ".gz", "truncated"),
        ]
        for (index, item) in cases.enumerated() {
            try item.write()
            let error = try #require(throws: DataError.self, "case \(index)") { try FashionMNIST.load(.test, directory: directory) }
            #expect(error.file == item.file && error.description.contains(item.detail), "case \(index): \(error)")
        }
    }
}
