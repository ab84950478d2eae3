// SafeTensors: the safetensors file format (Hugging Face), read and written.
//
// Layout: 8-byte little-endian header length N, then N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian tensor bytes, offsets relative to the end of the header.
//
// Note: what a valid file is. Thaw trusts nothing in a file before checking it, and follows the
// reference implementation (huggingface/safetensors) where the format text leaves room:
//  1. N fits in the file and is at most 100 MB; the header starts with `{` and is one strict JSON
//     object (UTF-8, no duplicate keys, nothing but whitespace after it).
//  2. `__metadata__`, if present, maps strings to strings.
//  3. Every other key is a tensor: an object with exactly `dtype` (a safetensors dtype), `shape`
//     (non-negative integers) and `data_offsets` (two integers, begin <= end).
//  4. end - begin == product(shape) * size(dtype), without overflow.
//  5. Sorted by begin, the tensors tile the data region exactly: the first begins at 0, each begins
//     where the previous ended (no gaps, no overlaps) and the last ends at the end of the file.
//     The format requires the byte buffer to be fully indexed, so trailing or unclaimed bytes are
//     an error, as they are in the reference implementation.
// Thaw is stricter than the reference in two places: a name used twice is an error (the reference
// silently keeps the last), and so is an unknown key in a tensor entry.
// Files are memory-mapped; a tensor is decoded from the mapped bytes only when asked for.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor read from a weight file, converted to Float.
public struct SafeTensor: Sendable, Equatable {
    /// The tensor's shape.
    public var shape: [Int]
    /// The values, row-major.
    public var values: [Float]
    /// The element type in the file, as safetensors names it (`F32`, `F16`, `BF16`, `F64`, `I64`, ...).
    public var dtype: String

    /// Creates a tensor.
    public init(shape: [Int], values: [Float], dtype: String = "F32") {
        self.shape = shape
        self.values = values
        self.dtype = dtype
    }
}

/// Where one tensor lives in a safetensors file, as its validated header says.
public struct SafeTensorInfo: Sendable, Equatable {
    /// The tensor's name.
    public var name: String
    /// The dtype as written in the file (`F32`, `BF16`, `I64`, ...).
    public var dtype: String
    /// The tensor's shape.
    public var shape: [Int]
    /// The number of elements: the product of `shape`.
    public var elementCount: Int
    /// The tensor's bytes, as offsets from the start of the file.
    public var fileByteRange: Range<Int>
}

/// A safetensors file whose header has been read and validated; tensors are decoded on demand from
/// the memory-mapped file, one at a time.
public final class SafeTensorsFile: @unchecked Sendable {  // immutable after init
    /// The file's path (or the name given for in-memory bytes), used in errors.
    public let path: String
    /// The tensor names in file order (by data offset).
    public let names: [String]
    /// The `__metadata__` strings (empty if the file has none).
    public let metadata: [String: String]
    private let infos: [String: SafeTensorInfo]
    private let storage: MappedFile

    /// The most header bytes accepted (the reference implementation's limit).
    public static let maximumHeaderLength = 100_000_000

    /// Maps a file and validates its header (no tensor data is decoded).
    /// - Throws: ``DataError`` naming the file and, where it applies, the tensor.
    public convenience init(path: String) throws(DataError) {
        try self.init(storage: MappedFile(path: path), file: path)
    }

    /// Validates in-memory safetensors bytes (they are copied once).
    /// - Parameters:
    ///   - bytes: The whole file.
    ///   - file: A name for errors.
    public convenience init(bytes: some Collection<UInt8>, file: String) throws(DataError) {
        try self.init(storage: MappedFile(copying: bytes), file: file)
    }

