// Fuzz-style robustness tests: thousands of seeded mutations and truncations of valid safetensors,
// PyTorch (zip and legacy) and NPY files, and of a raw state-dict pickle. Each must end in a thrown
// DataError or a valid parse (whose tensors then decode); none may crash or hang.
import Foundation
import Testing
import ThawKernels
@testable import ThawData

@Suite struct FormatFuzzTests {
    typealias Support = FormatTestSupport
    static let iterations = 3000

    /// A damaged copy of `bytes`: truncated, bytes changed, a field overwritten with extreme values,
    /// bytes inserted or a range removed.
    static func mutate(_ bytes: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
        var copy = bytes
        let rounds = 1 + random.below(3)
        for _ in 0..<rounds {
            let position = random.below(copy.count + 1)
            switch random.below(6) {
            case 0:
                copy = Array(copy.prefix(random.below(copy.count + 1)))
            case 1, 2:
                for _ in 0..<(1 + random.below(4)) where !copy.isEmpty { copy[random.below(copy.count)] = UInt8(truncatingIfNeeded: random.next()) }
            case 3:
                let pattern: [UInt8] = [[0xFF], [0x00], [0x7F], [0x80]][random.below(4)]
                for i in position..<min(copy.count, position + 1 + random.below(8)) { copy[i] = pattern[0] }
            case 4:
                copy.insert(contentsOf: (0..<(1 + random.below(16))).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: position)
            default:
                let end = min(copy.count, position + 1 + random.below(32))
                if position < end { copy.removeSubrange(position..<end) }
            }
        }
        return copy
    }

    /// Runs `parse` on `iterations` mutants of `seed`; returns how many parsed (the rest threw).
    static func fuzz(_ seed: [UInt8], state: UInt64, _ parse: ([UInt8]) throws(DataError) -> Void) -> (parsed: Int, failed: Int) {
        var random = SplitMix64(state: state)
        var parsed = 0
        var failed = 0
        for _ in 0..<iterations {
            do {
                try parse(mutate(seed, &random))
                parsed += 1
            } catch {
                failed += 1
            }
        }
        return (parsed, failed)
    }

    static func fixtureBytes(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: Support.fixture(name))))
    }

    @Test(.timeLimit(.minutes(1))) func mutatedSafetensorsFilesNeverCrash() throws {
        let seed = Support.safetensors(header: """
            {"__metadata__":{"groups":"a,b"},"a.w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},\
            "a.h":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"b.x":{"dtype":"BF16","shape":[2],"data_offsets":[32,36]},\
            "b.d":{"dtype":"F64","shape":[1],"data_offsets":[36,44]},"b.i":{"dtype":"I64","shape":[],"data_offsets":[44,52]}}
            """, data: (0..<52).map { UInt8($0 * 7 & 0xFF) })
        #expect(try SafeTensorsFile(bytes: seed, file: "seed").names.count == 5)
        let result = Self.fuzz(seed, state: 1) { bytes throws(DataError) in
            let file = try SafeTensorsFile(bytes: bytes, file: "fuzz.safetensors")
            for name in file.names { _ = try file.tensor(name) }
        }
        #expect(result.parsed + result.failed == Self.iterations)
        #expect(result.failed > Self.iterations / 2 && result.parsed > 0)
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["tiny_zip.pth", "tiny_zip_protocol4.pth", "tiny_zip_deflated.pth", "tiny_legacy.pth"])
    func mutatedTorchCheckpointsNeverCrash(fixture: String) throws {
        let seed = try Self.fixtureBytes(fixture)
        #expect(try TorchCheckpoint.parse(seed, file: "seed").names.count == 18)
        let result = Self.fuzz(seed, state: 2) { bytes throws(DataError) in _ = try TorchCheckpoint.parse(bytes, file: "fuzz.pth") }
        #expect(result.parsed + result.failed == Self.iterations)
        #expect(result.failed > 0 && result.parsed > 0)
    }

    /// The zip format's CRC check stops most damage before the pickle is read, so the pickle inside
    /// it is fuzzed on its own, with every persistent id accepted as a storage.
    @Test(.timeLimit(.minutes(1))) func mutatedStateDictPicklesNeverCrash() throws {
        let storage = try MappedFile(path: Support.fixture("tiny_zip_protocol4.pth"))
        let archive = try ZipArchive(storage: storage, file: "p4")
        let entry = try #require(archive.entry("tiny_zip_protocol4/data.pkl"))
        let seed = try archive.withContents(of: entry) { raw throws(DataError) in [UInt8](raw) }
        func load(_ bytes: [UInt8]) throws(DataError) -> PickleValue {
            let copy = MappedFile(copying: bytes)
            let unpickler = RestrictedUnpickler(bytes: copy.bytes, position: 0, file: "fuzz.pkl") { _ throws(DataError) in
                .storage(TorchStorageReference(key: "0", type: .float32, elementCount: 64))
            }
            return try unpickler.load()
        }
        guard case .dict(let root) = try load(seed) else { Issue.record("the seed pickle is not a dict"); return }
        #expect(root.entries.count == 18)
        let result = Self.fuzz(seed, state: 3) { bytes throws(DataError) in _ = try load(bytes) }
        #expect(result.parsed + result.failed == Self.iterations)
        #expect(result.failed > 0 && result.parsed > 0)
    }

    @Test(.timeLimit(.minutes(1))) func mutatedNPYFilesNeverCrash() throws {
        let seed = NPYTests.file(dict: NPYTests.dict("<f4", "(2, 3)"), data: NPYTests.floatBytes([0, 0.5, 1, 1.5, 2, 2.5]))
        let result = Self.fuzz(seed, state: 4) { bytes throws(DataError) in
            let array = try NPYReader.parse(bytes, file: "fuzz.npy")
            _ = array.floatValues()
        }
        #expect(result.parsed + result.failed == Self.iterations)
        #expect(result.failed > 0 && result.parsed > 0)
    }
}
