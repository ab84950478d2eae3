// Checkpoint and resume tests with real processes: bit-exact continuation on the same world size,
// continuation on a different one, kill -9 during training never leaves a damaged checkpoint, and
// damaged or foreign checkpoints give errors that name the file and tensor.
import Foundation
import Testing
import ThawData
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct CheckpointTests {
    /// A small CNN with dropout, gradual unfreezing and a cosine schedule on 8×8 synthetic images:
    /// every piece of state a resume must restore is in play.
    static let model = "{architecture: small-cnn, classes: 3, head_dropout: 0.3}"
    static let extra = """
        training: {epochs: 4, batch_size: 16}
        schedule: {kind: cosine, warmup_steps: 3}
        optimizer: {kind: adamw, learning_rate: 0.01}
        unfreezing: {policy: gradual}
        checkpoint: {every_epochs: 1, keep_last: 10}
        """

    func scratch() throws -> ScratchRun { try ScratchRun(samples: 80, sampleShape: [1, 8, 8]) }

    /// Copies `full`'s epoch-2 checkpoint into a fresh run directory and resumes there.
    func resume(_ scratch: ScratchRun, from full: String, into name: String, ranks: Int) throws -> SpawnResult {
        let checkpoints = scratch.path("\(name)/checkpoints")
        try FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: scratch.path("\(full)/checkpoints/epoch-0002.safetensors"),
                                         toPath: checkpoints + "/epoch-0002.safetensors")
        let config = try scratch.writeConfig(name: name, extra: Self.extra, model: Self.model)
        return try runTraining(config: config, ranks: ranks, extraArguments: ["--resume", "latest"])
    }

    @Test(arguments: [1, 2])
    func resumeOnTheSameWorldSizeIsBitExact(ranks: Int) throws {
        let scratch = try scratch()
        let full = try runTraining(config: try scratch.writeConfig(name: "full", extra: Self.extra, model: Self.model), ranks: ranks)
        try #require(full.exitCode == 0, "\(full.output)")
        let resumed = try resume(scratch, from: "full", into: "resumed", ranks: ranks)
        try #require(resumed.exitCode == 0, "\(resumed.output)")
        let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("full/model.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: scratch.path("resumed/model.safetensors")))
        #expect(a == b, "resumed weights differ from the uninterrupted run")
        // The resumed run's metrics continue the epochs and match the uninterrupted ones.
        let fullEpochs = try epochRecords(scratch.path("full"))
        let resumedEpochs = try epochRecords(scratch.path("resumed"))
        #expect(resumedEpochs.map { $0["epoch"] as? Int } == [2, 3])
        #expect(resumedEpochs.map { ($0["train"] as? [String: Any])?["loss"] as? Double }
                == fullEpochs.suffix(2).map { ($0["train"] as? [String: Any])?["loss"] as? Double })
    }

    @Test func resumeOnADifferentWorldSizeFinishes() throws {
        let scratch = try scratch()
        let full = try runTraining(config: try scratch.writeConfig(name: "full", extra: Self.extra, model: Self.model), ranks: 1)
        try #require(full.exitCode == 0, "\(full.output)")
        for ranks in [2, 3] {
            let resumed = try resume(scratch, from: "full", into: "resumed\(ranks)", ranks: ranks)
            try #require(resumed.exitCode == 0, "\(resumed.output)")
            #expect(resumed.output.contains("written by 1 rank(s), now \(ranks)"))
            let final = try #require(try epochRecords(scratch.path("resumed\(ranks)")).last)
            let reference = try #require(try epochRecords(scratch.path("full")).last)
            let accuracy = try #require((final["train"] as? [String: Any])?["accuracy"] as? Double)
            let referenceAccuracy = try #require((reference["train"] as? [String: Any])?["accuracy"] as? Double)
            #expect(final["epoch"] as? Int == 3)
            #expect(abs(accuracy - referenceAccuracy) < 0.15, "\(ranks) ranks: \(accuracy) vs \(referenceAccuracy)")
            #expect(final["trainable_groups"] as? [String] == ["stem", "block1", "head"])
        }
    }

    /// kill -9 at varied moments while epochs and checkpoints are being written: whatever is in
    /// checkpoints/ under its final name always loads, and `--resume latest` always works.
    @Test func killDuringTrainingNeverLeavesADamagedCheckpoint() throws {
        let scratch = try scratch()
        // Far more epochs than fit in the delays: every run is killed part-way, mid-epoch or mid-write.
        let extra = Self.extra.replacingOccurrences(of: "epochs: 4", with: "epochs: 100000")
        let config = try scratch.writeConfig(name: "killed", extra: extra, model: Self.model)
        let thaw = try #require(thawExecutablePath())
        var sawCheckpoint = false
        for delay in [0.9, 1.3, 1.7, 2.1, 2.6] {
            let result = try spawnProcessGroup([thaw, "train", "--config", config, "--progress", "quiet"]
                                               + (sawCheckpoint ? ["--resume", "latest"] : []),
                                               hangGuardSeconds: delay)
            #expect(result.timedOut, "the run ended by itself before the kill:\n\(result.output)")
            let directory = scratch.path("killed/checkpoints")
            for name in Checkpoint.epochFiles(in: directory) + ["best.safetensors"] {
                let path = directory + "/" + name
                guard FileManager.default.fileExists(atPath: path) else { continue }
                sawCheckpoint = true
                #expect(throws: Never.self, "\(name) is damaged") { try Checkpoint.load(path) }
            }
        }
        #expect(sawCheckpoint, "no checkpoint was ever written; the delays are too short for this machine")
    }

    @Test func damagedAndForeignCheckpointsAreRefusedByName() throws {
        let scratch = try scratch()
        let config = try scratch.writeConfig(name: "one", extra: Self.extra.replacingOccurrences(of: "epochs: 4", with: "epochs: 1"), model: Self.model)
        let run = try runTraining(config: config, ranks: 1)
        try #require(run.exitCode == 0, "\(run.output)")
        let path = scratch.path("one/checkpoints/epoch-0001.safetensors")

        // A truncated copy.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let truncated = scratch.path("truncated.safetensors")
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let broken = try runTraining(config: config, ranks: 1, extraArguments: ["--resume", truncated])
        #expect(broken.exitCode != 0)
        #expect(broken.output.contains("truncated.safetensors"), "\(broken.output)")

        // A checkpoint of another architecture is refused by the key that differs.
        let mlp = try scratch.writeConfig(name: "mlp", extra: "training: {epochs: 1}", model: "{architecture: mlp, classes: 3}")
        let foreign = try runTraining(config: mlp, ranks: 1, extraArguments: ["--resume", path])
        #expect(foreign.exitCode != 0)
        #expect(foreign.output.contains("model.architecture") && foreign.output.contains("small-cnn"), "\(foreign.output)")

        // The weights saved with the model are not a checkpoint.
        let weights = try runTraining(config: config, ranks: 1, extraArguments: ["--resume", scratch.path("one/model.safetensors")])
        #expect(weights.exitCode != 0)
        #expect(weights.output.contains("not a Thaw checkpoint"), "\(weights.output)")
    }
}