    init(storage: MappedFile, file: String) throws(DataError) {
        self.path = file
        self.storage = storage
        let bytes = storage.bytes
        guard bytes.count >= 8, let base = bytes.baseAddress else {
            throw DataError(file: file, kind: .truncated, detail: "file is \(bytes.count) bytes; the header length alone needs 8")
        }
        let headerLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw DataError(file: file, kind: .truncated, detail: "header length \(headerLength) exceeds the \(bytes.count - 8) bytes after it")
        }
        guard headerLength <= UInt64(Self.maximumHeaderLength) else {
            throw DataError(file: file, kind: .badHeader, detail: "header length \(headerLength) exceeds the limit of \(Self.maximumHeaderLength) bytes")
        }
        let dataStart = 8 + Int(headerLength)
        let dataLength = bytes.count - dataStart
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart])
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw DataError(file: file, kind: .badHeader, detail: "the header does not start with '{'")
        }
        let header: [(key: String, value: JSONValue)]
        do throws(JSONParser.Failure) {
            var parser = JSONParser(bytes: headerBytes)
            guard case .object(let members) = try parser.parseDocument() else { throw JSONParser.Failure(reason: "not an object", offset: 0) }
            header = members
        } catch {
            throw DataError(file: file, kind: .badHeader, detail: "the header is not a valid JSON object: \(error.reason) at header byte \(error.offset)")
        }

        var metadata: [String: String] = [:]
        var entries: [SafeTensorInfo] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard case .object(let members) = value else {
                    throw DataError(file: file, kind: .badHeader, detail: "__metadata__ must be an object mapping strings to strings")
                }
                for (key, item) in members {
                    guard case .string(let text) = item else {
                        throw DataError(file: file, kind: .badHeader, detail: "__metadata__ value of '\(key)' is not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            entries.append(try Self.validateEntry(name: name, value: value, dataStart: dataStart, file: file))
        }
        entries.sort { ($0.fileByteRange.lowerBound, $0.fileByteRange.upperBound) < ($1.fileByteRange.lowerBound, $1.fileByteRange.upperBound) }
        var position = dataStart
        for entry in entries {
            let range = entry.fileByteRange
            if range.lowerBound < position {
                throw DataError(file: file, kind: .badHeader, detail: "tensor '\(entry.name)' data_offsets [\(range.lowerBound - dataStart), \(range.upperBound - dataStart)] overlap the tensor before it")
            }
            if range.lowerBound > position {
                throw DataError(file: file, kind: .badHeader, detail: "tensor '\(entry.name)' begins at data byte \(range.lowerBound - dataStart), leaving bytes \(position - dataStart)..<\(range.lowerBound - dataStart) unclaimed (the data region must be fully indexed)")
            }
            position = range.upperBound
        }
        if position - dataStart != dataLength {
            let detail = position - dataStart > dataLength
                ? "the tensors need \(position - dataStart) data bytes but the file has \(dataLength)"
                : "\(dataLength - (position - dataStart)) bytes after the last tensor are not claimed by any tensor (the data region must be fully indexed)"
            throw DataError(file: file, kind: position - dataStart > dataLength ? .truncated : .sizeMismatch, detail: detail)
        }
        self.names = entries.map(\.name)
        self.metadata = metadata
        self.infos = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Checks one tensor entry of the header (rules 3 and 4 of the note above).
    private static func validateEntry(name: String, value: JSONValue, dataStart: Int, file: String) throws(DataError) -> SafeTensorInfo {
        func bad(_ detail: String, _ kind: DataError.Kind = .badHeader) -> DataError {
            DataError(file: file, kind: kind, detail: "tensor '\(name)': \(detail)")
        }
        guard case .object(let members) = value else { throw bad("the entry is not an object") }
        var dtype: String?
        var shapeValue: JSONValue?
        var offsetsValue: JSONValue?
        for (key, item) in members {
            switch key {
            case "dtype":
                guard case .string(let text) = item else { throw bad("dtype is not a string") }
                dtype = text
            case "shape": shapeValue = item
            case "data_offsets": offsetsValue = item
            default: throw bad("unexpected key '\(key)' (entries have exactly dtype, shape and data_offsets)")
            }
        }
        guard let dtype, let shapeValue, let offsetsValue else { throw bad("needs dtype, shape and data_offsets") }
        guard let size = ElementType.safetensorsByteCounts[dtype] else { throw bad("unknown dtype '\(dtype)'", .unsupported) }
        guard case .array(let shapeItems) = shapeValue else { throw bad("shape is not an array") }
        var shape: [Int] = []
        var count = 1
        for item in shapeItems {
            guard case .integer(let extent?) = item, extent >= 0 else { throw bad("shape \(shapeValue) has an entry that is not a non-negative integer") }
            let (product, overflow) = count.multipliedReportingOverflow(by: extent)
            guard !overflow, product <= Int(Int32.max) * 64 else { throw bad("shape \(shapeValue) has too many elements") }
            shape.append(extent)
            count = product
        }
        guard case .array(let offsetItems) = offsetsValue, offsetItems.count == 2,
              case .integer(let begin?) = offsetItems[0], case .integer(let end?) = offsetItems[1], begin >= 0, begin <= end else {
            throw bad("data_offsets \(offsetsValue) are not two integers 0 <= begin <= end")
        }
        guard end <= Int.max - dataStart else { throw bad("data_offsets \(offsetsValue) are out of range", .truncated) }
        guard end - begin == count * size else {
            throw bad("\(dtype) \(shape) needs \(count * size) bytes but data_offsets [\(begin), \(end)] span \(end - begin)", .sizeMismatch)
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape, elementCount: count, fileByteRange: (dataStart + begin)..<(dataStart + end))
    }

    /// Where the named tensor is, its dtype and shape.
    /// - Throws: ``DataError`` `.badValue` if the file has no such tensor.
    public func info(_ name: String) throws(DataError) -> SafeTensorInfo {
        guard let info = infos[name] else {
            throw DataError(file: path, kind: .badValue, detail: "no tensor '\(name)' in the file", hint: "it has \(names.count) tensors: \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", ..." : "")")
        }
        return info
    }

    /// Decodes the named tensor's values to Float, straight from the mapped bytes.
    /// - Throws: ``DataError`` if there is no such tensor or its dtype cannot be converted (8-bit floats).
    public func values(_ name: String) throws(DataError) -> [Float] {
        let info = try info(name)
        guard let type = ElementType(rawValue: info.dtype) else {
            throw DataError(file: path, kind: .unsupported, detail: "tensor '\(name)' has dtype \(info.dtype); Thaw converts F32, F16, BF16, F64 and integer types")
        }
        guard info.elementCount > 0, let base = storage.bytes.baseAddress else { return [] }
        return type.decodeArray(base + info.fileByteRange.lowerBound, count: info.elementCount)
    }

    /// The named tensor with its shape, dtype and values.
    public func tensor(_ name: String) throws(DataError) -> SafeTensor {
        let info = try info(name)
        return SafeTensor(shape: info.shape, values: try values(name), dtype: info.dtype)
    }

    /// Decodes every tensor.
    public func allTensors() throws(DataError) -> [String: SafeTensor] {
        var tensors: [String: SafeTensor] = [:]
        for name in names { tensors[name] = try tensor(name) }
        return tensors
    }
}

/// Reads and writes safetensors files.
public enum SafeTensors {
    /// Writes named F32 tensors (in the given order) and optional string metadata, atomically:
    /// a temporary file is written, fsynced and renamed over `path`.
    /// - Throws: ``DataError`` on duplicate or reserved names, shape/value-count mismatches and I/O failures.
    public static func write(_ tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                             metadata: [String: String] = [:], to path: String) throws(DataError) {
        try writeFloat32(tensors.map { tensor in
            (name: tensor.name, shape: tensor.shape, count: tensor.values.count, bytes: { body in body(UnsafeRawBufferPointer(tensor.values)) })
        }, metadata: metadata, to: path)
    }

    /// Writes named tensors as F32 (whatever their source dtype), in the given order, atomically.
    public static func write(_ tensors: [(name: String, tensor: SafeTensor)], metadata: [String: String] = [:], to path: String) throws(DataError) {
        try writeFloat32(tensors.map { item in
            (name: item.name, shape: item.tensor.shape, count: item.tensor.values.count,
             bytes: { body in item.tensor.values.withUnsafeBytes { body($0) } })
        }, metadata: metadata, to: path)
    }

    /// Reads every tensor of a file, converting to Float.
    public static func read(_ path: String) throws(DataError) -> (tensors: [String: SafeTensor], metadata: [String: String]) {
        let file = try SafeTensorsFile(path: path)
        return (try file.allTensors(), file.metadata)
    }

    /// Parses safetensors bytes, validating the header, offsets and sizes before touching any tensor data.
    public static func parse(_ data: Data, file: String) throws(DataError) -> (tensors: [String: SafeTensor], metadata: [String: String]) {
        let parsed = try SafeTensorsFile(bytes: data, file: file)
        return (try parsed.allTensors(), parsed.metadata)
    }

    private typealias Writable = (name: String, shape: [Int], count: Int, bytes: ((UnsafeRawBufferPointer) -> Bool) -> Bool)

    /// The writer behind both `write` overloads: header, then each tensor's bytes streamed to disk.
    private static func writeFloat32(_ tensors: [Writable], metadata: [String: String], to path: String) throws(DataError) {
        var header = "{"
        if !metadata.isEmpty {
            header += JSONText.string("__metadata__") + ":{"
            header += metadata.sorted { $0.key < $1.key }.map { JSONText.string($0.key) + ":" + JSONText.string($0.value) }.joined(separator: ",")
            header += "}"
        }
        var offset = 0
        var seen = Set<String>()
        for tensor in tensors {
            guard tensor.name != "__metadata__", seen.insert(tensor.name).inserted else {
                throw DataError(file: path, kind: .badValue, detail: "tensor name '\(tensor.name)' is \(tensor.name == "__metadata__" ? "reserved" : "used twice")")
            }
            let count = tensor.shape.reduce(1, *)
            guard tensor.shape.allSatisfy({ $0 >= 0 }), count == tensor.count else {
                throw DataError(file: path, kind: .sizeMismatch, detail: "tensor '\(tensor.name)' has shape \(tensor.shape) but \(tensor.count) values")
            }
            if header.count > 1 { header += "," }
            header += JSONText.string(tensor.name) + ":{\"dtype\":\"F32\",\"shape\":[" + tensor.shape.map(String.init).joined(separator: ",")
                + "],\"data_offsets\":[\(offset),\(offset + count * 4)]}"
            offset += count * 4
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }  // spaces, so the data is 8-byte aligned

        let temporary = temporaryPath(for: path)  // see SafeTensorsTemporaries.swift
        guard let stream = fopen(temporary, "wb") else {
            throw DataError(file: path, kind: .unreadable, detail: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var length = UInt64(headerBytes.count).littleEndian
        var ok = fwrite(&length, 8, 1, stream) == 1 && fwrite(headerBytes, 1, headerBytes.count, stream) == headerBytes.count
        for tensor in tensors where ok {
            ok = tensor.bytes { raw in raw.isEmpty || fwrite(raw.baseAddress, 1, raw.count, stream) == raw.count }
        }
        // Flush to the disk before the rename, so a crash never leaves a renamed but empty file.
        ok = ok && fflush(stream) == 0 && fsync(fileno(stream)) == 0
        ok = fclose(stream) == 0 && ok
        guard ok else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DataError(file: path, kind: .unreadable, detail: "cannot write: \(reason)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DataError(file: path, kind: .unreadable, detail: "cannot rename the written file into place: \(reason)")
        }
    }
}
