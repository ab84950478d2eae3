// Memory in training: a steady-state epoch allocates no tensor storage; frozen groups' gradient
// and optimizer pages never become resident (checked page by page with mincore); and a real
// 2-rank run writes every rank's peak resident memory and the estimate it is compared with, which
// `thaw bench scaling` turns into ratios.
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

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct MemoryTests {
    /// 48 seeded 28×28 samples of 3 classes.
    static func data() -> InMemoryDataset {
        var generator = SplitMix64(seed: 11)
        var features: [Float] = [], labels: [Int32] = []
        for _ in 0..<48 {
            let label = Int32(generator.next(below: 3))
            labels.append(label)
            for pixel in 0..<784 { features.append(Float(generator.next() >> 40) / Float(1 << 24) + (pixel % 3 == Int(label) ? 0.5 : 0)) }
        }
        return InMemoryDataset(features: features, labels: labels, sampleShape: [1, 28, 28], classCount: 3)
    }

    /// A trainer in this process (one rank) on `architecture`, with `table` as its fixed unfreezing plan.
    static func trainer(architecture: String, table: String, epochs: Int, observers: [any RunObserver] = []) throws -> Trainer {
        let config = try TrainingConfig.parse("""
            model: {architecture: \(architecture), classes: 3}
            training: {epochs: \(epochs), batch_size: 16}
            optimizer: {kind: adamw, learning_rate: 0.001}
            unfreezing: {policy: fixed, table: \(table)}
            """)
        let model = try ModelZoo.build(config.model, sampleShape: [1, 28, 28], seed: 3)
        let planner = try UnfreezingPlanner(settings: config.unfreezing, groupNames: model.groupNames,
                                            baseLearningRate: config.optimizer.learningRate, batchNormPolicy: "running_statistics")
        let data = data()
        return try RunAssembly.trainer(config, model: model, data: TrainingData(train: data, validation: data), collective: LocalCollective(),
                                       planSource: LocalPlanSource(planner: planner, epochs: epochs), checkpoint: nil, checkpoints: nil,
                                       observers: observers)
    }

    @Test func aSteadyStateEpochAllocatesNoTensors() throws {
        // Epoch 2 thaws block1 (new backward tensors); epochs 2 and 3 run the same plan.
        let allocations = AllocationCounter()
        let trainer = try Self.trainer(architecture: "small-cnn", table: "{\"0\": [head], \"1\": [block1, head]}", epochs: 3,
                                       observers: [allocations])
        _ = try trainer.run()
        let counts = allocations.counts
        try #require(counts.count == 3)
        #expect(counts[1] > counts[0], "thawing block1 must allocate its backward tensors (else this test checks nothing)")
        #expect(counts[2] == counts[1], "the third epoch (same plan, same shapes) allocated \(counts[2] - counts[1]) tensors")
    }

    /// Which pages of `buffer` are resident: (resident, total) over the whole pages inside it.
    static func residentPages(_ buffer: UnsafeMutableBufferPointer<Float>) -> (resident: Int, total: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: buffer.baseAddress) + page - 1) / page * page
        let end = (Int(bitPattern: buffer.baseAddress) + buffer.count * 4) / page * page
        guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { return (0, 0) }
        var vector = [UInt8](repeating: 0, count: (end - start) / page)
        guard mincore(address, end - start, &vector) == 0 else { return (-1, vector.count) }
        return (vector.filter { $0 & 1 == 1 }.count, vector.count)
    }

    @Test func frozenGroupsGradientAndOptimizerPagesAreNeverResident() throws {
        // mlp: hidden1 (200,960 parameters) and hidden2 stay frozen; only the head trains.
        let trainer = try Self.trainer(architecture: "mlp", table: "{\"0\": [head]}", epochs: 2)
        _ = try trainer.run()
        let store = trainer.model.store
        let frozen = store.groupRanges[1].upperBound   // hidden1 and hidden2
        let frozenGradients = UnsafeMutableBufferPointer(rebasing: store.gradients[0..<frozen])
        let gradients = Self.residentPages(frozenGradients)
        #expect(gradients.total > 100 && gradients.resident == 0, "frozen gradient pages resident: \(gradients)")
        for (name, values) in trainer.optimizer.stateBuffers {
            let pages = Self.residentPages(UnsafeMutableBufferPointer(rebasing: values[0..<frozen]))
            #expect(pages.total > 100 && pages.resident == 0, "frozen \(name) pages resident: \(pages)")
        }
        // The trainable part was written, so it is resident: the check can see residency.
        let head = Self.residentPages(UnsafeMutableBufferPointer(rebasing: store.gradients[store.groupRanges[2]]))
        #expect(head.total == 0 || head.resident == head.total, "\(head)")
        let parameters = Self.residentPages(UnsafeMutableBufferPointer(rebasing: store.parameters[0..<frozen]))
        #expect(parameters.resident == parameters.total && parameters.total > 100, "parameters: \(parameters)")
    }

    @Test func twoRanksReportPeakResidentMemoryAndTheEstimate() throws {
        let scratch = try ScratchRun(samples: 64, sampleShape: [1, 28, 28])
        let config = try scratch.writeConfig(name: "memory", extra: """
            training: {epochs: 2, batch_size: 16}
            unfreezing: {policy: fixed, table: {"0": [head], "1": [block1, head]}}
            """, model: "{architecture: small-cnn, classes: 3}")
        let run = try runTraining(config: config, ranks: 2)
        try #require(run.exitCode == 0, "\(run.output)")
        let text = try String(contentsOfFile: scratch.path("memory/metrics.jsonl"), encoding: .utf8)
        let line = try #require(text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }.first { $0["kind"] as? String == "memory" })
        let ranks = try #require(line["ranks"] as? [[String: Any]])
        #expect(ranks.map { $0["rank"] as? Int } == [0, 1])
        var section = ModelSection()
        section.architecture = "small-cnn"
        section.classes = 3
        let model = try ModelZoo.build(section, sampleShape: [1, 28, 28], seed: 1)
        let trainable = model.store.groupRanges[1].count + model.store.groupRanges[2].count   // block1 and head at the end
        for rank in ranks {
            // SGD with momentum keeps one buffer.
            #expect(rank["trainable_gradient_bytes"] as? Int == 4 * trainable, "\(rank)")
            #expect(rank["optimizer_state_bytes"] as? Int == 4 * trainable, "\(rank)")
            let peak = try #require(rank["peak_resident_bytes"] as? Int), before = try #require(rank["resident_before_training_bytes"] as? Int)
            #expect(peak >= before && before > 0 && (rank["activation_bytes"] as? Int ?? 0) > 0, "\(rank)")
        }
        #expect(run.output.contains("memory (rank "), "\(run.output)")
    }

    @Test func scalingBenchmarkPrintsEfficiencyAndMemoryRatios() throws {
        let scratch = try ScratchRun(samples: 1)
        let thaw = try #require(thawExecutablePath())
        let run = try spawnProcessGroup([thaw, "bench", "scaling", "--config", packageRoot() + "/configs/fashion-small-cnn.yaml",
                                         "--set", "data.test_limit=64", "--set", "training.epochs=1", "--samples", "128", "--batch", "32",
                                         "--repetitions", "1", "--scratch", scratch.path("bench")], hangGuardSeconds: 180)
        try #require(run.exitCode == 0, "\(run.output)")
        for figure in ["weak-scaling efficiency, 2 ranks ÷ (2 × 1 rank): ", "peak resident ÷ estimate, worst rank: ",
                       "growth during training ÷ (estimate − parameters), worst rank: "] {
            let line = try #require(run.output.split(separator: "\n").first { $0.hasPrefix(figure) }, "no '\(figure)' in \(run.output)")
            let value = try #require(Double(line.dropFirst(figure.count).prefix { $0 != " " }), "\(line)")
            #expect(value > 0 && value.isFinite, "\(line)")
        }
    }
}

/// Counts the tensors allocated so far at the end of every epoch.
final class AllocationCounter: RunObserver {
    var counts: [Int] = []
    func epochFinished(_ record: EpochRecord, checkpoint: String?) { counts.append(Tensor.allocationCount) }
}
