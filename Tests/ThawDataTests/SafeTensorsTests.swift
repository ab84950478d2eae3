// Tests for SafeTensors / SafeTensorsFile: round trips, every dtype Thaw decodes, reading one tensor
// without decoding the rest, and each validation rule of the header (see "Note: what a valid file is").
import Foundation
import Testing
import ThawData

@Suite struct SafeTensorsTests {
    typealias Support = FormatTestSupport

    @Test func writesAndReadsBackExactly() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        let path = directory + "/w.safetensors"
        let a: [Float] = [1, -2.5, .infinity, -0.0, .leastNonzeroMagnitude, 3e38]
        let b: [Float] = [42]
        let empty: [Float] = []
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try empty.withUnsafeBufferPointer { pe in
                    try SafeTensors.write([("head.fc.weight", [2, 3], pa), ("scalar", [], pb), ("body.\"quoted\"\n", [0, 4], pe)],
                                          metadata: ["groups": "body,head", "note": "ü \"x\""], to: path)
                }
            }
        }
        let file = try SafeTensorsFile(path: path)
        #expect(file.names == ["head.fc.weight", "scalar", "body.\"quoted\"\n"])
        #expect(file.metadata == ["groups": "body,head", "note": "ü \"x\""])
        #expect(Support.bits(try file.values("head.fc.weight")) == Support.bits(a))
        #expect(try file.info("scalar").shape == [])
        #expect(try file.values("scalar") == [42])
        #expect(try file.tensor("body.\"quoted\"\n") == SafeTensor(shape: [0, 4], values: [], dtype: "F32"))
        let all = try SafeTensors.read(path)
        #expect(all.tensors.count == 3)
        #expect(all.metadata["groups"] == "body,head")
        // The data region starts 8-byte aligned.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(headerLength % 8 == 0)
        let error = try #require(throws: DataError.self) { try file.values("missing") }
        #expect(error.kind == .badValue && error.detail.contains("missing") && error.file == path)
    }

    @Test func writerRejectsDuplicateAndReservedNamesAndBadShapes() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        let one = SafeTensor(shape: [1], values: [1])
        let cases: [(String, [(name: String, tensor: SafeTensor)])] = [
            ("duplicate", [("a", one), ("a", one)]),
            ("reserved", [("__metadata__", one)]),
            ("shape", [("a", SafeTensor(shape: [2], values: [1]))]),
        ]
        for (label, tensors) in cases {
            let path = directory + "/\(label).safetensors"
            #expect(throws: DataError.self, "\(label)") { try SafeTensors.write(tensors, to: path) }
            #expect(!FileManager.default.fileExists(atPath: path), "\(label)")
        }
    }

    @Test func decodesEveryFloatAndIntegerDtype() throws {
        func raw(_ values: [some FixedWidthInteger]) -> [UInt8] { values.flatMap { Support.bytes($0) } }
        let f32: [Float] = [1.5, -0.0, .infinity]
        let f64: [Double] = [0.1, -1e300, 3.0]
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7C00, 0x0001]  // 1, -2, inf, smallest subnormal
        let bf16: [UInt16] = [0x3F80, 0xC040, 0x0001]  // 1, -3, a tiny subnormal
        let i64: [Int64] = [-5, 1 << 40]
        let data = raw(f32.map(\.bitPattern)) + raw(f64.map(\.bitPattern)) + raw(f16) + raw(bf16) + raw(i64) + [200, 1, 0] + raw([Int32(-7)])
        let header = """
            {"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F64","shape":[3],"data_offsets":[12,36]},\
            "c":{"dtype":"F16","shape":[2,2],"data_offsets":[36,44]},"d":{"dtype":"BF16","shape":[3],"data_offsets":[44,50]},\
            "e":{"dtype":"I64","shape":[2],"data_offsets":[50,66]},"f":{"dtype":"U8","shape":[1],"data_offsets":[66,67]},\
            "g":{"dtype":"BOOL","shape":[2],"data_offsets":[67,69]},"h":{"dtype":"I32","shape":[1],"data_offsets":[69,73]}}
            """
        let file = try SafeTensorsFile(bytes: Support.safetensors(header: header, data: data), file: "dtypes.safetensors")
        #expect(file.names == ["a", "b", "c", "d", "e", "f", "g", "h"])
        #expect(Support.bits(try file.values("a")) == Support.bits(f32))
        #expect(try file.values("b") == f64.map { Float($0) })
        #expect(try file.values("c") == [1, -2, .infinity, Float(Float16(bitPattern: 1))])
        #expect(try file.values("d") == [1, -3, Float(bitPattern: 0x0001_0000)])
        #expect(try file.values("e") == [-5, Float(1 << 40)])
        #expect(try file.values("f") == [200])
        #expect(try file.values("g") == [1, 0])
        #expect(try file.values("h") == [-7])
        #expect(try file.tensor("d").dtype == "BF16")
        // 8-bit floats validate (their size is known) but cannot be converted.
        let f8 = try SafeTensorsFile(bytes: Support.safetensors(header: #"{"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, data: [1, 2]), file: "f8")
        #expect(try f8.info("q").elementCount == 2)
        #expect(throws: DataError.self) { try f8.values("q") }
    }

    @Test func readsOneTensorOfALargeMappedFile() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        let path = directory + "/large.safetensors"
        let big = (0..<(4 << 20)).map { Float($0 % 1000) * 0.5 }
        let small: [Float] = [7, 8, 9]
        try big.withUnsafeBufferPointer { pb in
            try small.withUnsafeBufferPointer { ps in try SafeTensors.write([("big", [4096, 1024], pb), ("small", [3], ps)], to: path) }
        }
        let file = try SafeTensorsFile(path: path)
        #expect(try file.values("small") == small)
        #expect(try file.info("big").fileByteRange.count == big.count * 4)
        let values = try file.values("big")
        #expect(values == big)
    }

    /// Each malformed file, the kind of error it must give, and a word the detail must contain.
    static let malformed: [(label: String, bytes: [UInt8], kind: DataError.Kind, mentions: String)] = {
        let four: [UInt8] = [0, 0, 128, 63]  // 1.0f
        func file(_ header: String, _ data: [UInt8] = four) -> [UInt8] { Support.safetensors(header: header, data: data) }
        let good = #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        return [
            ("short", [1, 2, 3], .truncated, "8"),
            ("header too long", Support.bytes(UInt64(1000)) + Array(good.utf8), .truncated, "header length"),
            ("header length huge", Support.bytes(UInt64.max) + Array(good.utf8), .truncated, "header length"),
            ("not json", file("{nope}"), .badHeader, "JSON"),
            ("not an object", file(#"["t"]"#), .badHeader, "'{'"),
            ("trailing garbage", file(good + "x"), .badHeader, "after"),
            ("duplicate name", file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#), .badHeader, "duplicate"),
            ("metadata not strings", file(#"{"__metadata__":{"a":1},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#), .badHeader, "__metadata__"),
            ("metadata not object", file(#"{"__metadata__":"x","t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#), .badHeader, "__metadata__"),
            ("missing dtype", file(#"{"t":{"shape":[1],"data_offsets":[0,4]}}"#), .badHeader, "'t'"),
            ("unknown key", file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#), .badHeader, "'x'"),
            ("unknown dtype", file(#"{"t":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#), .unsupported, "Q7"),
            ("negative shape", file(#"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#), .badHeader, "'t'"),
            ("fractional shape", file(#"{"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#), .badHeader, "'t'"),
            ("huge shape", file(#"{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#), .badHeader, "'t'"),
            ("size mismatch", file(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#), .sizeMismatch, "'t'"),
            ("reversed offsets", file(#"{"t":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#), .badHeader, "'t'"),
            ("offsets past end", file(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#), .truncated, "need 8"),
            ("gap at start", file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, four + four), .badHeader, "unclaimed"),
            ("trailing data", file(good, four + four), .sizeMismatch, "not claimed"),
            ("overlap", file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#), .badHeader, "overlap"),
            ("bad utf8 name", file("{\"\u{1}\":{}}"), .badHeader, "control"),
            ("deep nesting", file("{\"__metadata__\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"), .badHeader, "deeper"),
        ]
    }()

    @Test func rejectsEachMalformedHeaderNamingFileAndTensor() throws {
        for (label, bytes, kind, mentions) in Self.malformed {
            let file = try TemporaryFile(bytes, suffix: ".safetensors")
            let error = try #require(throws: DataError.self, "\(label)") { try SafeTensorsFile(path: file.path) }
            #expect(error.kind == kind, "\(label): \(error)")
            #expect(error.file == file.path, "\(label)")
            #expect(error.detail.contains(mentions), "\(label): \(error.detail)")
        }
        let missing = try #require(throws: DataError.self) { try SafeTensorsFile(path: "/nonexistent/x.safetensors") }
        #expect(missing.kind == .notFound)
    }

    @Test func acceptsWhitespacePaddingEscapesAndZeroSizedTensors() throws {
        let header = "{ \"a\\u00e9\\ud83d\\ude00\" : {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\n"
            + "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}, \"__metadata__\": {} }   "
        let file = try SafeTensorsFile(bytes: Support.safetensors(header: header, data: [0, 0, 128, 63]), file: "ok")
        #expect(file.names == ["aé😀", "z"])
        #expect(try file.values("aé😀") == [1])
        #expect(try file.values("z") == [])
        let emptyFile = try SafeTensorsFile(bytes: Support.safetensors(header: "{}", data: [], pad: true), file: "empty")
        #expect(emptyFile.names.isEmpty)
    }
}
