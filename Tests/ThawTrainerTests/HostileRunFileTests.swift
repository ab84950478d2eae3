// Run-level hostile-file cases (issue 15): pretrained weights are read by their structure, not their
// name (a Thaw safetensors file whose header length starts with 0x80, PROTO's opcode, under any name).
import Foundation
import Testing
import ThawData
import ThawTesting
@testable import ThawTrainer

@Suite struct HostileRunFileTests {
    /// The safetensors header length of the file at `path`.
    static func headerLength(_ path: String) throws -> UInt64 {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)).prefix(8)).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    @Test func pretrainedWeightsWhoseHeaderLengthStartsWith0x80LoadUnderAnyName() throws {
        let scratch = try ScratchRun()
        var section = ModelSection()
        section.architecture = "mlp"
        section.classes = 3
        let source = try ModelZoo.build(section, sampleShape: [6], seed: 1)
        let store = source.store
        let tensors = store.parameterEntries.map { entry in
            (name: entry.name, shape: entry.shape, values: UnsafeBufferPointer(rebasing: store.parameters[entry.range]))
        }
        // Pad a metadata value so that Thaw's writer gives a header length of 0x80 modulo 256.
        let path = scratch.path("weights.safetensors")
        try SafeTensors.write(tensors, metadata: ["padding": ""], to: path)
        let padding = Int((0x80 &- (try Self.headerLength(path))) & 0xFF)
        try SafeTensors.write(tensors, metadata: ["padding": String(repeating: " ", count: padding)], to: path)
        try #require(try Self.headerLength(path) & 0xFF == 0x80)
        let renamed = scratch.path("weights.bin")
        try FileManager.default.copyItem(atPath: path, toPath: renamed)
        for file in [path, renamed] {
            let model = try ModelZoo.build(section, sampleShape: [6], seed: 2)
            let report = try ModelZoo.loadPretrained(file, into: model, architecture: "mlp", strict: true)
            #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.shapeMismatched.isEmpty, "\(file): \(report)")
            #expect(model.store.values(of: "head.fc.weight") == source.store.values(of: "head.fc.weight"), "\(file)")
        }
    }
}
