// NPY: NumPy's .npy array files (format versions 1.0 and 2.0).
//
// Layout: magic "\x93NUMPY", major and minor version bytes, the header length (UInt16 for 1.0,
// UInt32 for 2.0, little-endian), an ASCII Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }, then the raw elements.
// Supported: float32 ('<f4'), uint8 ('|u1'), int32 ('<i4') and int64 ('<i8'), little-endian, C order.
// `NPYWriter` writes float32 and int64 arrays (version 1.0 headers), atomically.
// Every length is checked before it is used, so arbitrary bytes give an error, never a crash.
import Foundation

/// An element type of an .npy file that Thaw reads.
public enum NPYDataType: String, Sendable, Equatable {
    /// 32-bit little-endian floats, descr '<f4'.
    case float32 = "<f4"
    /// Unsigned bytes, descr '|u1'.
    case uint8 = "|u1"
    /// 32-bit little-endian signed integers, descr '<i4' (token ids often come this way).
    case int32 = "<i4"
    /// 64-bit little-endian signed integers, descr '<i8'.
    case int64 = "<i8"

    /// The size of one element in bytes.
    public var byteCount: Int {
        switch self {
        case .float32: return 4
        case .uint8: return 1
        case .int32: return 4
        case .int64: return 8
        }
    }
}

/// The contents of one .npy file: element type, shape and raw little-endian elements.
public struct NPYArray: Sendable, Equatable {
    /// The element type.
    public var dataType: NPYDataType
    /// The extent of each dimension (empty for a scalar).
    public var shape: [Int]
    /// The raw elements, C order, little-endian: `elementCount * dataType.byteCount` bytes.
    public var data: [UInt8]

    /// The number of elements: the product of `shape`.
    public var elementCount: Int { shape.reduce(1, *) }

