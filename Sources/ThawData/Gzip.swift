// Gzip: reads a dataset file into memory, inflating it if it is gzip-compressed.
//
// Dataset files come either plain or as .gz (the Debian Fashion-MNIST package ships .gz).
// A file is treated as gzip when it starts with the gzip magic bytes 1f 8b, whatever its name;
// anything else is returned unchanged. Concatenated gzip members are inflated one after another.

import CZlib
import Foundation

/// Reading whole files, inflating gzip-compressed ones.
public enum Gzip {
    /// Reads a file fully; if it is gzip-compressed, returns the inflated bytes.
    /// - Parameter path: The file to read.
    /// - Throws: ``DataError`` naming the file if it is missing, unreadable, corrupt or truncated.
    public static func readFile(_ path: String) throws(DataError) -> [UInt8] {
        let raw = try readRawFile(path)
        return isGzip(raw) ? try decompress(raw, file: path) : raw
    }

    /// Reads a file's bytes as they are on disk.
    /// - Parameter path: The file to read.
    /// - Throws: ``DataError`` with kind `.notFound` or `.unreadable`.
    public static func readRawFile(_ path: String) throws(DataError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError(file: path, kind: .notFound, detail: "no such file")
        }
        guard !isDirectory.boolValue else {
            throw DataError(file: path, kind: .unreadable, detail: "is a directory, not a file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(file: path, kind: .unreadable, detail: "could not be read (permissions?)")
        }
        return [UInt8](data)
    }

    /// Whether `bytes` start with the gzip magic bytes 1f 8b.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Inflates gzip data (one or more concatenated members).
    /// - Parameters:
    ///   - bytes: The compressed bytes, starting with the gzip header.
    ///   - file: The file they came from, for errors.
    /// - Throws: ``DataError`` with kind `.corruptCompression` or `.truncated`.
    public static func decompress(_ bytes: [UInt8], file: String) throws(DataError) -> [UInt8] {
        guard !bytes.isEmpty else {
            throw DataError(file: file, kind: .truncated, detail: "compressed data is empty")
        }
        var output = [UInt8](repeating: 0, count: max(bytes.count * 4, 1024))
        var produced = 0
        var stream = z_stream()
        // 16 + MAX_WBITS: expect a gzip header and trailer, not a raw zlib stream.
        let initCode = inflateInit2_(&stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initCode == Z_OK else {
            throw DataError(file: file, kind: .corruptCompression, detail: "zlib inflateInit2 failed with code \(initCode)")
        }
        defer { inflateEnd(&stream) }

        var consumed = 0
        var result: Result<Void, DataError> = .success(())
        bytes.withUnsafeBufferPointer { input in
            guard let inputBase = input.baseAddress else { return }
            while true {
                if produced == output.count { output += [UInt8](repeating: 0, count: output.count) }
                let code: Int32 = output.withUnsafeMutableBufferPointer { out in
                    stream.next_in = UnsafeMutablePointer(mutating: inputBase + consumed)
                    stream.avail_in = UInt32(min(input.count - consumed, Int(UInt32.max)))
                    stream.next_out = out.baseAddress! + produced
                    stream.avail_out = UInt32(min(out.count - produced, Int(UInt32.max)))
                    let beforeIn = stream.avail_in
                    let beforeOut = stream.avail_out
                    let code = inflate(&stream, Z_NO_FLUSH)
                    consumed += Int(beforeIn - stream.avail_in)
                    produced += Int(beforeOut - stream.avail_out)
                    return code
                }
                switch code {
                case Z_STREAM_END:
                    // Another member may follow; trailing zero padding is tolerated.
                    let rest = input[consumed...]
                    if rest.allSatisfy({ $0 == 0 }) { return }
                    guard rest.count >= 2 && rest[consumed] == 0x1F && rest[consumed + 1] == 0x8B else {
                        result = .failure(DataError(file: file, kind: .corruptCompression, detail: "unexpected bytes after the end of the gzip stream"))
                        return
                    }
                    inflateReset(&stream)
                case Z_OK:
                    continue
                case Z_BUF_ERROR:
                    // No progress possible: either output is full (grow it) or the input ran out.
                    if stream.avail_out == 0 { continue }
                    result = .failure(DataError(file: file, kind: .truncated, detail: "compressed data ends early (gzip stream is truncated)"))
                    return
                default:
                    let message = stream.msg.map { String(cString: $0) } ?? "zlib error \(code)"
                    result = .failure(DataError(file: file, kind: .corruptCompression, detail: "corrupt gzip data: \(message)"))
                    return
                }
            }
        }
        if case .failure(let error) = result { throw error }
        output.removeSubrange(produced...)
        return output
    }
}
