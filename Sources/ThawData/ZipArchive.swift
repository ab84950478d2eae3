// ZipArchive: a minimal read-only zip reader, enough for PyTorch's checkpoint archives (torch >= 1.6).
//
// It reads the end-of-central-directory record (and its zip64 form), the central directory and each
// entry's local header; entries are stored (PyTorch's writer never compresses, so their bytes are
// used in place, without a copy) or deflated (inflated with zlib). Every offset and size is checked
// against the file before use and each entry's CRC-32 is verified, so a damaged archive is an error.
//
// Note: bounded inflation. A deflated entry can claim up to ~1032 times its compressed size, so a
// 1 MB archive can declare a 1 GiB entry. Before inflating, the declared size is checked against
// what the caller expects (``ZipSizeExpectation``: a storage's exact size, or a bound); while
// inflating, output past the declared size is an error; and a caller that needs only the start of an
// entry keeps just that prefix, the rest streaming through a small scratch buffer for the CRC check.
import CZlib

/// What a reader expects an entry's uncompressed size to be, checked against the central directory
/// before any byte is inflated.
enum ZipSizeExpectation {
    /// Any size the compression ratio allows.
    case any
    /// Exactly `bytes`; `reason` says who needs them, for the error (`"storage '3' (4 F32 elements)"`).
    case exactly(Int, reason: String)
    /// At most `bytes`, for the same kind of error.
    case atMost(Int, reason: String)
}

/// One file inside a zip archive, as the central directory describes it.
struct ZipEntry: Sendable {
    /// The entry's path inside the archive.
    var name: String
    /// 0 (stored) or 8 (deflated); anything else is refused when read.
    var method: UInt16
    /// The general-purpose flags (bit 0: encrypted).
    var flags: UInt16
    /// CRC-32 of the uncompressed bytes.
    var crc: UInt32
    /// Bytes in the archive.
    var compressedSize: Int
    /// Bytes once inflated.
    var uncompressedSize: Int
    /// Where the entry's local header starts.
    var localHeaderOffset: Int
}

/// The entries of a zip archive held in a ``MappedFile``.
struct ZipArchive {
    /// The archive's path, for errors.
    let file: String
    /// The entries in central-directory order.
    let entries: [ZipEntry]
    private let storage: MappedFile
    private let index: [String: Int]

    /// Reads the central directory.
    /// - Throws: ``DataError`` `.badHeader`, `.truncated` or `.unsupported` naming the file.
    init(storage: MappedFile, file: String) throws(DataError) {
        self.storage = storage
        self.file = file
        let bytes = storage.bytes
        func bad(_ detail: String, _ kind: DataError.Kind = .badHeader) -> DataError { DataError(file: file, kind: kind, detail: "zip: \(detail)") }
        guard bytes.count >= 22 else { throw bad("\(bytes.count) bytes is too short for a zip archive", .truncated) }
        // The end-of-central-directory record: 22 bytes plus a comment of up to 65535 bytes.
        var end = -1
        var candidate = bytes.count - 22
        while candidate >= max(0, bytes.count - 22 - 65535) {
            if Self.u32(bytes, candidate) == 0x0605_4B50 { end = candidate; break }
            candidate -= 1
        }
        guard end >= 0 else { throw bad("no end-of-central-directory record (not a zip archive, or truncated)", .truncated) }
        var entryCount = Int(Self.u16(bytes, end + 10))
        var directorySize = Int(Self.u32(bytes, end + 12))
        var directoryOffset = Int(Self.u32(bytes, end + 16))
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // Zip64: a locator just before the record points at the zip64 end record.
            guard end >= 20, Self.u32(bytes, end - 20) == 0x0706_4B50 else { throw bad("zip64 sizes without a zip64 locator") }
            let recordOffset = Self.u64(bytes, end - 12)
            guard recordOffset <= UInt64(end - 20), Int(recordOffset) + 56 <= end - 20, Self.u32(bytes, Int(recordOffset)) == 0x0606_4B50 else {
                throw bad("bad zip64 end-of-central-directory record")
            }
            let record = Int(recordOffset)
            let count64 = Self.u64(bytes, record + 32), size64 = Self.u64(bytes, record + 40), offset64 = Self.u64(bytes, record + 48)
            guard count64 <= UInt64(bytes.count), size64 <= UInt64(bytes.count), offset64 <= UInt64(bytes.count) else { throw bad("zip64 directory out of range") }
            entryCount = Int(count64)
            directorySize = Int(size64)
            directoryOffset = Int(offset64)
        }
        guard Self.fits(bytes, directoryOffset, directorySize) else { throw bad("central directory (\(directorySize) bytes at \(directoryOffset)) lies outside the file", .truncated) }