    /// The elements converted to Float (int64 values beyond 2^24 lose precision).
    public func floatValues() -> [Float] {
        data.withUnsafeBytes { raw in
            switch dataType {
            case .float32:
                return (0..<elementCount).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            case .uint8:
                return raw.map { Float($0) }
            case .int32:
                return (0..<elementCount).map { Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case .int64:
                return (0..<elementCount).map { Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
            }
        }
    }

    /// The elements as integers, or nil for a float32 array.
    public func integerValues() -> [Int64]? {
        data.withUnsafeBytes { raw in
            switch dataType {
            case .float32:
                return nil
            case .uint8:
                return raw.map { Int64($0) }
            case .int32:
                return (0..<elementCount).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case .int64:
                return (0..<elementCount).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            }
        }
    }
}

/// Reading .npy files.
public enum NPYReader {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"

    /// Reads an .npy file (gzip-compressed files are inflated first).
    /// - Parameter path: The file to read.
    /// - Throws: ``DataError`` naming the file.
    public static func read(_ path: String) throws(DataError) -> NPYArray {
        try parse(Gzip.readFile(path), file: path)
    }

    /// Parses the bytes of an .npy file.
    /// - Parameters:
    ///   - bytes: The whole file.
    ///   - file: Where the bytes came from, for errors.
    /// - Throws: ``DataError`` with kind `.badMagic`, `.truncated`, `.badHeader`, `.unsupported` or `.sizeMismatch`.
    public static func parse(_ bytes: [UInt8], file: String) throws(DataError) -> NPYArray {
        guard bytes.prefix(magic.count).elementsEqual(magic.prefix(min(bytes.count, magic.count))) else {
            throw DataError(file: file, kind: .badMagic, detail: "not an .npy file (does not start with \\x93NUMPY)")
        }
        guard bytes.count >= 10 else {
            throw DataError(file: file, kind: .truncated, detail: "\(bytes.count) bytes is too short for an .npy header")
        }
        let major = bytes[6]
        let minor = bytes[7]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2:
            guard bytes.count >= 12 else {
                throw DataError(file: file, kind: .truncated, detail: "\(bytes.count) bytes is too short for an .npy 2.0 header")
            }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw DataError(file: file, kind: .unsupported, detail: ".npy format version \(major).\(minor) is not supported (only 1.0 and 2.0)")
        }
        let dataStart = headerStart + headerLength
        guard bytes.count >= dataStart else {
            throw DataError(file: file, kind: .truncated, detail: "header of \(headerLength) bytes runs past the end of the file (\(bytes.count) bytes)")
        }

        var parser = HeaderParser(bytes: bytes[headerStart..<dataStart])
        let dictionary: [String: HeaderValue]
        do {
            dictionary = try parser.parseDictionary()
        } catch {
            throw DataError(file: file, kind: .badHeader, detail: "header dict: \(error.reason) at header byte \(error.offset)")
        }
        guard case .string(let descr)? = dictionary["descr"] else {
            throw DataError(file: file, kind: .badHeader, detail: "header has no string 'descr'")
        }
        guard case .bool(let fortranOrder)? = dictionary["fortran_order"] else {
            throw DataError(file: file, kind: .badHeader, detail: "header has no boolean 'fortran_order'")
        }
        guard case .tuple(let shape)? = dictionary["shape"] else {
            throw DataError(file: file, kind: .badHeader, detail: "header has no tuple 'shape'")
        }
        let normalized = descr == "<u1" || descr == "u1" ? "|u1" : descr
        guard let dataType = NPYDataType(rawValue: normalized) else {
            throw DataError(file: file, kind: .unsupported,
                            detail: "dtype '\(descr)' is not supported (only little-endian '<f4', '|u1', '<i4', '<i8')")
        }
        guard !fortranOrder else {
            throw DataError(file: file, kind: .unsupported, detail: "fortran_order True is not supported",
                            hint: "save a C-ordered array, e.g. np.save(path, np.ascontiguousarray(a))")
        }
        var elementCount = 1
        for extent in shape {
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: extent)
            guard !overflow else { throw DataError(file: file, kind: .sizeMismatch, detail: "shape \(shape) overflows the element count") }
            elementCount = product
        }
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dataType.byteCount)
        guard !overflow else { throw DataError(file: file, kind: .sizeMismatch, detail: "shape \(shape) overflows the byte count") }
        let available = bytes.count - dataStart
        guard available >= byteCount else {
            throw DataError(file: file, kind: .truncated, detail: "shape \(shape) of \(descr) needs \(byteCount) bytes of data, file has \(available)")
        }
        guard available == byteCount else {
            throw DataError(file: file, kind: .sizeMismatch,
                            detail: "shape \(shape) of \(descr) needs \(byteCount) bytes of data, file has \(available) (\(available - byteCount) extra)")
        }
        return NPYArray(dataType: dataType, shape: shape, data: Array(bytes[dataStart...]))
    }
}

/// Writing .npy files (format 1.0), atomically: a temporary file beside the target is renamed over it.
public enum NPYWriter {
    /// Writes float32 values as an array of `shape`.
    /// - Throws: ``DataError`` naming the file when the count does not match the shape or the write fails.
    public static func write(_ values: [Float], shape: [Int], to path: String) throws(DataError) {
        try write(bytes: values.withUnsafeBytes { Array($0) }, count: values.count, dataType: .float32, shape: shape, to: path)
    }

    /// Writes 64-bit integers as an array of `shape`.
    /// - Throws: ``DataError`` naming the file when the count does not match the shape or the write fails.
    public static func write(_ values: [Int64], shape: [Int], to path: String) throws(DataError) {
        try write(bytes: values.withUnsafeBytes { Array($0) }, count: values.count, dataType: .int64, shape: shape, to: path)
    }

