// thaw compare: the verdict text, the scratch recipe derived from a configuration, the class-balanced
// training subset (data.train_per_class) and class filter (data.classes), and the command end to end under mpirun with 2 ranks.
import Foundation
import Testing
import ThawPlan
import ThawData
import ThawTesting
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

@Suite struct ComparisonVerdictTests {
    @Test func verdictSaysWhetherTransferHelped() {
        let helped = ComparisonOutcome(transferAccuracy: 0.8125, scratchAccuracy: 0.75, testSamples: 16, transferRun: "a", scratchRun: "b")
        #expect(abs(helped.differencePoints - 6.25) < 1e-9)
        #expect(helped.verdict == "transfer helped by 6.25 points (81.25% pretrained vs 75.00% from scratch)")
        let hurt = ComparisonOutcome(transferAccuracy: 0.5, scratchAccuracy: 0.625, testSamples: 8, transferRun: "a", scratchRun: "b")
        #expect(hurt.verdict.hasPrefix("transfer hurt: training from scratch was 12.50 points better"), "\(hurt.verdict)")
        #expect(ComparisonOutcome.verdict(transferAccuracy: 0.5, scratchAccuracy: 0.5).hasPrefix("transfer made no difference"))
    }

    @Test func scratchRecipeKeepsEverythingButTheStart() throws {
        let config = try TrainingConfig.parse("""
            run: {name: r, output: out/r, seed: 3}
            model: {architecture: mlp, classes: 3, pretrained: w.safetensors}
            training: {epochs: 4, batch_size: 8}
            optimizer: {kind: sgd, learning_rate: 0.1}
            unfreezing: {policy: gradual, initial_groups: 1, discriminative_factor: 2.6, warmup_steps: 5}
            """)
        let scratch = ComparisonRun.scratchConfig(config)
        #expect(scratch.model.pretrained == "" && scratch.unfreezing.policy == .none && scratch.unfreezing.discriminativeFactor == 1)
        #expect(scratch.run.output == "out/r/scratch" && ComparisonRun.transferConfig(config).run.output == "out/r/transfer")
        #expect(scratch.training == config.training && scratch.optimizer == config.optimizer && scratch.data == config.data)
        #expect(scratch.schedule == config.schedule && scratch.run.seed == config.run.seed)
        #expect(ComparisonRun.transferConfig(config).unfreezing == config.unfreezing)
        var unpretrained = config
        unpretrained.model.pretrained = ""
        #expect(throws: ConfigError.self) { try ComparisonRun(config: unpretrained, progress: .quiet) }
    }

    @Test func trainPerClassAndClassesSelectBalancedSubsets() throws {
        let scratch = try ScratchRun(samples: 90, sampleShape: [4], classes: 3)
        let config = try TrainingConfig.load(path: try scratch.writeConfig(name: "balanced", extra: "", model: "{architecture: mlp, classes: 3}"),
                                             overrides: ["data.train_per_class=7"])
        let data = try DatasetCatalog.load(config.data)
        let labels = (0..<data.train.count).map { Int(data.train.label($0)) }
        #expect(labels.count == 21 && (0..<3).allSatisfy { k in labels.filter { $0 == k }.count == 7 })
        // They are the first 7 of each class in file order.
        let all = try DatasetCatalog.load(TrainingConfig.load(path: scratch.path("balanced.yaml")).data).train
        let firstSeven = (0..<3).flatMap { k in (0..<all.count).filter { Int(all.label($0)) == k }.prefix(7) }.sorted()
        #expect((data.train as? DatasetSubset<InMemoryDataset>)?.indices == firstSeven)
        #expect(throws: ConfigError.self) {
            try TrainingConfig.load(path: scratch.path("balanced.yaml"), overrides: ["data.train_per_class=7", "data.train_limit=10"])
        }
        // data.classes keeps only the listed classes in every split, before the per-class limit.
        let held = try DatasetCatalog.load(TrainingConfig.load(path: scratch.path("balanced.yaml"),
                                                               overrides: ["data.classes=[0, 2]", "data.train_per_class=4"]).data)
        #expect((0..<held.train.count).map { Int(held.train.label($0)) }.sorted() == [0, 0, 0, 0, 2, 2, 2, 2])
        let test = try #require(held.test)
        #expect(test.count == (0..<all.count).filter { all.label($0) != 1 }.count, "the test file is the training file here")
        #expect((0..<test.count).allSatisfy { test.label($0) != 1 })
        #expect(throws: (any Error).self) {
            try DatasetCatalog.load(TrainingConfig.load(path: scratch.path("balanced.yaml"), overrides: ["data.classes=[0, 3]"]).data)
        }
    }
}

