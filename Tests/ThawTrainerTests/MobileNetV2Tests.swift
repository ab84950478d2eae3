// MobileNetV2 against PyTorch with the real ImageNet weights: the torchvision names and shapes,
// a strict load, and forward outputs and gradients from scripts/fixtures/mobilenet_v2.py.
import Foundation
import Testing
import ThawData
import ThawKernels
import ThawNN
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

struct MobileNetV2Parity: Decodable {
    struct Values: Decodable { var shape: [Int]; var data: [Double] }
    struct Sample: Decodable { var indices: [Int]; var values: [Double]; var sum: Double }
    var eval_logits: Values
    var train_logits: Values
    var gradients: [String: Sample]
}

@Suite(.serialized) struct MobileNetV2Tests {
    func model() throws -> Model {
        var section = ModelSection()
        section.architecture = "mobilenet_v2"
        section.classes = 1000
        return try ModelZoo.build(section, sampleShape: [3, 64, 64], seed: 1)
    }

    @Test func namesAndShapesAreTorchvisions() throws {
        let model = try model()
        let weights = try TorchCheckpoint.read(try PretrainedFiles.mobileNetV2())
        let torchvision = weights.tensors.filter { !$0.key.hasSuffix("num_batches_tracked") }
        let entries = model.store.parameterEntries + model.store.stateEntries
        #expect(entries.count == torchvision.count)
        for entry in entries {
            let name = try #require(MobileNetV2.torchvisionName(entry.name))
            #expect(torchvision[name]?.shape == entry.shape, "\(entry.name) → \(name)")
        }
        #expect(model.groupNames == ["stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "head"])
        #expect(model.store.parameterCount == 3_504_872)
    }

    @Test func realWeightsMatchPyTorch() throws {
        let model = try model()
        let report = try ModelZoo.loadPretrained(try PretrainedFiles.mobileNetV2(), into: model, architecture: "mobilenet_v2", strict: true)
        #expect(report.loaded.count == 262)
        let reference = try JSONDecoder().decode(MobileNetV2Parity.self, from: Data(contentsOf: URL(fileURLWithPath: packageRoot() + "/Tests/Fixtures/mobilenet_v2_parity.json")))
        let input = GradientCheck.randomTensor([4, 3, 64, 64], seed: 11)

        // Inference (running statistics): the ImageNet logits to 1e-4 relative.
        let evalLogits = try model.forward(input, training: false).values
        #expect(relativeError(evalLogits, reference.eval_logits.data.map(Float.init)) < 1e-4)

        // Training mode (batch statistics): logits, then the gradients of sum(logits · projection).
        model.store.zeroGradients(in: 0..<model.store.parameterCount)
        let logits = try model.forward(input, training: true)
        #expect(relativeError(logits.values, reference.train_logits.data.map(Float.init)) < 1e-4)
        let projection = GradientCheck.randomTensor([4, 1000], seed: 12)
        model.backward(projection)
        // Documented tolerance for gradients through 52 batch-norm layers in float32: 1e-3 relative.
        for (name, sample) in reference.gradients {
            let entry = try #require(model.store.parameterEntries.first { MobileNetV2.torchvisionName($0.name) == name })
            let gradient = Array(model.store.gradients[entry.range])
            let scale = max(1e-6, sample.values.map(abs).max() ?? 0)
            let worst = zip(sample.indices, sample.values).map { abs(Double(gradient[$0.0]) - $0.1) }.max() ?? 0
            #expect(worst / scale < 1e-3, "\(name): \(worst / scale)")
            let sum = gradient.reduce(0.0) { $0 + Double($1) }
            #expect(abs(sum - sample.sum) <= 1e-3 * max(abs(sample.sum), scale * 10), "\(name) sum \(sum) vs \(sample.sum)")
        }
    }
}
