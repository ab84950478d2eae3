// Hostile and unlucky weight files (issue 15): Thaw's own safetensors files read as safetensors
// whatever byte their header length starts with, and PyTorch files are still told apart by their
// structure; pickles with tens of thousands of entries in one SETITEMS or APPENDS are read in linear
// time; zip entries that declare more than their tensors need are refused before they are inflated,
// and the peak memory of `thaw inspect` on them stays small.
import Foundation
import Testing
@testable import ThawData

@Suite struct HostileFileTests {
    typealias Support = FormatTestSupport

    // MARK: - Format detection

    /// The safetensors header length of the file at `path` (its first 8 bytes).
    static func headerLength(_ path: String) throws -> UInt64 {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)).prefix(8))
        return bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Writes `tensors` with Thaw's writer, with a metadata entry padded so that the header length's
    /// low byte is `lowByte` (a multiple of 8, as the writer pads the header to 8 bytes).
    static func thawFile(_ tensors: [(name: String, tensor: SafeTensor)], lowByte: UInt8, to path: String) throws -> UInt64 {
        try SafeTensors.write(tensors, metadata: ["format": "thaw", "padding": ""], to: path)
        let padding = Int((UInt64(lowByte) &- (try headerLength(path))) & 0xFF)
        try SafeTensors.write(tensors, metadata: ["format": "thaw", "padding": String(repeating: "x", count: padding)], to: path)
        return try headerLength(path)
    }

    static let tensors: [(name: String, tensor: SafeTensor)] = [
        ("stem.conv.weight", SafeTensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])),
        ("head.fc.bias", SafeTensor(shape: [2], values: [-1, 0.5])),
    ]

    @Test func thawFilesAreSafetensorsWhateverByteTheirHeaderLengthStartsWith() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        for lowByte in stride(from: 0, to: 256, by: 8).map(UInt8.init) {
            let path = directory + "/model-\(lowByte).safetensors"
            let length = try Self.thawFile(Self.tensors, lowByte: lowByte, to: path)
            try #require(length & 0xFF == UInt64(lowByte), "header length \(length)")
            let summary = try TensorFileSummary.inspect(path)
            #expect(summary.format == "safetensors", "low byte \(lowByte)")
            #expect(summary.tensors.map(\.name) == ["stem.conv.weight", "head.fc.bias"], "low byte \(lowByte)")
            let tensors = try TensorFileFormat.readTensors(path)
            #expect(tensors["stem.conv.weight"]?.values == [1, 2, 3, 4, 5, 6] && tensors["head.fc.bias"]?.values == [-1, 0.5], "low byte \(lowByte)")
        }
        // The case the black-box test found (0x80, PROTO's opcode), also under a PyTorch-like name:
        // the content decides, not the name.
        let renamed = directory + "/weights.pth"
        try FileManager.default.copyItem(atPath: directory + "/model-128.safetensors", toPath: renamed)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: renamed)))
        #expect(bytes[0] == 0x80)
        #expect(TensorFileFormat.detect(bytes) == .safetensors)
        #expect(try TensorFileSummary.inspect(renamed).format == "safetensors")
        #expect(try TensorFileFormat.readTensors(renamed)["head.fc.bias"]?.values == [-1, 0.5])
        let error = try #require(throws: DataError.self) { try TorchCheckpoint.read(renamed) }
        #expect(error.file == renamed && error.detail.contains("is a safetensors file"), "\(error)")
    }

    @Test(arguments: [("tiny_zip.pth", TensorFileFormat.torchZip), ("tiny_zip_protocol4.pth", .torchZip), ("tiny_zip_deflated.pth", .torchZip),
                      ("nested_zip.pth", .torchZip), ("tiny_legacy.pth", .torchLegacy)])
    func torchFixturesAreToldApartByStructure(fixture: String, format: TensorFileFormat) throws {
        let path = Support.fixture(fixture)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(TensorFileFormat.detect(bytes) == format)
        #expect(try TensorFileSummary.inspect(path).format == format.rawValue)
        #expect(try TensorFileFormat.readTensors(path).count == TorchCheckpoint.read(path).tensors.count)
        // A truncated archive is still a zip, so the zip reader names what is missing.
        if format == .torchZip {
            let truncated = try TemporaryFile(Array(bytes.dropLast(30)), suffix: ".pth")
            #expect(TensorFileFormat.detect(Array(bytes.dropLast(30))) == .torchZip)
            let error = try #require(throws: DataError.self) { try TensorFileSummary.inspect(truncated.path) }
            #expect(error.kind == .truncated && error.file == truncated.path, "\(error)")
        }
        // A legacy file of pickle protocol 4 (with a FRAME before the magic number) is detected too.
        if format == .torchLegacy {
            let framed: [UInt8] = [0x80, 0x04, 0x95] + Support.bytes(UInt64(13)) + [0x8A, 0x0A] + TorchCheckpoint.legacyMagic + [0x2E]
            #expect(TensorFileFormat.detect(framed + bytes.dropFirst(15)) == .torchLegacy)
        }
    }

    @Test func filesThatFitNoFormatAreRefusedNamingTheFile() throws {
        let truncated = Array(Support.safetensors(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: []).prefix(30))
        let cases: [(label: String, bytes: [UInt8], mentions: String)] = [
            ("empty", [], "too short"),
            ("text", Array("hello, world".utf8), "header length"),
            ("plain pickle", [0x80, 0x02, 0x7D, 0x71, 0x00, 0x2E] + [UInt8](repeating: 0x2E, count: 8), "not a PyTorch zip archive"),
            ("pickle of another number", [0x80, 0x02, 0x8A, 0x0A] + [UInt8](repeating: 7, count: 10) + [0x2E], "legacy PyTorch"),
            ("zip magic only", [0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 0, count: 80), "zip archive"),
            ("truncated safetensors", truncated, "does not fit"),
        ]
        for (label, bytes, mentions) in cases {
            let file = try TemporaryFile(bytes, suffix: ".safetensors")
            #expect(TensorFileFormat.detect(bytes) == nil, "\(label)")
            let error = try #require(throws: DataError.self, "\(label)") { try TensorFileSummary.inspect(file.path) }
            #expect(error.file == file.path && error.kind == .badMagic, "\(label): \(error)")
            #expect(error.detail.contains(mentions), "\(label): \(error.detail)")
            #expect(throws: DataError.self, "\(label)") { try TensorFileFormat.readTensors(file.path) }
        }
    }

    // MARK: - Bulk pickle opcodes

    @Test(.timeLimit(.minutes(1))) func twentyThousandTensorsInOneSetItemsAreRead() throws {
        let count = 20_000
        let names = (0..<count).map { "layer\($0).weight" }
        // Zip: one storage per tensor, as torch writes them.
        let zipPickle = PickleBuilder.stateDict(names, memoize: true) { builder, index in builder.tensor(key: "\(index)", elements: 1, shape: [1]) }
        let zip = HostileFiles.torchZip(pickle: zipPickle, storages: (0..<count).map { .stored("\($0)", Support.bytes(Float($0).bitPattern)) })
        let fromZip = try TorchCheckpoint.parse(zip, file: "many.pth")
        #expect(fromZip.names == names)
        #expect(fromZip.tensors["layer12345.weight"]?.values == [12345])
        // Legacy: every tensor a view of one storage.
        let legacyPickle = PickleBuilder.stateDict(names) { builder, _ in builder.tensor(key: "0", elements: 2, shape: [2], legacy: true) }
        let legacy = try TorchCheckpoint.parse(HostileFiles.torchLegacy(objectPickle: legacyPickle, storages: [("0", [3, 4])]), file: "many.pth")
        #expect(legacy.names.count == count)
        #expect(legacy.tensors["layer19999.weight"]?.values == [3, 4])
    }

    /// Runs one pickle with every persistent id accepted.
    static func unpickle(_ bytes: [UInt8]) throws(DataError) -> PickleValue {
        let copy = MappedFile(copying: bytes)
        return try RestrictedUnpickler(bytes: copy.bytes, position: 0, file: "bulk.pkl") { _ throws(DataError) in .none }.load()
    }

    @Test(.timeLimit(.minutes(1))) func twoHundredThousandEntriesInOneSetItemsOrAppends() throws {
        let count = 200_000
        let dictionary = PickleBuilder.stateDict((0..<count).map { "k\($0)" }, memoize: true) { builder, index in builder.int(index) }
        guard case .dict(let dict) = try Self.unpickle(dictionary) else { Issue.record("not a dict"); return }
        #expect(dict.entries.count == count)
        var list = PickleBuilder()
        list.bytes += [0x5D, 0x28]
        for index in 0..<count { list.int(index) }
        list.bytes += [0x65, 0x2E]  // APPENDS, STOP
        guard case .list(let items) = try Self.unpickle(list.bytes) else { Issue.record("not a list"); return }
        #expect(items.items.count == count)
        if case .int(let last) = items.items.last { #expect(last == count - 1) } else { Issue.record("last item is not an int") }

        // The same dict as a whole legacy checkpoint through `thaw inspect`: its entries are counted
        // (as not tensors) and the process's peak memory stays within reason for a 3 MB file.
        let file = try TemporaryFile(HostileFiles.torchLegacy(objectPickle: dictionary, storages: []), suffix: ".pth")
        let run = try runMeasuringMemory([try Support.thawExecutable(), "inspect", file.path, "--json"])
        #expect(run.status == 0, "\(run.output.prefix(500))")
        let summary = try JSONDecoder().decode(TensorFileSummary.self, from: Data(run.output.utf8))
        #expect(summary.skipped.count == count)
        #expect(run.peakResidentBytes < 200 << 20, "peak \(run.peakResidentBytes >> 20) MB")
    }

    // MARK: - Zip entries that declare more than their tensors need

    /// 1 GiB of zeros, deflated (about 1 MB).
    static let gibibyteOfZeros = HostileFiles.deflatedZeros(1 << 30)

    /// A zip checkpoint with one tensor `t` of 4 floats viewing storage "0" of `elements` floats, whose entry is `storage`.
    static func bombFile(elements: Int, storage: ZipBuilderEntry) throws -> TemporaryFile {
        let pickle = PickleBuilder.stateDict(["t"]) { builder, _ in builder.tensor(key: "0", elements: elements, shape: [4]) }
        var entry = storage
        entry.name = "0"
        return try TemporaryFile(HostileFiles.torchZip(pickle: pickle, storages: [entry]), suffix: ".pth")
    }

    /// `thaw inspect FILE` in a child process, with its peak memory.
    static func inspect(_ file: TemporaryFile) throws -> MeasuredRun {
        try runMeasuringMemory([try Support.thawExecutable(), "inspect", file.path])
    }

    @Test(.timeLimit(.minutes(2))) func entryDeclaringMoreThanItsStorageIsRefusedBeforeInflating() throws {
        let zeros = Self.gibibyteOfZeros
        let deflated = ZipBuilderEntry(name: "0", data: zeros.data, method: 8, declaredSize: 1 << 30, crc: zeros.crc)
        // Stored: the central directory claims 1 GiB for 16 bytes of data.
        let stored = ZipBuilderEntry(name: "0", data: [UInt8](repeating: 0, count: 16), declaredSize: 1 << 30, crc: 0)
        for (label, entry) in [("deflated", deflated), ("stored", stored)] {
            let file = try Self.bombFile(elements: 4, storage: entry)
            #expect(try Data(contentsOf: URL(fileURLWithPath: file.path)).count < 4 << 20, "\(label)")
            let error = try #require(throws: DataError.self, "\(label)") { try TorchCheckpoint.read(file.path) }
            #expect(error.file == file.path && error.kind == .sizeMismatch, "\(label): \(error)")
            #expect(error.detail.contains("'archive/data/0'") && error.detail.contains("storage '0' (4 F32 elements) needs exactly 16")
                    && error.detail.contains("before inflating"), "\(label): \(error.detail)")
            let run = try Self.inspect(file)
            #expect(run.status != 0 && run.output.contains(file.path) && run.output.contains("archive/data/0"), "\(label): \(run.output)")
            #expect(run.peakResidentBytes < 100 << 20, "\(label): peak \(run.peakResidentBytes >> 20) MB")
        }
    }

    @Test(.timeLimit(.minutes(2))) func storageLargerThanItsViewsKeepsOnlyWhatTheyRead() throws {
        // The pickle itself declares a 1 GiB storage, of which the tensor views 16 bytes: the entry is
        // honest, so it loads, but only those 16 bytes are kept while the rest streams past the CRC check.
        let zeros = Self.gibibyteOfZeros
        let file = try Self.bombFile(elements: 1 << 28, storage: ZipBuilderEntry(name: "0", data: zeros.data, method: 8, declaredSize: 1 << 30, crc: zeros.crc))
        let checkpoint = try TorchCheckpoint.read(file.path)
        #expect(checkpoint.tensors["t"]?.values == [0, 0, 0, 0])
        let run = try Self.inspect(file)
        #expect(run.status == 0 && run.output.contains("1 tensors, 4 parameters"), "\(run.output)")
        #expect(run.peakResidentBytes < 100 << 20, "peak \(run.peakResidentBytes >> 20) MB")
    }

    @Test(.timeLimit(.minutes(2))) func inflationStopsAtTheDeclaredSize() throws {
        // The directory honestly-looking says 16 bytes, but the deflate stream holds 1 GiB.
        let zeros = Self.gibibyteOfZeros
        let file = try Self.bombFile(elements: 4, storage: ZipBuilderEntry(name: "0", data: zeros.data, method: 8, declaredSize: 16,
                                                                           crc: ZipBuilderEntry.crc32([UInt8](repeating: 0, count: 16))))
        let error = try #require(throws: DataError.self) { try TorchCheckpoint.read(file.path) }
        #expect(error.file == file.path && error.detail.contains("'archive/data/0'") && error.detail.contains("does not inflate to the 16 bytes"), "\(error)")
        let run = try Self.inspect(file)
        #expect(run.status != 0 && run.output.contains("archive/data/0"), "\(run.output)")
        #expect(run.peakResidentBytes < 100 << 20, "peak \(run.peakResidentBytes >> 20) MB")
    }

    @Test(.timeLimit(.minutes(2))) func pickleEntryDeclaringAGibibyteIsRefusedBeforeInflating() throws {
        let zeros = Self.gibibyteOfZeros
        let archive = HostileFiles.zip([ZipBuilderEntry(name: "archive/data.pkl", data: zeros.data, method: 8, declaredSize: 1 << 30, crc: zeros.crc)])
        let file = try TemporaryFile(archive, suffix: ".pth")
        let error = try #require(throws: DataError.self) { try TorchCheckpoint.read(file.path) }
        #expect(error.file == file.path && error.kind == .sizeMismatch, "\(error)")
        #expect(error.detail.contains("'archive/data.pkl'") && error.detail.contains("allowed for a pickle"), "\(error.detail)")
        let run = try Self.inspect(file)
        #expect(run.status != 0 && run.peakResidentBytes < 100 << 20, "peak \(run.peakResidentBytes >> 20) MB: \(run.output)")
    }
}