@Suite(.serialized) struct CompareCommandTests {
    @Test func comparesPretrainedAndScratchUnderTwoRanks() throws {
        let scratch = try ScratchRun(samples: 96, sampleShape: [6], classes: 3)
        // Pretrained weights for the comparison: a short run on the same data.
        let source = try runTraining(config: try scratch.writeConfig(name: "source", extra: "training: {epochs: 2, batch_size: 16}"), ranks: 1)
        try #require(source.exitCode == 0, "\(source.output)")
        let recipe = try scratch.writeConfig(name: "compared", extra: """
            training: {epochs: 3, batch_size: 16}
            unfreezing: {policy: gradual, initial_groups: 1, every: 1}
            checkpoint: {every_epochs: 0}
            """, model: "{architecture: mlp, classes: 3, pretrained: \(scratch.path("source/model.safetensors"))}")
        let thaw = try #require(thawExecutablePath())
        let run = try spawnProcessGroup(localMPIRun + ["-np", "2", thaw, "compare", "--config", recipe, "--progress", "quiet", "--json"],
                                        hangGuardSeconds: 180)
        try #require(run.exitCode == 0 && !run.timedOut, "\(run.output)")
        let last = try #require(run.output.split(separator: "\n").last)
        let outcome = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        let transfer = try #require(outcome["transfer_accuracy"] as? Double), fromScratch = try #require(outcome["scratch_accuracy"] as? Double)
        #expect(abs((outcome["difference_points"] as? Double ?? .nan) - (transfer - fromScratch) * 100) < 1e-9)
        #expect(outcome["test_samples"] as? Int == 96)
        let verdict = try #require(outcome["verdict"] as? String)
        #expect(verdict.hasPrefix(transfer > fromScratch ? "transfer helped by" : transfer < fromScratch ? "transfer hurt:" : "transfer made no difference"))
        #expect(outcome["transfer_run"] as? String == scratch.path("compared/transfer"))
        #expect(FileManager.default.fileExists(atPath: scratch.path("compared/comparison.json")))

        // Each run has its own metrics; their final test accuracies are the ones compared.
        let transferEpochs = try epochRecords(scratch.path("compared/transfer"))
        let scratchEpochs = try epochRecords(scratch.path("compared/scratch"))
        #expect(transferEpochs.count == 3 && scratchEpochs.count == 3)
        #expect(transferEpochs.first?["trainable_groups"] as? [String] == ["head"], "as configured: the head first")
        #expect(scratchEpochs.first?["trainable_groups"] as? [String] == ["hidden1", "hidden2", "head"], "from scratch: everything from the start")
        #expect((transferEpochs.last?["test"] as? [String: Any])?["accuracy"] as? Double == transfer)
        #expect((scratchEpochs.last?["test"] as? [String: Any])?["accuracy"] as? Double == fromScratch)

        let table = try spawnProcessGroup([thaw, "compare", "--config", recipe, "--progress", "quiet"], hangGuardSeconds: 120)
        try #require(table.exitCode == 0, "\(table.output)")
        #expect(table.output.contains("verdict: transfer"), "\(table.output)")
        #expect(table.output.contains("pretrained (as configured):") && table.output.contains("from scratch:"))
    }

    @Test func compareWithoutPretrainedWeightsNamesTheKey() throws {
        let scratch = try ScratchRun()
        let recipe = try scratch.writeConfig(name: "nothing", extra: "training: {epochs: 1}")
        let thaw = try #require(thawExecutablePath())
        let run = try spawnProcessGroup([thaw, "compare", "--config", recipe], hangGuardSeconds: 60)
        #expect(run.exitCode != 0 && run.output.contains("model.pretrained"), "\(run.output)")
    }
}
