// Runs started wrongly or going wrong: a launch option given to one rank only, a configuration
// that differs by one key, a rate that makes AdamW diverge, and resumes whose configuration
// changed. Each must stop every rank within seconds with the option, key, epoch or step named,
// or say what it applies, and never hang, run on silently or lose a checkpoint.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawData
import ThawTesting

@Suite(.serialized) struct HostileRunTests {
    /// `mpirun -np 1 thaw train A : -np 1 thaw train B`: two ranks started differently.
    func mismatchedRanks(_ scratch: ScratchRun, config: String, first: [String], second: [String]) throws -> SpawnResult {
        let thaw = try #require(thawExecutablePath())
        let train = [thaw, "train", "--config", config, "--progress", "quiet"]
        return try spawnProcessGroup(localMPIRun + ["-np", "1"] + train + first + [":", "-np", "1"] + train + second, hangGuardSeconds: 120)
    }

    @Test func aLaunchOptionGivenToOneRankFailsEveryRankAndNamesIt() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "options", extra: "training: {epochs: 1, batch_size: 12}")
        for (option, value) in [("--coordinator", "tcp://127.0.0.1:9"), ("--resume", "latest")] {
            let started = Date()
            let result = try mismatchedRanks(scratch, config: config, first: [], second: [option, value])
            #expect(!result.timedOut && result.exitCode != 0, "\(result.output)")
            #expect(result.output.contains("ranks disagree on launch option \(option): none on rank 0; \(value) on rank 1"), "\(result.output)")
            #expect(Date().timeIntervalSince(started) < 30, "the mismatch took \(Date().timeIntervalSince(started)) s to fail")
        }
    }

    @Test func aConfigurationMismatchNamesTheKeyAndEachRanksValue() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "keys", extra: "training: {epochs: 1, batch_size: 12}")
        let result = try mismatchedRanks(scratch, config: config, first: [], second: ["--set", "optimizer.momentum=0.5"])
        #expect(!result.timedOut && result.exitCode != 0)
        #expect(result.output.contains("ranks disagree on configuration key optimizer.momentum: 0.9"), "\(result.output)")
        #expect(result.output.contains("0.5 on rank 1"), "\(result.output)")
    }

    @Test func divergenceStopsEveryOptimizerAndKeepsEarlierCheckpoints() throws {
        // Labels drawn apart from the features: at a huge rate the logits, and with them the loss, explode.
        let scratch = try ScratchRun(samples: 120, randomLabels: true)
        for kind in ["adamw", "sgd"] {
            let config = try scratch.writeConfig(name: "diverge-\(kind)", extra: """
                training: {epochs: 3, batch_size: 12}
                optimizer: {kind: \(kind), learning_rate: 0.01}
                """)
            let first = try runTraining(config: config, ranks: 2, extraArguments: ["--set", "training.epochs=1"])
            try #require(first.exitCode == 0, "\(first.output)")
            let checkpoint = scratch.path("diverge-\(kind)/checkpoints/epoch-0001.safetensors")
            let before = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
            let resumed = try runTraining(config: config, ranks: 2, extraArguments: [
                "--resume", "latest", "--set", "optimizer.learning_rate=1000", "--progress", "lines"])
            #expect(resumed.exitCode != 0, "\(kind) at learning rate 1000 ran on:\n\(resumed.output)")
            #expect(resumed.output.contains("resume: optimizer.learning_rate = 1000"), "\(resumed.output)")
            #expect(resumed.output.contains("at epoch 2, step"), "the failure must count epochs from 1:\n\(resumed.output)")
            #expect(resumed.output.contains("diverged") || resumed.output.contains("NaN or infinite"), "\(resumed.output)")
            #expect(resumed.output.contains("optimizer.learning_rate"))
            #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint)) == before, "the checkpoint written before changed")
            #expect(!FileManager.default.fileExists(atPath: scratch.path("diverge-\(kind)/checkpoints/epoch-0002.safetensors")))
        }
    }

    @Test func aResumeSaysWhatChangedAppliesNewRatesAndRefusesAnotherOptimizer() throws {
        let scratch = try ScratchRun(samples: 120)
        let config = try scratch.writeConfig(name: "changes", extra: """
            training: {epochs: 3, batch_size: 12}
            unfreezing: {policy: gradual, discriminative_factor: 2}
            """)
        let first = try runTraining(config: config, ranks: 1, extraArguments: ["--set", "training.epochs=1"])
        try #require(first.exitCode == 0, "\(first.output)")

        let refused = try runTraining(config: config, ranks: 1, extraArguments: ["--resume", "latest", "--set", "optimizer.kind=adamw"])
        #expect(refused.exitCode != 0)
        #expect(refused.output.contains("optimizer.kind") && refused.output.contains("sgd") && refused.output.contains("model.pretrained"),
                "\(refused.output)")

        let resumed = try runTraining(config: config, ranks: 1, extraArguments: [
            "--resume", "latest", "--set", "optimizer.learning_rate=0.2", "--set", "unfreezing.discriminative_factor=4", "--progress", "lines"])
        try #require(resumed.exitCode == 0, "\(resumed.output)")
        #expect(resumed.output.contains("resume: optimizer.learning_rate = 0.2 (the checkpoint's run had 0.05"), "\(resumed.output)")
        #expect(resumed.output.contains("resume: unfreezing.discriminative_factor = 4"), "\(resumed.output)")
        #expect(resumed.output.contains("resume: training.epochs = 3 (the checkpoint's run had 1)"), "\(resumed.output)")
        // The plans after the resume carry the new rates: head 0.2, the group below 0.05.
        let text = try String(contentsOfFile: scratch.path("changes/metrics.jsonl"), encoding: .utf8)
        let plans = text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
            .filter { $0["kind"] as? String == "plan" }
        let last = try #require(plans.last)
        let rates = try #require((last["learning_rates"] ?? (last["plan"] as? [String: Any])?["learning_rates"]) as? [String: Double], "\(last)")
        #expect(abs((rates["head"] ?? 0) - 0.2) < 1e-6 && abs((rates["hidden2"] ?? 0) - 0.05) < 1e-6, "\(rates)")
    }
}
