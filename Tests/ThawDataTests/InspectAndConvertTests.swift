// Tests for TensorFileSummary (behind `thaw inspect`) and end-to-end runs of the `thaw` executable:
// `thaw convert-torch` must give a safetensors file with exactly the checkpoint's values, and
// `thaw inspect --json` must report names, shapes, dtypes and per-group counts.
import Foundation
import Testing
import ThawData

@Suite struct InspectAndConvertTests {
    typealias Support = FormatTestSupport

    @Test func summarisesThawFilesPerGroup() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        let path = directory + "/model.safetensors"
        try SafeTensors.write([
            ("stem.conv.weight", SafeTensor(shape: [4, 1, 3, 3], values: .init(repeating: 1, count: 36))),
            ("stem.bn.running_mean", SafeTensor(shape: [4], values: .init(repeating: 0, count: 4))),
            ("head.fc.weight", SafeTensor(shape: [10, 4], values: .init(repeating: 2, count: 40))),
            ("head.fc.bias", SafeTensor(shape: [10], values: .init(repeating: 3, count: 10))),
            ("stray", SafeTensor(shape: [2], values: [1, 2])),
        ], metadata: ["format": "thaw", "groups": "stem,head"], to: path)
        let summary = try TensorFileSummary.inspect(path)
        #expect(summary.format == "safetensors")
        #expect(summary.tensors.map(\.name) == ["stem.conv.weight", "stem.bn.running_mean", "head.fc.weight", "head.fc.bias", "stray"])
        #expect(summary.tensors[0] == .init(name: "stem.conv.weight", dtype: "F32", shape: [4, 1, 3, 3], parameters: 36))
        #expect(summary.totalParameters == 92)
        #expect(summary.groups == [.init(name: "stem", tensors: 2, parameters: 40), .init(name: "head", tensors: 2, parameters: 50),
                                   .init(name: "(other)", tensors: 1, parameters: 2)])
        let text = summary.text()
        #expect(text.contains("5 tensors, 92 parameters"))
        #expect(text.contains("    stem     2 tensors, 40 parameters"))
        let decoded = try JSONDecoder().decode(TensorFileSummary.self, from: Data(summary.json().utf8))
        #expect(decoded == summary)
    }

    @Test func convertTorchThenInspectEndToEnd() throws {
        let thaw = try Support.thawExecutable()
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        let output = directory + "/tiny.safetensors"
        let convert = try Support.run(thaw, ["convert-torch", Support.fixture("tiny_legacy.pth"), "--out", output])
        #expect(convert.status == 0, "\(convert.output)")
        #expect(convert.output.contains("18 tensors"))
        let checkpoint = try TorchCheckpoint.read(Support.fixture("tiny_legacy.pth"))
        let file = try SafeTensorsFile(path: output)
        #expect(file.names == checkpoint.names)
        #expect(file.metadata["source"] == "tiny_legacy.pth")
        for name in checkpoint.names {
            let original = try #require(checkpoint.tensors[name])
            #expect(try file.tensor(name) == SafeTensor(shape: original.shape, values: original.values, dtype: "F32"), "\(name)")
        }

        let inspect = try Support.run(thaw, ["inspect", output, "--json"])
        #expect(inspect.status == 0, "\(inspect.output)")
        let summary = try JSONDecoder().decode(TensorFileSummary.self, from: Data(inspect.output.utf8))
        #expect(summary.tensors.count == 18)
        #expect(summary.tensors.first { $0.name == "4.weight" }?.shape == [4, 12])
        #expect(summary.totalParameters == checkpoint.tensors.values.reduce(0) { $0 + $1.values.count })

        let table = try Support.run(thaw, ["inspect", Support.fixture("nested_zip.pth")])
        #expect(table.status == 0 && table.output.contains("model.fc.weight") && table.output.contains("torch-zip"), "\(table.output)")

        let refused = try Support.run(thaw, ["convert-torch", directory + "/missing.pth"])
        #expect(refused.status != 0 && refused.output.contains("missing.pth"), "\(refused.output)")
    }
}
