// FashionMNIST: loads Zalando's Fashion-MNIST from the Debian package's IDX files.
//
// `apt-get install dataset-fashion-mnist` puts the four gzip-compressed IDX files in
// /usr/share/datasets/fashion-mnist. Images become [1, 28, 28] Float samples: pixels scaled to
// [0, 1], then normalized with the training set's mean 0.2860 and standard deviation 0.3530
// (the values commonly used for Fashion-MNIST), so inputs are roughly zero-mean, unit-variance.

import Foundation

/// Fashion-MNIST: 60,000 training and 10,000 test grayscale 28×28 images of 10 clothing classes.
public enum FashionMNIST {
    /// Which half of the dataset to load.
    public enum Split: String, Sendable, CaseIterable {
        /// The 60,000 training images (`train-*`).
        case train
        /// The 10,000 test images (`t10k-*`).
        case test

        var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    /// Where the Debian package `dataset-fashion-mnist` installs the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    /// The mean pixel value of the training set, after scaling to [0, 1].
    public static let mean: Float = 0.2860
    /// The standard deviation of the training set's pixels, after scaling to [0, 1].
    public static let standardDeviation: Float = 0.3530
    /// The shape of one sample: one channel, 28 rows, 28 columns.
    public static let sampleShape = [1, 28, 28]
    /// The class names, by label.
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// Loads one split as normalized [1, 28, 28] samples with labels 0...9.
    /// - Parameters:
    ///   - split: `.train` or `.test`.
    ///   - directory: The folder holding `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]`.
    /// - Throws: ``DataError`` naming the file; a missing default folder carries an install hint.
    public static func load(_ split: Split, directory: String = defaultDirectory) throws(DataError) -> ByteImageDataset {
        let imagesPath = try locate("\(split.filePrefix)-images-idx3-ubyte", in: directory)
        let labelsPath = try locate("\(split.filePrefix)-labels-idx1-ubyte", in: directory)
        let images = try IDXReader.read(imagesPath, expectedMagic: IDXReader.imagesMagic)
        let labels = try IDXReader.read(labelsPath, expectedMagic: IDXReader.labelsMagic)
        guard images.dimensions.count == 3, images.dimensions[1] == 28, images.dimensions[2] == 28 else {
            throw DataError(file: imagesPath, kind: .sizeMismatch, detail: "images have dimensions \(images.dimensions), expected [count, 28, 28]")
        }
        guard labels.dimensions == [images.dimensions[0]] else {
            throw DataError(file: labelsPath, kind: .sizeMismatch,
                            detail: "labels have dimensions \(labels.dimensions), expected [\(images.dimensions[0])] to match \(imagesPath)")
        }
        if let bad = labels.bytes.firstIndex(where: { $0 >= 10 }) {
            throw DataError(file: labelsPath, kind: .badValue, detail: "label \(labels.bytes[bad]) of sample \(bad) is not in 0...9")
        }
        // Kept as bytes (47 MB for the training split instead of 188 MB as floats), normalized on copy.
        return ByteImageDataset(pixels: images.bytes, labels: labels.bytes.map { Int32($0) }, sampleShape: sampleShape,
                                classCount: classNames.count, scale: 1 / (255 * standardDeviation), shift: -mean / standardDeviation)
    }

    /// Maps pixel bytes to ((p / 255) − mean) / standardDeviation.
    public static func normalize(_ pixels: [UInt8]) -> [Float] {
        let scale = 1 / (255 * standardDeviation)
        let shift = mean / standardDeviation
        return [Float](unsafeUninitializedCapacity: pixels.count) { output, initialized in
            pixels.withUnsafeBufferPointer { input in
                for i in 0..<input.count { output[i] = Float(input[i]) * scale - shift }
            }
            initialized = pixels.count
        }
    }

    /// The path of `name.gz` or `name` in `directory`, whichever exists.
    static func locate(_ name: String, in directory: String) throws(DataError) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DataError(
                file: directory, kind: .notFound, detail: "Fashion-MNIST folder not found",
                hint: "install it with `apt-get install dataset-fashion-mnist` (which fills \(defaultDirectory)), "
                    + "or pass the folder holding \(name).gz")
        }
        for candidate in [name + ".gz", name] {
            let path = directory + "/" + candidate
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        throw DataError(file: directory + "/" + name + ".gz", kind: .notFound, detail: "Fashion-MNIST file missing",
                        hint: "reinstall with `apt-get install --reinstall dataset-fashion-mnist`")
    }
}
