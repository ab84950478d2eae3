// Tests for NPYReader: the headers np.save writes (1.0 and 2.0), int32 token ids, and every
// malformed case; NPYWriter writes byte-for-byte what np.save writes and reads back.
import Foundation
import Testing
import ThawData

@Suite struct NPYTests {
    /// An .npy file as np.save writes it: magic, version, length, the dict padded with spaces to a
    /// multiple of 64 bytes and ending in a newline, then `data`.
    static func file(dict: String, data: [UInt8], major: UInt8 = 1) -> [UInt8] {
        let prefixLength = major == 1 ? 10 : 12
        var header = Array(dict.utf8)
        let total = prefixLength + header.count + 1
        header += [UInt8](repeating: 0x20, count: (64 - total % 64) % 64) + [0x0A]
        var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0]
        let length = header.count
        bytes += major == 1 ? [UInt8(length & 0xFF), UInt8(length >> 8)] : [UInt8(length & 0xFF), UInt8(length >> 8), 0, 0]
        return bytes + header + data
    }

    static func floatBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
    }

    static func dict(_ descr: String, _ shape: String, fortran: String = "False") -> String {
        "{'descr': '\(descr)', 'fortran_order': \(fortran), 'shape': \(shape), }"
    }

    @Test func readsFloat32AsNumpyWritesIt() throws {
        let bytes = NPYTests.file(dict: NPYTests.dict("<f4", "(2, 3)"), data: NPYTests.floatBytes([0, 0.5, 1, 1.5, 2, 2.5]))
        #expect(bytes.count == 152)  // np.save of a float32 (2, 3) array is 152 bytes.
        let array = try NPYReader.parse(bytes, file: "a.npy")
        #expect(array.dataType == .float32)
        #expect(array.shape == [2, 3])
        #expect(array.floatValues() == [0, 0.5, 1, 1.5, 2, 2.5])
        #expect(array.integerValues() == nil)
    }

    @Test func readsInt32() throws {
        let values: [Int32] = [101, -7, 0, 2_000_000_000]
        let data = values.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        let array = try NPYReader.parse(NPYTests.file(dict: NPYTests.dict("<i4", "(2, 2)"), data: data), file: "ids.npy")
        #expect(array.dataType == .int32 && array.shape == [2, 2])
        #expect(array.integerValues() == values.map(Int64.init))
        #expect(array.floatValues() == values.map(Float.init))
    }

    @Test func writerMatchesNumpyAndRoundTrips() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-npy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let floats = directory + "/f.npy", integers = directory + "/i.npy"
        try NPYWriter.write([0, 0.5, 1, 1.5, 2, 2.5] as [Float], shape: [2, 3], to: floats)
        // np.save's own bytes for this array (see readsFloat32AsNumpyWritesIt).
        let expected = NPYTests.file(dict: NPYTests.dict("<f4", "(2, 3)"), data: NPYTests.floatBytes([0, 0.5, 1, 1.5, 2, 2.5]))
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: floats))) == expected)
        try NPYWriter.write([3, -1, 40] as [Int64], shape: [3], to: integers)
        let read = try NPYReader.read(integers)
        #expect(read.dataType == .int64 && read.shape == [3] && read.integerValues() == [3, -1, 40])
        let mismatch = try #require(throws: DataError.self) { try NPYWriter.write([1, 2, 3] as [Float], shape: [2, 2], to: floats) }
        #expect(mismatch.file == floats && mismatch.detail.contains("[2, 2]"))
        // The failed write left the earlier file as it was.
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: floats))) == expected)
    }

    @Test func readsUInt8AndInt64AndVersion2() throws {
        let bytes = NPYTests.file(dict: NPYTests.dict("|u1", "(4,)"), data: [0, 7, 200, 255], major: 2)
        let array = try NPYReader.parse(bytes, file: "b.npy")
        #expect(array.shape == [4])
        #expect(array.integerValues() == [0, 7, 200, 255])
        #expect(array.floatValues() == [0, 7, 200, 255])
        let longs: [Int64] = [3, -1, 4_000_000_000]
        let data = longs.flatMap { value in withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        let file = try TemporaryFile(NPYTests.file(dict: NPYTests.dict("<i8", "(3,)"), data: data), suffix: ".npy")
        let read = try NPYReader.read(file.path)
        #expect(read.dataType == .int64)
        #expect(read.integerValues() == longs)
        let scalar = try NPYReader.parse(NPYTests.file(dict: NPYTests.dict("<f4", "()"), data: NPYTests.floatBytes([4])), file: "s.npy")
        #expect(scalar.shape == [])
        #expect(scalar.floatValues() == [4])
    }

    @Test func rejectsMalformedFiles() throws {
        let good = NPYTests.file(dict: NPYTests.dict("<f4", "(2,)"), data: NPYTests.floatBytes([1, 2]))
        var badVersion = good
        badVersion[6] = 9
        let cases: [(name: String, bytes: [UInt8], kind: DataError.Kind)] = [
            ("bad magic", Array("PK\u{3}\u{4}not numpy".utf8), .badMagic),
            ("short", Array(good.prefix(8)), .truncated),
            ("header cut", Array(good.prefix(40)), .truncated),
            ("data cut", Array(good.dropLast(3)), .truncated),
            ("extra data", good + [0], .sizeMismatch),
            ("version", badVersion, .unsupported),
            ("not a dict", NPYTests.file(dict: "['descr', '<f4']", data: []), .badHeader),
            ("unterminated", NPYTests.file(dict: "{'descr': '<f4, 'shape': (1,)}", data: []), .badHeader),
            ("no shape", NPYTests.file(dict: "{'descr': '<f4', 'fortran_order': False}", data: []), .badHeader),
            ("negative shape", NPYTests.file(dict: NPYTests.dict("<f4", "(-1,)"), data: []), .badHeader),
            ("garbage value", NPYTests.file(dict: "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}", data: []), .badHeader),
            ("fortran", NPYTests.file(dict: NPYTests.dict("<f4", "(1,)", fortran: "True"), data: [0, 0, 0, 0]), .unsupported),
            ("float64", NPYTests.file(dict: NPYTests.dict("<f8", "(1,)"), data: Array(repeating: 0, count: 8)), .unsupported),
            ("big endian", NPYTests.file(dict: NPYTests.dict(">f4", "(1,)"), data: [0, 0, 0, 0]), .unsupported),
            ("shape mismatch", NPYTests.file(dict: NPYTests.dict("<f4", "(3, 2)"), data: NPYTests.floatBytes([1, 2])), .truncated),
        ]
        for (name, bytes, kind) in cases {
            let file = try TemporaryFile(bytes, suffix: ".npy")
            let error = try #require(throws: DataError.self, "\(name)") { try NPYReader.read(file.path) }
            #expect(error.kind == kind, "\(name): \(error)")
            #expect(error.file == file.path, "\(name)")
            #expect(error.description.hasPrefix(file.path + ": "), "\(name)")
        }
    }

    @Test func fortranOrderErrorExplainsFix() throws {
        let bytes = NPYTests.file(dict: NPYTests.dict("<f4", "(1,)", fortran: "True"), data: [0, 0, 0, 0])
        let error = try #require(throws: DataError.self) { try NPYReader.parse(bytes, file: "f.npy") }
        #expect(error.description.contains("fortran_order True"))
        #expect(error.description.contains("ascontiguousarray"))
    }
}