    private static func write(bytes: [UInt8], count: Int, dataType: NPYDataType, shape: [Int], to path: String) throws(DataError) {
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw DataError(file: path, kind: .sizeMismatch, detail: "\(count) values do not fill shape \(shape)")
        }
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dataType.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        // The header is padded with spaces and ends in a newline so the data starts 64-byte aligned.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let length = header.utf8.count
        guard length <= Int(UInt16.max) else {
            throw DataError(file: path, kind: .sizeMismatch, detail: "shape \(shape) makes a header too long for .npy 1.0")
        }
        var file = NPYReader.magic + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(header.utf8)
        file += bytes
        do { try Data(file).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw DataError(file: path, kind: .unreadable, detail: "cannot write: \(error.localizedDescription)")
        }
    }
}

/// A value in an .npy header dict.
enum HeaderValue: Equatable {
    case string(String)
    case bool(Bool)
    case integer(Int)
    case tuple([Int])
}

/// Why an .npy header dict could not be parsed, and where.
struct HeaderParseError: Error {
    var reason: String
    var offset: Int
}

/// A parser for the small subset of Python literals .npy headers use.
struct HeaderParser {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    mutating func parseDictionary() throws(HeaderParseError) -> [String: HeaderValue] {
        try expect(UInt8(ascii: "{"))
        var result: [String: HeaderValue] = [:]
        while true {
            skipSpace()
            if peek() == UInt8(ascii: "}") { position += 1; break }
            guard case .string(let key) = try parseValue() else { throw fail("dict key is not a string") }
            try expect(UInt8(ascii: ":"))
            result[key] = try parseValue()
            skipSpace()
            if peek() == UInt8(ascii: ",") { position += 1; continue }
            try expect(UInt8(ascii: "}"))
            break
        }
        skipSpace()
        guard position == bytes.endIndex else { throw fail("unexpected text after the dict") }
        return result
    }

    mutating func parseValue() throws(HeaderParseError) -> HeaderValue {
        skipSpace()
        guard let byte = peek() else { throw fail("header ends inside the dict") }
        switch byte {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            position += 1
            let start = position
            while let c = peek(), c != byte { position += 1 }
            guard peek() == byte else { throw fail("unterminated string") }
            let text = String(decoding: bytes[start..<position], as: UTF8.self)
            position += 1
            return .string(text)
        case UInt8(ascii: "("):
            position += 1
            var values: [Int] = []
            while true {
                skipSpace()
                if peek() == UInt8(ascii: ")") { position += 1; break }
                guard case .integer(let value) = try parseValue(), value >= 0 else { throw fail("shape entries must be non-negative integers") }
                values.append(value)
                skipSpace()
                if peek() == UInt8(ascii: ",") { position += 1; continue }
                try expect(UInt8(ascii: ")"))
                break
            }
            return .tuple(values)
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            var value = 0
            while let c = peek(), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times.addingReportingOverflow(Int(c - UInt8(ascii: "0")))
                guard !overflow1 && !overflow2 else { throw fail("integer too large") }
                value = sum
                position += 1
            }
            if peek() == UInt8(ascii: "L") { position += 1 }  // Python 2 long suffix.
            return .integer(value)
        default:
            for (word, value) in [("True", true), ("False", false)] where bytes[position...].starts(with: word.utf8) {
                position += word.utf8.count
                return .bool(value)
            }
            throw fail("unexpected character '\(String(decoding: [byte], as: UTF8.self))'")
        }
    }

    func peek() -> UInt8? { position < bytes.endIndex ? bytes[position] : nil }

    mutating func skipSpace() {
        while let c = peek(), c == 0x20 || c == 0x0A || c == 0x09 || c == 0x0D { position += 1 }
    }

    mutating func expect(_ byte: UInt8) throws(HeaderParseError) {
        skipSpace()
        guard peek() == byte else { throw fail("expected '\(String(decoding: [byte], as: UTF8.self))'") }
        position += 1
    }

    func fail(_ reason: String) -> HeaderParseError {
        HeaderParseError(reason: reason, offset: position - bytes.startIndex)
    }
}
