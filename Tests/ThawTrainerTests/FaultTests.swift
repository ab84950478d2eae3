// Fault tests with real processes: kill -9 one rank mid-run; the job must end promptly with an
// error, and `--resume latest` must finish with exactly the weights of an uninterrupted run.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawTesting

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct FaultTests {
    @Test func killedRankStopsTheJobAndResumeFinishesIdentically() throws {
        let scratch = try ScratchRun(samples: 400, sampleShape: [1, 8, 8])
        let extra = """
            training: {epochs: 30, batch_size: 16}
            optimizer: {kind: adamw, learning_rate: 0.005}
            checkpoint: {every_epochs: 1, keep_last: 2}
            """
        let model = "{architecture: small-cnn, classes: 3, head_dropout: 0.2}"
        // The uninterrupted reference.
        let reference = try runTraining(config: try scratch.writeConfig(name: "reference", extra: extra, model: model), ranks: 2)
        try #require(reference.exitCode == 0, "\(reference.output)")

        // The same run, with rank 1 killed once a few checkpoints exist.
        let name = "faulty"
        let config = try scratch.writeConfig(name: name, extra: extra + "\nrun: {name: \(name), output: \(scratch.path(name)), seed: 9, log_per_rank: true}", model: model)
        try (String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "run: {name: \(name), output: \(scratch.path(name)), seed: 9}\n", with: ""))
            .write(toFile: config, atomically: true, encoding: .utf8)
        let thaw = try #require(thawExecutablePath())
        let log = scratch.path("\(name)/rank-1.log")
        let checkpoints = scratch.path("\(name)/checkpoints")
        let killer = Thread {
            for _ in 0..<600 {
                usleep(50_000)
                let count = ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).filter { $0.hasPrefix("epoch-") }.count
                guard count >= 2, let text = try? String(contentsOfFile: log, encoding: .utf8),
                      let pidText = text.split(separator: "\n").first?.split(separator: " ").last, let pid = Int32(pidText) else { continue }
                kill(pid, SIGKILL)
                return
            }
        }
        killer.start()
        let started = Date()
        let crashed = try spawnProcessGroup(localMPIRun + ["-np", "2",
                                             thaw, "train", "--config", config, "--progress", "quiet"], hangGuardSeconds: 180)
        #expect(!crashed.timedOut, "the surviving rank hung after its peer died:\n\(crashed.output)")
        #expect(crashed.exitCode != 0, "the job did not notice the killed rank:\n\(crashed.output)")
        #expect(crashed.output.contains("signal 9") || crashed.output.contains("killed"), "\(crashed.output)")
        #expect(Date().timeIntervalSince(started) < 120)
        let doneBefore = try epochRecords(scratch.path(name)).count
        try #require(doneBefore >= 2 && doneBefore < 30, "the kill did not land mid-run (\(doneBefore) epochs done)")

        // Relaunch from the last checkpoint: the final weights equal the uninterrupted run's exactly.
        let resumed = try runTraining(config: config, ranks: 2, extraArguments: ["--resume", "latest"])
        try #require(resumed.exitCode == 0, "\(resumed.output)")
        let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("reference/model.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: scratch.path("\(name)/model.safetensors")))
        #expect(a == b, "the resumed run's weights differ from the uninterrupted run")
        let epochs = try epochRecords(scratch.path(name)).compactMap { $0["epoch"] as? Int }
        #expect(Set(epochs) == Set(0..<30), "metrics.jsonl lost epochs: \(epochs)")
    }
}
