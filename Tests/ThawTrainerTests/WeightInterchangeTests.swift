// Weights in and out: export a checkpoint and load it back as pretrained weights (lenient and
// strict), with reports naming missing, unexpected and mis-shaped tensors; NPZ archives.
import Foundation
import Testing
import ThawData
import ThawNN
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
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

        // A model with a new head (5 classes): the head is expected to differ, so even a strict load
        // keeps it fresh and loads the rest.
        section.classes = 5
        let other = try ModelZoo.build(section, sampleShape: [6], seed: 123)
        let freshHead = other.store.values(of: "head.fc.weight")
        let newHead = try ModelZoo.loadPretrained(exported, into: other, architecture: "mlp", strict: true)
        #expect(newHead.replaced == ["head.fc.weight", "head.fc.bias"])
        #expect(other.store.values(of: "head.fc.weight") == freshHead)
        #expect(other.store.values(of: "hidden1.fc.weight") == source["hidden1.fc.weight"]?.values)

        // A body that does not fit (hidden width 128 vs the file's 256) is a shape mismatch:
        // strict refuses, naming it, and changes nothing.
        let narrow = try Model(groups: MultilayerPerceptron.groups(inputSize: 6, hidden: 128, classes: 3), sampleShape: [6], seed: 5)
        let before = narrow.store.values(of: "hidden2.fc.weight")
        #expect {
            try ModelZoo.loadPretrained(exported, into: narrow, architecture: "mlp", strict: true)
        } throws: { error in
            let text = "\(error)"
            return text.contains("exported.safetensors") && text.contains("hidden1.fc.weight (file [256, 6], model [128, 6])")
        }
        #expect(narrow.store.values(of: "hidden2.fc.weight") == before)
        let lenient = try ModelZoo.loadPretrained(exported, into: narrow, architecture: "mlp", strict: false)
        #expect(lenient.shapeMismatched.count == 4)
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