        var entries: [ZipEntry] = []
        var index: [String: Int] = [:]
        var position = directoryOffset
        let directoryEnd = directoryOffset + directorySize
        for number in 0..<entryCount {
            guard position + 46 <= directoryEnd, Self.u32(bytes, position) == 0x0201_4B50 else { throw bad("central directory entry \(number) is damaged") }
            let nameLength = Int(Self.u16(bytes, position + 28)), extraLength = Int(Self.u16(bytes, position + 30))
            let commentLength = Int(Self.u16(bytes, position + 32))
            let next = position + 46 + nameLength + extraLength + commentLength
            guard next <= directoryEnd else { throw bad("central directory entry \(number) runs past the directory") }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(position + 46)..<(position + 46 + nameLength)]), as: UTF8.self)
            var uncompressed = UInt64(Self.u32(bytes, position + 24)), compressed = UInt64(Self.u32(bytes, position + 20))
            var localOffset = UInt64(Self.u32(bytes, position + 42))
            // Zip64 extra field (id 1): the saturated 32-bit fields follow, in this order.
            var extra = position + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = Self.u16(bytes, extra), size = Int(Self.u16(bytes, extra + 2))
                guard extra + 4 + size <= extraEnd else { throw bad("entry '\(name)' has a damaged extra field") }
                if id == 1 {
                    var field = extra + 4
                    let fieldEnd = extra + 4 + size
                    for slot in 0..<3 {
                        let value = slot == 0 ? uncompressed : slot == 1 ? compressed : localOffset
                        guard value == 0xFFFF_FFFF else { continue }
                        guard field + 8 <= fieldEnd else { throw bad("entry '\(name)' has a short zip64 field") }
                        let wide = Self.u64(bytes, field)
                        if slot == 0 { uncompressed = wide } else if slot == 1 { compressed = wide } else { localOffset = wide }
                        field += 8
                    }
                }
                extra += 4 + size
            }
            guard uncompressed <= UInt64(Int.max / 2), compressed <= UInt64(bytes.count), localOffset <= UInt64(bytes.count) else {
                throw bad("entry '\(name)' has sizes or an offset out of range")
            }
            guard index[name] == nil else { throw bad("entry '\(name)' appears twice") }
            index[name] = entries.count
            entries.append(ZipEntry(name: name, method: Self.u16(bytes, position + 10), flags: Self.u16(bytes, position + 8),
                                    crc: Self.u32(bytes, position + 16), compressedSize: Int(compressed),
                                    uncompressedSize: Int(uncompressed), localHeaderOffset: Int(localOffset)))
            position = next
        }
        self.entries = entries
        self.index = index
    }

    /// The entry with this exact name, if any.
    func entry(_ name: String) -> ZipEntry? { index[name].map { entries[$0] } }

    /// The uncompressed bytes of an entry, checked against its CRC-32. Stored entries are handed out in
    /// place (valid while the archive's storage lives); deflated ones are inflated into a temporary buffer.
    /// - Parameters:
    ///   - expectation: What the declared uncompressed size must be; checked before anything is inflated.
    ///   - prefix: Hand `body` only the first `prefix` bytes (all of them when nil). A deflated entry is
    ///     still inflated to its end to check its size and CRC-32, but only the prefix is kept in memory.
    /// - Throws: ``DataError`` naming the file and the entry.
    func withContents<Value>(of entry: ZipEntry, expectation: ZipSizeExpectation = .any, prefix: Int? = nil,
                             _ body: (UnsafeRawBufferPointer) throws(DataError) -> Value) throws(DataError) -> Value {
        let bytes = storage.bytes
        func bad(_ detail: String, _ kind: DataError.Kind = .badHeader) -> DataError { DataError(file: file, kind: kind, detail: "zip entry '\(entry.name)': \(detail)") }
        switch expectation {
        case .any: break
        case .exactly(let expected, let reason):
            guard entry.uncompressedSize == expected else {
                throw bad("declares \(entry.uncompressedSize) uncompressed bytes, but \(reason) needs exactly \(expected); refused before inflating it", .sizeMismatch)
            }
        case .atMost(let limit, let reason):
            guard entry.uncompressedSize <= limit else {
                throw bad("declares \(entry.uncompressedSize) uncompressed bytes, more than the \(limit) allowed for \(reason); refused before inflating it", .sizeMismatch)
            }
        }
        let kept = min(max(prefix ?? entry.uncompressedSize, 0), entry.uncompressedSize)
        guard entry.flags & 1 == 0 else { throw bad("is encrypted", .unsupported) }
        let local = entry.localHeaderOffset
        guard Self.fits(bytes, local, 30), Self.u32(bytes, local) == 0x0403_4B50 else { throw bad("local header is missing or damaged") }
        let dataStart = local + 30 + Int(Self.u16(bytes, local + 26)) + Int(Self.u16(bytes, local + 28))
        guard Self.fits(bytes, dataStart, entry.compressedSize) else { throw bad("data runs past the end of the file", .truncated) }
        let compressed = UnsafeRawBufferPointer(rebasing: bytes[dataStart..<(dataStart + entry.compressedSize)])
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else { throw bad("stored entry has different compressed and uncompressed sizes") }
            guard Self.crc32(compressed) == entry.crc else { throw bad("CRC-32 mismatch (the archive is damaged)", .corruptCompression) }
            return try body(UnsafeRawBufferPointer(rebasing: compressed[0..<kept]))
        case 8:
            // Deflate expands at most ~1032:1; a larger claim is a damaged (or hostile) header.
            guard entry.uncompressedSize <= entry.compressedSize * 1032 + 1024 else { throw bad("claims \(entry.uncompressedSize) bytes from \(entry.compressedSize) compressed") }
            let (inflated, crc) = try Self.inflateRaw(compressed, expected: entry.uncompressedSize, keeping: kept, error: bad)
            guard crc == entry.crc else { throw bad("CRC-32 mismatch (the archive is damaged)", .corruptCompression) }
            let outcome: Result<Value, DataError> = inflated.withUnsafeBytes { raw in
                do throws(DataError) { return .success(try body(raw)) } catch { return .failure(error) }
            }
            return try outcome.get()
        default:
            throw bad("compression method \(entry.method) is not supported (only stored and deflate)", .unsupported)
        }
    }

    /// Inflates raw deflate data that must produce exactly `expected` bytes and returns the first `kept`
    /// of them with the CRC-32 of all. Output past `kept` goes through a 64 KiB scratch buffer, and
    /// inflation stops one byte past `expected` (a longer stream shows that the header lied).
    private static func inflateRaw(_ input: UnsafeRawBufferPointer, expected: Int, keeping kept: Int,
                                   error bad: (String, DataError.Kind) -> DataError) throws(DataError) -> (bytes: [UInt8], crc: UInt32) {
        var output = [UInt8](repeating: 0, count: kept)
        var scratch = [UInt8](repeating: 0, count: 1 << 16)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw bad("zlib initialisation failed", .corruptCompression) }
        defer { inflateEnd(&stream) }
        var produced = 0
        var consumed = 0
        var code: Int32 = Z_OK
        var crc = CZlib.crc32(0, nil, 0)
        output.withUnsafeMutableBufferPointer { out in
            scratch.withUnsafeMutableBufferPointer { spare in
                guard let spareBase = spare.baseAddress else { return }
                while code == Z_OK && produced <= expected {
                    // The kept prefix first, then the scratch buffer, never more than one byte past `expected`.
                    let intoPrefix = produced < kept
                    let destination = intoPrefix ? out.baseAddress.map { $0 + produced } ?? spareBase : spareBase
                    let room = intoPrefix ? kept - produced : min(spare.count, expected + 1 - produced)
                    stream.next_in = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self) + consumed) }
                    stream.avail_in = UInt32(min(input.count - consumed, Int(UInt32.max)))
                    stream.next_out = destination
                    stream.avail_out = UInt32(min(room, Int(UInt32.max)))
                    let beforeIn = stream.avail_in, beforeOut = stream.avail_out
                    code = inflate(&stream, Z_NO_FLUSH)
                    let written = Int(beforeOut - stream.avail_out)
                    consumed += Int(beforeIn - stream.avail_in)
                    produced += written
                    if written > 0 { crc = CZlib.crc32(crc, destination, uInt(written)) }
                    if code == Z_OK && beforeIn == stream.avail_in && written == 0 { code = Z_BUF_ERROR }
                }
            }
        }
        guard code == Z_STREAM_END, produced == expected else {
            throw bad(code == Z_STREAM_END || produced > expected ? "deflate data does not inflate to the \(expected) bytes the directory claims" : "deflate data is truncated or corrupt (zlib \(code))", .corruptCompression)
        }
        return (output, UInt32(truncatingIfNeeded: crc))
    }

    /// CRC-32 of `bytes` (zlib's), in chunks that fit zlib's 32-bit lengths.
    static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CZlib.crc32(0, nil, 0)
        var offset = 0
        while offset < bytes.count, let base = bytes.baseAddress {
            let chunk = min(bytes.count - offset, 1 << 30)
            crc = CZlib.crc32(crc, (base + offset).assumingMemoryBound(to: Bytef.self), uInt(chunk))
            offset += chunk
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// Whether `count` bytes at `offset` lie inside `bytes` (overflow-safe).
    static func fits(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= bytes.count && count <= bytes.count - offset
    }

    static func u16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    static func u32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    static func u64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
