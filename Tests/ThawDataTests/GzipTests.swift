// Tests for Gzip: inflating gzip files (one or several members), plain pass-through, corrupt input.
import Testing
import ThawData

@Suite struct GzipTests {
    /// gzip.compress(b"hello thaw\n" * 3, mtime=0) from Python.
    static let hello: [UInt8] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0x28, 0xc9,
        0x48, 0x2c, 0xe7, 0xca, 0xc0, 0xca, 0x04, 0x00, 0x9e, 0x9c, 0xa0, 0x72, 0x21, 0x00, 0x00, 0x00,
    ]
    /// gzip.compress(b"second member", mtime=0) from Python.
    static let second: [UInt8] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x2b, 0x4e, 0x4d, 0xce, 0xcf, 0x4b, 0x51, 0xc8,
        0x4d, 0xcd, 0x4d, 0x4a, 0x2d, 0x02, 0x00, 0x24, 0x74, 0xfa, 0x9f, 0x0d, 0x00, 0x00, 0x00,
    ]

    @Test func inflatesGzipFile() throws {
        let file = try TemporaryFile(GzipTests.hello, suffix: ".gz")
        #expect(try Gzip.readFile(file.path) == Array(String(repeating: "hello thaw\n", count: 3).utf8))
    }

    @Test func inflatesConcatenatedMembers() throws {
        let bytes = try Gzip.decompress(GzipTests.hello + GzipTests.second, file: "two.gz")
        #expect(bytes == Array((String(repeating: "hello thaw\n", count: 3) + "second member").utf8))
    }

    @Test func passesPlainFilesThrough() throws {
        let file = try TemporaryFile([0, 0, 8, 1, 0x1f, 0x8b])
        #expect(try Gzip.readFile(file.path) == [0, 0, 8, 1, 0x1f, 0x8b])
    }

    @Test func truncatedGzipNamesFile() throws {
        let file = try TemporaryFile(Array(GzipTests.hello.prefix(20)), suffix: ".gz")
        let error = try #require(throws: DataError.self) { try Gzip.readFile(file.path) }
        #expect(error.kind == .truncated)
        #expect(error.file == file.path)
        #expect(error.description.contains(file.path))
    }

    @Test func corruptGzipNamesFile() throws {
        var bytes = GzipTests.hello
        bytes[bytes.count - 6] ^= 0xFF  // Damages the CRC-32 in the trailer.
        let error = try #require(throws: DataError.self) { try Gzip.decompress(bytes, file: "damaged.gz") }
        #expect(error.kind == .corruptCompression)
        #expect(error.description.hasPrefix("damaged.gz: "))
    }

    @Test func trailingGarbageIsRejected() throws {
        let error = try #require(throws: DataError.self) { try Gzip.decompress(GzipTests.hello + [1, 2, 3], file: "tail.gz") }
        #expect(error.kind == .corruptCompression)
    }

    @Test func missingFileIsNotFound() throws {
        let error = try #require(throws: DataError.self) { try Gzip.readFile("/nonexistent/thaw/file.gz") }
        #expect(error.kind == .notFound)
        #expect(error.file == "/nonexistent/thaw/file.gz")
    }
}
