// Tests for IDXReader: well-formed files, every malformed case, and arbitrary bytes never crashing.
import Testing
import ThawData

@Suite struct IDXTests {
    /// An IDX header for unsigned bytes with the given extents.
    static func header(_ dimensions: [UInt32]) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
        for extent in dimensions {
            bytes += [UInt8(extent >> 24), UInt8((extent >> 16) & 0xFF), UInt8((extent >> 8) & 0xFF), UInt8(extent & 0xFF)]
        }
        return bytes
    }

    @Test func readsImagesAndLabels() throws {
        let images = try IDXReader.parse(IDXTests.header([2, 2, 3]) + Array(0..<12), file: "images", expectedMagic: IDXReader.imagesMagic)
        #expect(images.dimensions == [2, 2, 3])
        #expect(images.bytes == Array(0..<12))
        let labels = try IDXReader.parse(IDXTests.header([3]) + [7, 8, 9], file: "labels", expectedMagic: IDXReader.labelsMagic)
        #expect(labels == IDXArray(dimensions: [3], bytes: [7, 8, 9]))
    }

    @Test func readsFromFile() throws {
        let file = try TemporaryFile(IDXTests.header([4]) + [1, 2, 3, 4])
        #expect(try IDXReader.read(file.path).bytes == [1, 2, 3, 4])
    }

    @Test func rejectsMalformedFiles() throws {
        let cases: [(bytes: [UInt8], magic: UInt32?, kind: DataError.Kind)] = [
            ([0, 0], nil, .truncated),
            ([1, 0, 8, 1, 0, 0, 0, 1, 5], nil, .badMagic),
            (IDXTests.header([1]) + [5], IDXReader.imagesMagic, .badMagic),
            ([0, 0, 0x0D, 1, 0, 0, 0, 1, 5, 5, 5, 5], nil, .unsupported),
            ([0, 0, 8, 0], nil, .badMagic),
            ([0, 0, 8, 3, 0, 0, 0, 2, 0, 0], nil, .truncated),
            (IDXTests.header([2, 3]) + [1, 2, 3, 4, 5], nil, .truncated),
            (IDXTests.header([2, 3]) + Array(repeating: 1, count: 7), nil, .sizeMismatch),
            (IDXTests.header([0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF]), nil, .sizeMismatch),
        ]
        for (bytes, magic, kind) in cases {
            let error = try #require(throws: DataError.self) { try IDXReader.parse(bytes, file: "bad.idx", expectedMagic: magic) }
            #expect(error.kind == kind, "\(bytes): \(error)")
            #expect(error.file == "bad.idx")
        }
    }

    @Test func arbitraryBytesNeverCrash() {
        var state: UInt64 = 99
        var accepted = 0
        for trial in 0..<3000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let length = Int(state >> 58) + (trial % 3 == 0 ? 4 : 0)
            var bytes = (0..<length).map { i in UInt8(truncatingIfNeeded: (state >> UInt64(i % 56)) &+ UInt64(i)) }
            if trial % 2 == 0 && bytes.count >= 4 {
                bytes[0] = 0; bytes[1] = 0; bytes[2] = 8; bytes[3] = bytes[3] % 3
            }
            if let array = try? IDXReader.parse(bytes, file: "fuzz") {
                #expect(array.bytes.count == array.dimensions.reduce(1, *))
                accepted += 1
            }
        }
        #expect(accepted < 3000)
    }
}
