// Weights in and out: export a checkpoint and load it back as pretrained weights (lenient and
// strict), with reports naming missing, unexpected and mis-shaped tensors; NPZ archives.
import Foundation
import Testing
import ThawData
import ThawNN
import ThawTesting
@testable import ThawTrainer

@Suite(.serialized) struct WeightInterchangeTests {
    @Test func exportThenLoadAsPretrainedReproducesTheWeights() throws {
        let scratch = try ScratchRun()
        let trained = try runTraining(config: try scratch.writeConfig(name: "source", extra: "training: {epochs: 1}"), ranks: 1)
        try #require(trained.exitCode == 0, "\(trained.output)")
        let thaw = try #require(thawExecutablePath())
        let exported = scratch.path("exported.safetensors")
        let export = try spawnProcessGroup([thaw, "export", "--checkpoint", "latest", "--run", scratch.path("source"), "--out", exported],
                                           hangGuardSeconds: 60)
        try #require(export.exitCode == 0, "\(export.output)")
        let file = try SafeTensors.read(exported)
        #expect(!file.tensors.keys.contains { $0.hasPrefix("optimizer.") })
        let source = try readWeights(scratch.path("source/model.safetensors"))
        for (name, tensor) in file.tensors { #expect(source[name]?.values == tensor.values, "\(name)") }

        // Load it into a fresh model: every tensor loads, the head included.
        var section = ModelSection()
        section.architecture = "mlp"
        section.classes = 3
        let model = try ModelZoo.build(section, sampleShape: [6], seed: 123)
        let report = try ModelZoo.loadPretrained(exported, into: model, architecture: "mlp", strict: true)
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.shapeMismatched.isEmpty)
        #expect(model.store.values(of: "head.fc.weight") == source["head.fc.weight"]?.values)

        // A model with a different head (5 classes): the head mismatches. Lenient loads the rest and
        // reports it; strict refuses and changes nothing.
        section.classes = 5
        let other = try ModelZoo.build(section, sampleShape: [6], seed: 123)
        let before = other.store.values(of: "hidden1.fc.weight")
        #expect {
            try ModelZoo.loadPretrained(exported, into: other, architecture: "mlp", strict: true)
        } throws: { error in
            let text = "\(error)"
            return text.contains("exported.safetensors") && text.contains("head.fc.weight (file [3, 128], model [5, 128])")
        }
        #expect(other.store.values(of: "hidden1.fc.weight") == before)
        let lenient = try ModelZoo.loadPretrained(exported, into: other, architecture: "mlp", strict: false)
        #expect(lenient.shapeMismatched.count == 2)
        #expect(other.store.values(of: "hidden1.fc.weight") == source["hidden1.fc.weight"]?.values)
    }

    @Test func missingAndUnexpectedTensorsAreNamed() throws {
        let model = try Model(groups: [LayerGroup("body", [(name: "fc", layer: Linear(2, 2))]), LayerGroup("head", [(name: "fc", layer: Linear(2, 1))])],
                              sampleShape: [2])
        let tensors: [String: (shape: [Int], values: [Float])] = [
            "body.fc.weight": ([2, 2], [1, 2, 3, 4]), "extra.weight": ([1], [0]), "bn.num_batches_tracked": ([], [3]),
        ]
        let report = try model.loadWeights(tensors, file: "w.safetensors", strict: false)
        #expect(report.loaded == ["body.fc.weight"])
        #expect(report.missing == ["body.fc.bias (body.fc.bias)"])   // the head is expected to be new
        #expect(report.unexpected == ["extra.weight"])
        #expect(throws: WeightLoadError.self) { try model.loadWeights(tensors, file: "w.safetensors", strict: true) }
    }

    @Test func npzArchivesReadLikeNPY() throws {
        let scratch = try ScratchRun()
        // Build an NPZ (stored zip of two .npy members) from the scratch NPY files with Python's zipfile.
        let npz = scratch.path("data.npz")
        let script = "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1],'w'); z.write(sys.argv[2],'x.npy'); z.write(sys.argv[3],'y.npy'); z.close()"
        let made = try spawnProcessGroup(["/usr/bin/env", "python3", "-c", script, npz, scratch.path("x.npy"), scratch.path("y.npy")], hangGuardSeconds: 60)
        try #require(made.exitCode == 0, "\(made.output)")
        let arrays = try NPZReader.read(npz)
        #expect(arrays["x"]?.shape == [61, 6])
        #expect(arrays["y"] == (try NPYReader.read(scratch.path("y.npy"))))
        #expect(throws: DataError.self) { try NPZReader.read(scratch.path("x.npy")) }
    }
}
