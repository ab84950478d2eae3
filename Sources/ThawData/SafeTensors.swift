// SafeTensors: the safetensors file format (Hugging Face), read and written.
//
// Layout: 8-byte little-endian header length N, then N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw little-endian tensor bytes, offsets relative to the end of the header.
// Everything from the file is validated before use; errors name the file and the tensor.
import Foundation

/// One tensor read from a safetensors file, converted to Float.
public struct SafeTensor: Sendable, Equatable {
    /// The tensor's shape.
    public var shape: [Int]
    /// The values, row-major.
    public var values: [Float]
    /// The dtype in the file (`F32`, `F16`, `BF16`, `F64`).
    public var dtype: String
}

/// Reads and writes safetensors files.
public enum SafeTensors {
    /// Bytes per element of each readable dtype.
    static let elementSizes = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8]

    /// Writes named F32 tensors (in the given order) and optional string metadata, atomically:
    /// a temporary file is written and renamed over `path`.
    public static func write(_ tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                             metadata: [String: String] = [:], to path: String) throws(DataError) {
        var header: [String: Any] = [:]
        var offset = 0
        for tensor in tensors {
            let count = tensor.shape.reduce(1, *)
            guard count == tensor.values.count else {
                throw DataError(file: path, kind: .sizeMismatch, detail: "tensor '\(tensor.name)' has shape \(tensor.shape) but \(tensor.values.count) values")
            }
            header[tensor.name] = ["dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, offset + count * 4]]
            offset += count * 4
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        guard var json = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else {
            throw DataError(file: path, kind: .badHeader, detail: "cannot encode the header")
        }
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so the data is 8-byte aligned
        var file = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        for tensor in tensors { file.append(UnsafeBufferPointer(start: tensor.values.baseAddress, count: tensor.values.count)) }
        let temporary = path + ".tmp-\(getpid())"
        do {
            try file.write(to: URL(fileURLWithPath: temporary))
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw DataError(file: path, kind: .unreadable, detail: "cannot write: \(error.localizedDescription)")
        }
    }

    /// Reads every tensor of a file, converting to Float.
    public static func read(_ path: String) throws(DataError) -> (tensors: [String: SafeTensor], metadata: [String: String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(file: path, kind: .notFound, detail: "cannot read the file")
        }
        return try parse(data, file: path)
    }

    /// Parses safetensors bytes, validating the header, offsets and sizes before touching any tensor data.
    public static func parse(_ data: Data, file: String) throws(DataError) -> (tensors: [String: SafeTensor], metadata: [String: String]) {
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else { throw DataError(file: file, kind: .truncated, detail: "file is \(bytes.count) bytes; the header length alone needs 8") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw DataError(file: file, kind: .truncated, detail: "header length \(headerLength) exceeds the \(bytes.count - 8) bytes after it")
        }
        let dataStart = 8 + Int(headerLength)
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])), let header = object as? [String: Any] else {
            throw DataError(file: file, kind: .badHeader, detail: "the header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [(name: String, dtype: String, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let dictionary = value as? [String: String] else {
                    throw DataError(file: file, kind: .badHeader, detail: "__metadata__ must map strings to strings")
                }
                metadata = dictionary
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shapeValues = info["shape"] as? [Any], let offsetValues = info["data_offsets"] as? [Any], offsetValues.count == 2 else {
                throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' needs dtype, shape and two data_offsets")
            }
            let shape = try shapeValues.map { (v: Any) throws(DataError) -> Int in
                guard let n = (v as? NSNumber)?.intValue, n >= 0, n < 1 << 40 else {
                    throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' has an invalid shape \(shapeValues)")
                }
                return n
            }
            let offsets = offsetValues.compactMap { ($0 as? NSNumber)?.intValue }
            guard offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= bytes.count - dataStart else {
                throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' has data_offsets \(offsetValues) outside the \(bytes.count - dataStart) data bytes")
            }
            guard let size = elementSizes[dtype] else {
                throw DataError(file: file, kind: .unsupported, detail: "tensor '\(name)' has dtype \(dtype); Thaw reads F32, F16, BF16 and F64")
            }
            var count = 1
            for extent in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: extent)
                guard !overflow, product < 1 << 40 else { throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' shape \(shape) is too large") }
                count = product
            }
            guard offsets[1] - offsets[0] == count * size else {
                throw DataError(file: file, kind: .sizeMismatch,
                                detail: "tensor '\(name)' (\(dtype) \(shape)) needs \(count * size) bytes but data_offsets span \(offsets[1] - offsets[0])")
            }
            entries.append((name, dtype, shape, offsets[0], offsets[1]))
        }
        entries.sort { $0.begin < $1.begin }
        for (previous, next) in zip(entries, entries.dropFirst()) where next.begin < previous.end {
            throw DataError(file: file, kind: .badHeader, detail: "tensors '\(previous.name)' and '\(next.name)' overlap")
        }
        var tensors: [String: SafeTensor] = [:]
        for entry in entries {
            let raw = bytes[(dataStart + entry.begin)..<(dataStart + entry.end)]
            tensors[entry.name] = SafeTensor(shape: entry.shape, values: decode(raw, dtype: entry.dtype), dtype: entry.dtype)
        }
        return (tensors, metadata)
    }

    static func decode(_ raw: ArraySlice<UInt8>, dtype: String) -> [Float] {
        raw.withUnsafeBytes { buffer -> [Float] in
            switch dtype {
            case "F32": return (0..<(buffer.count / 4)).map { Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            case "F64": return (0..<(buffer.count / 8)).map { Float(Double(bitPattern: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
            case "BF16": return (0..<(buffer.count / 2)).map { Float(bitPattern: UInt32(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) << 16) }
            default: return (0..<(buffer.count / 2)).map { Float(Float16(bitPattern: UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
            }
        }
    }
}
