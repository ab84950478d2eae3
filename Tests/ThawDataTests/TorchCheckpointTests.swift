// Tests for TorchCheckpoint: the committed torch.save fixtures (zip, zip with pickle protocol 4,
// legacy, nested) against the values torch itself reported (scripts/fixtures/formats.py), refusal of
// pickles that ask for anything but state-dict content, and the real MobileNetV2 ImageNet file
// against committed checksums.
import Foundation
import Testing
@testable import ThawData

@Suite struct TorchCheckpointTests {
    typealias Support = FormatTestSupport

    /// tiny_expected.json: name -> (shape, float32 values, source dtype, position in the dict).
    static func expectedTiny() throws -> [(name: String, shape: [Int], data: [Float], dtype: String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Support.fixture("tiny_expected.json")))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]])
        return try object.map { name, entry in
            (index: try #require(entry["index"] as? Int), name: name, shape: try #require(entry["shape"] as? [Int]),
             data: try #require(entry["data"] as? [NSNumber]).map { Float($0.doubleValue) }, dtype: try #require(entry["dtype"] as? String))
        }.sorted { $0.index < $1.index }.map { ($0.name, $0.shape, $0.data, $0.dtype) }
    }

    @Test(arguments: [("tiny_zip.pth", TorchCheckpoint.Format.zip), ("tiny_zip_protocol4.pth", .zip), ("tiny_zip_deflated.pth", .zip),
                      ("tiny_legacy.pth", .legacy)])
    func readsTorchSaveFixturesExactly(file: String, format: TorchCheckpoint.Format) throws {
        let expected = try Self.expectedTiny()
        let checkpoint = try TorchCheckpoint.read(Support.fixture(file))
        #expect(checkpoint.format == format)
        #expect(checkpoint.names == expected.map(\.name))
        #expect(checkpoint.skipped.isEmpty)
        for item in expected {
            let tensor = try #require(checkpoint.tensors[item.name], "\(file) \(item.name)")
            #expect(tensor.shape == item.shape, "\(file) \(item.name)")
            #expect(tensor.dtype == item.dtype, "\(file) \(item.name)")
            #expect(Support.bits(tensor.values) == Support.bits(item.data), "\(file) \(item.name): \(tensor.values) vs \(item.data)")
        }
        // The cases the fixture was built for.
        #expect(checkpoint.tensors["1.num_batches_tracked"]?.values == [2])
        #expect(checkpoint.tensors["1.num_batches_tracked"]?.dtype == "I64")
        #expect(checkpoint.tensors["extra.transposed"]?.values == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        #expect(checkpoint.tensors["extra.slice"]?.values == [3, 3.5, 4, 5.5, 6, 6.5])
        #expect(checkpoint.tensors["extra.row"]?.values == [5, 5.5, 6, 6.5, 7])
    }

    @Test func flattensNestedDictsAndSkipsNonTensors() throws {
        let checkpoint = try TorchCheckpoint.read(Support.fixture("nested_zip.pth"))
        #expect(checkpoint.names == ["model.fc.weight", "model.fc.bias"])
        #expect(checkpoint.tensors["model.fc.weight"] == SafeTensor(shape: [2, 3], values: [0, 1, 2, 3, 4, 5], dtype: "F32"))
        #expect(checkpoint.tensors["model.fc.bias"]?.values == [0.25, -1])
        #expect(checkpoint.skipped == ["epoch", "note", "steps"])
    }

    /// A legacy checkpoint whose object pickle is `body` (protocol 2), with no storages.
    static func legacyFile(objectPickle body: [UInt8]) -> [UInt8] {
        let magic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A] + TorchCheckpoint.legacyMagic + [0x2E]
        let version: [UInt8] = [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E]  // 1001
        let sysInfo: [UInt8] = [0x80, 0x02, 0x7D, 0x2E]  // {}
        let keys: [UInt8] = [0x80, 0x02, 0x5D, 0x2E]  // []
        return magic + version + sysInfo + [0x80, 0x02] + body + keys
    }

    @Test func refusesGlobalsAndOpcodesOutsideTheAllowList() throws {
        func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
        let cases: [(label: String, pickle: [UInt8], mentions: String)] = [
            ("os.system", global("os", "system") + [0x58, 2, 0, 0, 0] + Array("ls".utf8) + [0x85, 0x52, 0x2E], "'os.system'"),
            ("builtins.eval", global("builtins", "eval") + [0x2E], "'builtins.eval'"),
            ("torch other", global("torch", "load") + [0x2E], "'torch.load'"),
            ("stack global", [0x8C, 5] + Array("posix".utf8) + [0x8C, 6] + Array("system".utf8) + [0x93, 0x2E], "'posix.system'"),
            ("INST", [0x28, 0x69] + Array("os\nsystem\n".utf8) + [0x2E], "INST"),
            ("NEWOBJ", [0x81, 0x2E], "NEWOBJ"),
            ("BINBYTES", [0x43, 1, 0x41, 0x2E], "SHORT_BINBYTES"),
            ("reduce of a non-global", [0x7D, 0x29, 0x52, 0x2E], "REDUCE"),
            ("storage called", global("torch", "FloatStorage") + [0x29, 0x52, 0x2E], "storage type"),
            ("deep nesting", [0x4E] + [UInt8](repeating: 0x85, count: 100_000) + [0x2E], "deeper than 64"),
            ("self reference", [0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E], "after being nested"),
        ]
        for (label, pickle, mentions) in cases {
            let error = try #require(throws: DataError.self, "\(label)") {
                try TorchCheckpoint.parse(Self.legacyFile(objectPickle: pickle), file: "evil.pth")
            }
            #expect(error.file == "evil.pth", "\(label)")
            #expect(error.detail.contains(mentions), "\(label): \(error.detail)")
            #expect(error.detail.contains("pickle byte"), "\(label): \(error.detail)")
        }
    }

    @Test func rejectsDamagedCheckpointsWithClearErrors() throws {
        let zip = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Support.fixture("tiny_zip.pth"))))
        let legacy = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Support.fixture("tiny_legacy.pth"))))
        // Damage one float of the first stored tensor (0.weight), found by its bytes.
        let firstWeights = try Self.expectedTiny()[0].data.prefix(2).flatMap { Support.bytes($0.bitPattern) }
        let found = try #require((0...(zip.count - 8)).first { zip[$0..<($0 + 8)].elementsEqual(firstWeights) })
        var flipped = zip
        flipped[found + 1] ^= 0xFF
        let cases: [(label: String, bytes: [UInt8], kind: DataError.Kind)] = [
            ("not a checkpoint", Array("hello".utf8), .badMagic),
            ("legacy truncated", Array(legacy.dropLast(10)), .truncated),
            ("legacy extra bytes", legacy + [0], .sizeMismatch),
            ("zip truncated", Array(zip.prefix(zip.count - 30)), .truncated),
            ("zip stored data damaged", flipped, .corruptCompression),
            ("top level not a dict", Self.legacyFile(objectPickle: [0x5D, 0x2E]), .unsupported),
        ]
        for (label, bytes, kind) in cases {
            let error = try #require(throws: DataError.self, "\(label)") { try TorchCheckpoint.parse(bytes, file: "bad.pth") }
            #expect(error.kind == kind, "\(label): \(error)")
            #expect(error.file == "bad.pth", "\(label)")
        }
    }

    @Test func refusesViewsReachingPastTheirStorage() throws {
        let storage = TorchStorageReference(key: "0", type: .float32, elementCount: 4)
        let raw: [UInt8] = (0..<4).flatMap { Support.bytes(Float($0).bitPattern) }
        try raw.withUnsafeBytes { bytes in
            let transposed = TorchTensorReference(storage: storage, offset: 0, shape: [2, 2], strides: [1, 2])
            #expect(try TorchCheckpoint.values(of: transposed, raw: bytes, name: "t", file: "f") == [0, 2, 1, 3])
            let past = TorchTensorReference(storage: storage, offset: 1, shape: [2, 2], strides: [2, 1])
            let error = try #require(throws: DataError.self) { try TorchCheckpoint.values(of: past, raw: bytes, name: "past", file: "f") }
            #expect(error.detail.contains("'past'") && error.detail.contains("past its storage"))
            let expanded = TorchTensorReference(storage: storage, offset: 0, shape: [8], strides: [0])
            #expect(throws: DataError.self) { try TorchCheckpoint.values(of: expanded, raw: bytes, name: "e", file: "f") }
            let huge = TorchTensorReference(storage: storage, offset: 0, shape: [1 << 40, 1 << 40], strides: [1, 1])
            #expect(throws: DataError.self) { try TorchCheckpoint.values(of: huge, raw: bytes, name: "h", file: "f") }
        }
    }

    /// The real torchvision MobileNetV2 ImageNet checkpoint (legacy format, 314 tensors) against the
    /// checksums torch.load gave (scripts/fixtures/formats.py): shapes, first values and the sum of bit
    /// patterns exactly; the float sum to 1e-9 relative (summation order differs).
    @Test func readsTheRealMobileNetV2Checkpoint() throws {
        let path = try Support.mobileNetCheckpoint()
        let data = try Data(contentsOf: URL(fileURLWithPath: Support.fixture("mobilenet_v2_checksums.json")))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rows = try #require(object["tensors"] as? [[Any]])
        let checkpoint = try TorchCheckpoint.read(path)
        #expect(checkpoint.format == .legacy)
        #expect(checkpoint.names.count == 314 && rows.count == 314)
        #expect(checkpoint.names.first == "features.0.0.weight")
        #expect(checkpoint.names.last == "classifier.1.bias")
        #expect(checkpoint.tensors["features.0.0.weight"]?.shape == [32, 3, 3, 3])
        #expect(checkpoint.tensors["classifier.1.weight"]?.shape == [1000, 1280])
        #expect(checkpoint.names == rows.compactMap { $0.first as? String })
        for row in rows {
            let name = try #require(row[0] as? String)
            let tensor = try #require(checkpoint.tensors[name], "\(name)")
            #expect(tensor.shape == row[1] as? [Int], "\(name)")
            let first = try #require(row[2] as? [NSNumber]).map(\.uint32Value)
            #expect(Array(Support.bits(tensor.values).prefix(5)) == first, "\(name)")
            let sum = try #require((row[3] as? NSNumber)?.doubleValue)
            let bitSum = try #require((row[4] as? NSNumber)?.uint64Value)
            #expect(tensor.values.reduce(UInt64(0)) { $0 &+ UInt64($1.bitPattern) } == bitSum, "\(name)")
            let ourSum = tensor.values.reduce(0.0) { $0 + Double($1) }
            #expect(abs(ourSum - sum) <= 1e-9 * max(1, abs(sum)), "\(name): \(ourSum) vs \(sum)")
        }
    }
}
