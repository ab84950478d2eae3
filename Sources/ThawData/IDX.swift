// IDX: the MNIST file format (big-endian header, then raw bytes).
//
// Layout: two zero bytes, a type byte (0x08 = unsigned byte, the only type MNIST-style files
// use), a dimension count n, then n big-endian UInt32 extents, then the product of the extents
// in elements. Images are magic 0x00000803 (n = 3: count, rows, columns), labels 0x00000801.
// The parser checks every length before reading, so arbitrary bytes give an error, never a crash.

/// The contents of one IDX file of unsigned bytes: its extents and its row-major elements.
public struct IDXArray: Sendable, Equatable {
    /// The extent of each dimension, outermost first.
    public var dimensions: [Int]
    /// The elements, row-major; their number is the product of `dimensions`.
    public var bytes: [UInt8]

    /// Creates an array from extents and elements.
    public init(dimensions: [Int], bytes: [UInt8]) {
        self.dimensions = dimensions
        self.bytes = bytes
    }
}

/// Reading IDX files (plain or gzip-compressed).
public enum IDXReader {
    /// The magic number of an IDX file of unsigned-byte images: 3 dimensions.
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// The magic number of an IDX file of unsigned-byte labels: 1 dimension.
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// Reads an IDX file, inflating it first if it is gzip-compressed.
    /// - Parameters:
    ///   - path: The file to read.
    ///   - expectedMagic: If given, the file's magic number must equal it (``imagesMagic``, ``labelsMagic``).
    /// - Throws: ``DataError`` naming the file.
    public static func read(_ path: String, expectedMagic: UInt32? = nil) throws(DataError) -> IDXArray {
        try parse(Gzip.readFile(path), file: path, expectedMagic: expectedMagic)
    }

    /// Parses the bytes of an IDX file.
    /// - Parameters:
    ///   - bytes: The whole (uncompressed) file.
    ///   - file: Where the bytes came from, for errors.
    ///   - expectedMagic: If given, the magic number must equal it.
    /// - Throws: ``DataError`` with kind `.badMagic`, `.unsupported`, `.truncated` or `.sizeMismatch`.
    public static func parse(_ bytes: [UInt8], file: String, expectedMagic: UInt32? = nil) throws(DataError) -> IDXArray {
        guard bytes.count >= 4 else {
            throw DataError(file: file, kind: .truncated, detail: "\(bytes.count) bytes is too short for an IDX magic number")
        }
        let magic = bigEndianUInt32(bytes, at: 0)
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DataError(file: file, kind: .badMagic, detail: "magic \(hex(magic)) is not an IDX file (must start with two zero bytes)")
        }
        if let expectedMagic, magic != expectedMagic {
            throw DataError(file: file, kind: .badMagic, detail: "magic \(hex(magic)), expected \(hex(expectedMagic))")
        }
        guard bytes[2] == 0x08 else {
            throw DataError(file: file, kind: .unsupported, detail: "IDX element type 0x\(String(bytes[2], radix: 16)) is not unsigned byte (0x08)")
        }
        let rank = Int(bytes[3])
        let headerSize = 4 + 4 * rank
        guard rank >= 1 else {
            throw DataError(file: file, kind: .badMagic, detail: "IDX file declares zero dimensions")
        }
        guard bytes.count >= headerSize else {
            throw DataError(file: file, kind: .truncated, detail: "header needs \(headerSize) bytes for \(rank) dimensions, file has \(bytes.count)")
        }
        var dimensions: [Int] = []
        var elementCount = 1
        for d in 0..<rank {
            let extent = Int(bigEndianUInt32(bytes, at: 4 + 4 * d))
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: extent)
            guard !overflow else {
                throw DataError(file: file, kind: .sizeMismatch, detail: "dimensions overflow the element count")
            }
            dimensions.append(extent)
            elementCount = product
        }
        let available = bytes.count - headerSize
        guard available >= elementCount else {
            throw DataError(file: file, kind: .truncated, detail: "dimensions \(dimensions) need \(elementCount) bytes of data, file has \(available)")
        }
        guard available == elementCount else {
            throw DataError(file: file, kind: .sizeMismatch, detail: "dimensions \(dimensions) need \(elementCount) bytes of data, file has \(available) (\(available - elementCount) extra)")
        }
        return IDXArray(dimensions: dimensions, bytes: Array(bytes[headerSize...]))
    }

    static func bigEndianUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
