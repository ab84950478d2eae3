// The frozen-prefix feature cache: with it and without it a run gives the same losses and weights
// (a CNN with batch norm and a BERT with padded ids, across plans where the boundary moves, in
// memory and spilled to a file); augmentation and batch-statistics batch norm turn it off with a
// reason; 2 and 3 ranks with the cache match one process; and `thaw bench cache` prints its ratios.
import Foundation
import Testing
import ThawCollective
import ThawPlan
import ThawData
import ThawKernels
import ThawNN
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

@Suite(.serialized) struct FeatureCacheTests {
    struct Outcome {
        var records: [EpochRecord]
        var parameters: [Float]
        var notes: [String]
    }

    /// Trains in this process and returns the records, the final parameters and the notes.
    static func train(yaml: String, architecture: String, data: InMemoryDataset, extra: String = "", bertConfig: String? = nil,
                      modelOptions: String = "") throws -> Outcome {
        let config = try TrainingConfig.parse("""
            run: {output: \(FileManager.default.temporaryDirectory.appendingPathComponent("thaw-cache-\(UUID().uuidString)").path)}
            model: {architecture: \(architecture), classes: 3\(bertConfig.map { ", bert_config: \($0)" } ?? "")\(modelOptions)}
            optimizer: {kind: adamw, learning_rate: 0.003}
            \(yaml)
            \(extra)
            """)
        defer { try? FileManager.default.removeItem(atPath: config.run.output) }
        let model = try ModelZoo.build(config.model, sampleShape: data.sampleShape, seed: 3)
        let planner = try UnfreezingPlanner(settings: config.unfreezing, groupNames: model.groupNames,
                                            baseLearningRate: config.optimizer.learningRate, batchNormPolicy: config.model.frozenBatchNorm.rawValue)
        let notes = NoteRecorder()
        let trainer = try RunAssembly.trainer(config, model: model, data: TrainingData(train: data, validation: data.subset(Array(0..<20)), test: data),
                                              collective: LocalCollective(), planSource: LocalPlanSource(planner: planner, epochs: config.training.epochs),
                                              checkpoint: nil, checkpoints: nil, observers: [notes])
        let records = try trainer.run()
        // A spilled cache leaves no file behind.
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: config.run.output)) ?? []
        #expect(leftovers.allSatisfy { !$0.hasSuffix(".cache") }, "\(leftovers)")
        return Outcome(records: records, parameters: Array(model.store.parameters), notes: notes.notes)
    }

    /// 60 seeded images [1, 12, 12] of 3 classes.
    static func images() -> InMemoryDataset {
        var generator = SplitMix64(seed: 21)
        var features: [Float] = [], labels: [Int32] = []
        for _ in 0..<60 {
            let label = Int32(generator.next(below: 3))
            labels.append(label)
            for pixel in 0..<144 { features.append(Float(generator.next() >> 40) / Float(1 << 24) + (pixel % 3 == Int(label) ? 0.7 : 0)) }
        }
        return InMemoryDataset(features: features, labels: labels, sampleShape: [1, 12, 12], classCount: 3)
    }

    /// 48 seeded token-id sequences of length 8 with padding (id 0) after a random length.
    static func texts() -> InMemoryDataset {
        var generator = SplitMix64(seed: 22)
        var features: [Float] = [], labels: [Int32] = []
        for _ in 0..<48 {
            let label = Int32(generator.next(below: 3))
            labels.append(label)
            let length = 3 + generator.next(below: 6)
            for t in 0..<8 {
                features.append(t == 0 ? 2 : t < length ? Float(4 + Int(label) * 30 + generator.next(below: 30)) : 0)
            }
        }
        return InMemoryDataset(features: features, labels: labels, sampleShape: [8], classCount: 3)
    }

    static func compare(_ cached: Outcome, _ uncached: Outcome, _ what: String) {
        #expect(cached.records.count == uncached.records.count)
        for (a, b) in zip(cached.records, uncached.records) {
            #expect(abs(a.train.loss - b.train.loss) <= 1e-5 * max(1, abs(b.train.loss)), "\(what) epoch \(a.epoch): \(a.train.loss) vs \(b.train.loss)")
            let (va, vb) = (a.validation?.loss ?? .nan, b.validation?.loss ?? .nan)
            #expect(abs(va - vb) <= 1e-5 * max(1, abs(vb)), "\(what) epoch \(a.epoch) validation: \(va) vs \(vb)")
        }
        #expect(relativeError(cached.parameters, uncached.parameters) < 1e-5, "\(what): parameters differ")
    }

    static let movingPlan = """
        training: {epochs: 5, batch_size: 16}
        unfreezing: {policy: fixed, table: {"0": [head], "2": [block1, head], "4": [stem, block1, head]}}
        """

    @Test func aCNNWithBatchNormTrainsTheSameWithTheCache() throws {
        let cached = try Self.train(yaml: Self.movingPlan, architecture: "small-cnn", data: Self.images())
        let off = try Self.train(yaml: Self.movingPlan.replacingOccurrences(of: "batch_size: 16}", with: "batch_size: 16, feature_cache: {enabled: false}}"),
                                 architecture: "small-cnn", data: Self.images())
        // Epochs 1–4 ran from the cache (filled at epochs 1 and 3, when the boundary moved); epoch 5 trains everything.
        #expect(cached.records.map(\.fromCache) == [true, true, true, true, false])
        #expect(cached.records.map { $0.cacheFillSeconds != nil } == [true, false, true, false, false])
        #expect(off.records.allSatisfy { $0.fromCache == false })
        #expect(cached.notes.contains { $0.contains("computed once for 60 training samples") && $0.contains("in memory") }, "\(cached.notes)")
        #expect(cached.notes.contains { $0.hasPrefix("feature cache: dropped: the trainable boundary moved") }, "\(cached.notes)")
        #expect(off.notes.contains { $0.contains("off: training.feature_cache.enabled is false") }, "\(off.notes)")
        Self.compare(cached, off, "small-cnn")
    }

    /// A boundary the fixed schedule holds for one epoch only gets no cache (filling it would repeat the
    /// frozen forward it saves), says so, and trains the same; a boundary held for two epochs does.
    @Test func aBoundaryHeldForOneEpochIsNotCached() throws {
        let plan = """
            training: {epochs: 4, batch_size: 16}
            unfreezing: {policy: fixed, table: {"0": [head], "1": [block1, head]}}
            """
        let cached = try Self.train(yaml: plan, architecture: "small-cnn", data: Self.images())
        let off = try Self.train(yaml: plan.replacingOccurrences(of: "batch_size: 16}", with: "batch_size: 16, feature_cache: {enabled: false}}"),
                                 architecture: "small-cnn", data: Self.images())
        #expect(cached.records.map(\.fromCache) == [false, true, true, true])
        #expect(cached.notes.contains { $0.hasPrefix("feature cache: not built for epoch 1: the boundary holds for this epoch only (the schedule moves it after)") },
                "\(cached.notes)")
        #expect(!cached.notes.contains { $0.contains("not built for epoch 2") }, "\(cached.notes)")
        Self.compare(cached, off, "one-epoch boundary")
    }

    @Test func aSpilledCacheGivesTheSameRun() throws {
        let spilled = try Self.train(yaml: Self.movingPlan.replacingOccurrences(of: "batch_size: 16}", with: "batch_size: 16, feature_cache: {memory_mb: 0}}"),
                                     architecture: "small-cnn", data: Self.images())
        let off = try Self.train(yaml: Self.movingPlan.replacingOccurrences(of: "batch_size: 16}", with: "batch_size: 16, feature_cache: {enabled: false}}"),
                                 architecture: "small-cnn", data: Self.images())
        #expect(spilled.notes.contains { $0.contains("in a file") }, "\(spilled.notes)")
        #expect(spilled.records.map(\.fromCache) == [true, true, true, true, false])
        Self.compare(spilled, off, "spilled")
    }

    @Test func aBERTWithPaddedIdsTrainsTheSameWithTheCache() throws {
        let tiny = packageRoot() + "/Tests/Fixtures/bert_tiny_config.json"
        let plan = """
            training: {epochs: 4, batch_size: 12}
            unfreezing: {policy: fixed, table: {"0": [head], "2": [layer1, head]}}
            """
        let cached = try Self.train(yaml: plan, architecture: "bert", data: Self.texts(), bertConfig: tiny)
        let off = try Self.train(yaml: plan.replacingOccurrences(of: "batch_size: 12}", with: "batch_size: 12, feature_cache: {enabled: false}}"),
                                 architecture: "bert", data: Self.texts(), bertConfig: tiny)
        #expect(cached.records.map(\.fromCache) == [true, true, true, true])
        Self.compare(cached, off, "bert")
    }

    @Test func augmentationAndBatchStatisticsTurnItOffAndSayWhy() throws {
        let augmented = try Self.train(yaml: Self.movingPlan, architecture: "small-cnn", data: Self.images(),
                                       extra: "data: {crop_padding: 2, horizontal_flip: true}")
        #expect(augmented.records.allSatisfy { $0.fromCache == false })
        #expect(augmented.notes == ["feature cache: off: data augmentation (data.crop_padding, data.horizontal_flip) changes the frozen groups' input every epoch"],
                "\(augmented.notes)")
        let statistics = try Self.train(yaml: Self.movingPlan, architecture: "small-cnn", data: Self.images(),
                                        modelOptions: ", frozen_batch_norm: batch_statistics")
        #expect(statistics.records.allSatisfy { $0.fromCache == false })
        #expect(statistics.notes.first?.contains("batch statistics") == true, "\(statistics.notes)")
    }

    @Test func twoAndThreeRanksWithTheCacheMatchOneProcess() throws {
        let scratch = try ScratchRun()
        let extra = """
            training: {epochs: 4, batch_size: 12}
            unfreezing: {policy: fixed, table: {"0": [head], "2": [hidden2, head]}}
            """
        let single = try runTraining(config: try scratch.writeConfig(name: "one", extra: extra), ranks: 1)
        try #require(single.exitCode == 0, "\(single.output)")
        let reference = try readWeights(scratch.path("one/model.safetensors"))
        #expect(try epochRecords(scratch.path("one")).map { $0["from_cache"] as? Bool } == [true, true, true, true])
        for ranks in [2, 3] {
            let run = try runTraining(config: try scratch.writeConfig(name: "ranks\(ranks)", extra: extra), ranks: ranks)
            try #require(run.exitCode == 0, "\(run.output)")
            #expect(try epochRecords(scratch.path("ranks\(ranks)")).map { $0["from_cache"] as? Bool } == [true, true, true, true])
            let difference = maximumRelativeDifference(try readWeights(scratch.path("ranks\(ranks)/model.safetensors")), reference)
            #expect(difference < 1e-5, "\(ranks) ranks with the cache differ from one process by \(difference)")
        }
    }

    @Test func cacheBenchmarkPrintsItsRatios() throws {
        let scratch = try ScratchRun(samples: 1)
        let thaw = try #require(thawExecutablePath())
        let run = try spawnProcessGroup([thaw, "bench", "cache", "--config", packageRoot() + "/configs/demo.yaml", "--ranks", "1",
                                         "--repetitions", "1", "--scratch", scratch.path("bench"),
                                         "--set", "data.train_limit=128", "--set", "data.test_limit=32", "--set", "data.image_size=32",
                                         "--set", "training.epochs=2", "--set", "model.pretrained="], hangGuardSeconds: 300)
        try #require(run.exitCode == 0, "\(run.output)")
        for figure in ["head-only epoch, cached ÷ uncached: ", "cache fill ÷ uncached epoch: "] {
            let line = try #require(run.output.split(separator: "\n").first { $0.hasPrefix(figure) }, "no '\(figure)' in \(run.output)")
            let value = try #require(Double(line.dropFirst(figure.count).prefix { $0 != " " }), "\(line)")
            #expect(value > 0 && value.isFinite, "\(line)")
        }
    }

    /// Records the batch size of every training-mode forward.
    final class RowProbe: Layer {
        var rows: [Int] = []
        func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }
        func forward(_ input: Tensor, mode: LayerMode) -> Tensor {
            if mode == .training { rows.append(input.shape[0]) }
            return input
        }
        func backward(_ outputGradient: Tensor, computeInputGradient: Bool) -> Tensor? { computeInputGradient ? outputGradient : nil }
    }

    /// An epoch's last, short step runs only its real rows: padding rows would enter the batch statistics
    /// of trainable batch norm (this once made the main job's accuracy dip after each thaw).
    @Test func paddingRowsNeverReachTheModel() throws {
        let config = try TrainingConfig.parse("""
            model: {architecture: mlp, classes: 3}
            training: {epochs: 1, batch_size: 16}
            """)
        let probe = RowProbe()
        let model = try Model(groups: [LayerGroup("head", [(name: "probe", layer: probe), (name: "flatten", layer: Flatten()),
                                                           (name: "fc", layer: Linear(144, 3))])], sampleShape: [1, 12, 12], seed: 3)
        let planner = try RunAssembly.planner(config, groups: model.groupNames, resumed: nil)
        let trainer = try RunAssembly.trainer(config, model: model, data: TrainingData(train: Self.images().subset(Array(0..<20))),
                                              collective: LocalCollective(), planSource: LocalPlanSource(planner: planner, epochs: 1),
                                              checkpoint: nil, checkpoints: nil, observers: [])
        _ = try trainer.run()
        #expect(probe.rows == [16, 4], "rows the model saw per step: \(probe.rows)")
    }
}

/// Keeps the notes a trainer gives its observers.
final class NoteRecorder: RunObserver {
    var notes: [String] = []
    func note(_ text: String) { notes.append(text) }
}
