// A coordinator and `mpirun -np 2` workers running for real on loopback: status during the run,
// junk frames during the run, per-rank evidence that every plan applies at the same step, a
// coordinator killed and restarted mid-run, and an operator's stop followed by an exact resume.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawCoordinator
import ThawPlan
import ThawTesting

#if canImport(Glibc)
import Glibc
#endif

/// `mpirun -np 2 thaw train ...` in the background.
func startWorkers(config: String, coordinator: String, extra: [String] = []) throws -> BackgroundProcess {
    let thaw = try #require(thawExecutablePath())
    return try BackgroundProcess(localMPIRun + ["-np", "2", thaw, "train",
                                  "--config", config, "--progress", "quiet", "--coordinator", coordinator] + extra)
}

/// Polls status until `condition` holds (or about `seconds` pass); returns the last status.
func waitForStatus(_ coordinator: CoordinatorProcess, seconds: Double, _ condition: ([String: Any]) -> Bool) -> [String: Any] {
    var status: [String: Any] = [:]
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let current = try? coordinator.status() {
            status = current
            if condition(current) { break }
        }
        usleep(50_000)
    }
    return status
}

@Suite(.serialized) struct CoordinatorRunTests {
    /// A run long enough to be watched (several seconds): a small CNN on 3,000 16×16 images,
    /// 6 epochs, one more group every 2 epochs.
    /// The frozen-prefix cache is off: these tests need a run long enough to query, stop and kill
    /// mid-epoch, and with the cache the frozen epochs take milliseconds.
    static let extra = """
        training: {epochs: 6, batch_size: 16, feature_cache: {enabled: false}}
        unfreezing: {policy: gradual, every: 2}
        optimizer: {kind: sgd, learning_rate: 0.02, momentum: 0.9}
        """

    func config(_ scratch: ScratchRun, _ name: String, tokenFile: String? = nil) throws -> String {
        let path = try scratch.writeConfig(name: name, extra: Self.extra, model: "{architecture: small-cnn, classes: 3}")
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "seed: 9}", with: "seed: 9, log_per_rank: true}")
            .replacingOccurrences(of: "{dataset: npy,", with: "{dataset: npy, validation_size: 300,")
        if let tokenFile { text += "\ncontrol: {token_file: \(tokenFile)}" }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func statusDuringTheRunAndJunkFramesDoNotDisturbIt() throws {
        let scratch = try ScratchRun(samples: 3000, sampleShape: [1, 16, 16])
        let token = scratch.path("token")
        try "s3cret-token\n".write(toFile: token, atomically: true, encoding: .utf8)
        let config = try config(scratch, "live", tokenFile: token)
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config, "--exit-when-done"])
        let workers = try startWorkers(config: config, coordinator: coordinator.endpoint)

        // Status while training: every field filled.
        let live = waitForStatus(coordinator, seconds: 60) { status in
            status["state"] as? String == "running" && (status["samples_per_second"] as? Double) != nil
                && ((status["metrics"] as? [String: Any])?["history"] as? [Any])?.isEmpty == false
                && (status["ranks"] as? [[String: Any]])?.count == 2
        }
        #expect(live["state"] as? String == "running", "\(live)\n\(workers.output)")
        for key in ["epoch", "step", "samples_per_second", "schedule", "bytes_exchanged_per_step", "checkpoint"] {
            #expect(!(live[key] is NSNull) && live[key] != nil, "status field \(key) is empty during the run: \(live)")
        }
        let metrics = try #require(live["metrics"] as? [String: Any])
        for key in ["train_loss", "val_loss", "val_accuracy"] {
            #expect(metrics[key] is Double, "metrics.\(key) is empty during the run: \(metrics)")
        }
        #expect(live["error"] is NSNull)
        let ranks = live["ranks"] as? [[String: Any]] ?? []
        #expect(ranks.allSatisfy { $0["alive"] as? Bool == true && ($0["pid"] as? Int ?? 0) > 0 })
        let schedule = try #require(live["schedule"] as? [String: Any])
        let rates = try #require(schedule["learning_rates"] as? [String: Double])
        #expect(abs((rates["head"] ?? 0) - 0.02) < 1e-9)
        if let block1 = rates["block1"] { #expect(abs(block1 - 0.02 / 2.6) < 1e-8) }

        // Junk during the run: malformed, unknown, wrong types, a wrong token, an oversized frame.
        var generator = SystemRandomNumberGenerator()
        let randomBytes = String(decoding: (0..<200).map { _ in UInt8.random(in: 0...255, using: &generator) }, as: UTF8.self)
        for junk in [randomBytes, "{{{", #"{"type": "hello"}"#, #"{"type": "heartbeat", "rank": 0, "step": "x"}"#, #"{"type": "shutdown"}"#] {
            #expect(try coordinator.request(junk)["type"] as? String == "error")
        }
        let refused = try coordinator.request(#"{"type": "control", "command": "stop", "token": "guess"}"#)
        #expect(refused["type"] as? String == "error" && refused["field"] as? String == "token")
        let context = try ZMQContext()
        let stranger = try JSONRequester(context: context, address: coordinator.endpoint)
        #expect(throws: ZMQError.self) { try stranger.request(Array(repeating: 0x41, count: 2 << 20), timeout: 1) }
        #expect(try coordinator.status()["state"] as? String != nil)

        #expect(workers.waitForExit(seconds: 120), "the workers did not finish:\n\(workers.output)")
        let finished = waitForStatus(coordinator, seconds: 10) { $0["state"] as? String == "finished" }
        #expect(finished["state"] as? String == "finished", "\(finished)")
        let history = (finished["metrics"] as? [String: Any])?["history"] as? [[String: Any]] ?? []
        #expect(history.compactMap { ($0["trainable_groups"] as? [String])?.count } == [1, 1, 2, 2, 3, 3])

        // Every rank applied every plan at the same step with the same digest.
        func plans(_ rank: Int) throws -> [String] {
            try String(contentsOfFile: scratch.path("live/rank-\(rank).log"), encoding: .utf8)
                .split(separator: "\n").filter { $0.contains(": plan v") }.map { String($0.drop { $0 != ":" }) }
        }
        let rank0 = try plans(0), rank1 = try plans(1)
        #expect(rank0.count == 6 && rank0 == rank1, "rank 0: \(rank0)\nrank 1: \(rank1)")
        #expect(rank0.map { $0.contains("plan v1 ") || $0.contains("plan v2 ") || $0.contains("plan v3 ") }.allSatisfy { $0 })
    }

    @Test func aCoordinatorKilledMidRunIsRestartedAndTrainingGoesOn() throws {
        let scratch = try ScratchRun(samples: 3000, sampleShape: [1, 16, 16])
        let config = try config(scratch, "restart")
        let state = scratch.path("coordinator.json")
        let first = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config, "--state-file", state])
        let workers = try startWorkers(config: config, coordinator: first.endpoint)
        let before = waitForStatus(first, seconds: 60) { (($0["metrics"] as? [String: Any])?["history"] as? [Any])?.count ?? 0 >= 1 }
        let runID = try #require(before["run_id"] as? String)
        try #require(workers.isRunning, "the run ended before the coordinator could be killed mid-run")
        first.process.signal(SIGKILL)
        #expect(first.process.waitForExit(seconds: 10))
        usleep(500_000)
        // Restarted on the same address with the same state file.
        let second = try CoordinatorProcess(directory: scratch.directory,
                                            arguments: ["--config", config, "--state-file", state, "--bind", first.endpoint])
        #expect(second.endpoint == first.endpoint)
        #expect(workers.waitForExit(seconds: 180), "training stopped with the coordinator:\n\(workers.output)")
        #expect(!workers.output.contains("error"), "\(workers.output)")
        let after = waitForStatus(second, seconds: 20) { $0["state"] as? String == "finished" }
        #expect(after["run_id"] as? String == runID)
        #expect(after["state"] as? String == "finished", "\(after)")
        let epochs = try epochRecords(scratch.path("restart")).compactMap { $0["epoch"] as? Int }
        #expect(epochs == Array(0..<6))
        let history = (after["metrics"] as? [String: Any])?["history"] as? [Any] ?? []
        #expect(history.count > (((before["metrics"] as? [String: Any])?["history"] as? [Any])?.count ?? 0),
                "the restarted coordinator saw no epoch reports")
    }

    /// kill -9 one worker mid-epoch: the job stops within a bounded time, the coordinator's status
    /// names the dead rank (and not the rank mpirun stopped because of it), and relaunching with
    /// `--resume latest` against the same coordinator finishes the same run with exactly the
    /// weights of an uninterrupted run.
    @Test func aKilledWorkerIsNamedInStatusAndAResumedLaunchFinishesTheSameRun() throws {
        let scratch = try ScratchRun(samples: 3000, sampleShape: [1, 16, 16])
        let reference = try runTraining(config: try config(scratch, "reference"), ranks: 2)
        try #require(reference.exitCode == 0, "\(reference.output)")

        let config = try config(scratch, "killed")
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config, "--state-file", scratch.path("coordinator.json")])
        let workers = try startWorkers(config: config, coordinator: coordinator.endpoint)
        // Mid-run: after two epochs (checkpoints exist), part-way into the next.
        let running = waitForStatus(coordinator, seconds: 90) {
            (($0["metrics"] as? [String: Any])?["history"] as? [Any])?.count ?? 0 >= 2 && ($0["step"] as? Int ?? 0) >= 5
        }
        let runID = try #require(running["run_id"] as? String)
        let victim = try #require((running["ranks"] as? [[String: Any]])?.first { $0["rank"] as? Int == 1 }?["pid"] as? Int,
                                  "no pid for rank 1 in \(running)")
        try #require(workers.isRunning, "the run ended before a worker could be killed:\n\(workers.output)")
        let killedAt = Date()
        kill(pid_t(victim), SIGKILL)

        #expect(workers.waitForExit(seconds: 60), "the surviving rank did not stop after its peer died:\n\(workers.output)")
        #expect(workers.exitCode != 0)
        let failed = waitForStatus(coordinator, seconds: 30) { $0["state"] as? String == "failed" }
        #expect(Date().timeIntervalSince(killedAt) < 60, "the failure took too long to show")
        #expect(failed["state"] as? String == "failed", "\(failed)")
        #expect(failed["failed_rank"] as? Int == 1, "the failure is blamed on the wrong rank: \(failed)")
        let error = failed["error"] as? String ?? ""
        #expect(error.contains("rank 1") && error.contains("pid \(victim)") && error.contains("died"), "\(error)")
        let ranks = failed["ranks"] as? [[String: Any]] ?? []
        #expect(ranks.first { $0["rank"] as? Int == 1 }?["ended"] as? String == "dead", "\(ranks)")
        #expect(ranks.first { $0["rank"] as? Int == 0 }?["ended"] as? String == "terminated", "\(ranks)")
        #expect(ranks.allSatisfy { $0["alive"] as? Bool == false })

        // Relaunch: the same coordinator continues the same run, and the failure becomes history.
        let resumed = try startWorkers(config: config, coordinator: coordinator.endpoint, extra: ["--resume", "latest"])
        #expect(resumed.waitForExit(seconds: 180), "the resumed run did not finish:\n\(resumed.output)")
        #expect(resumed.exitCode == 0, "\(resumed.output)")
        let finished = waitForStatus(coordinator, seconds: 20) { $0["state"] as? String == "finished" }
        #expect(finished["state"] as? String == "finished", "\(finished)")
        #expect(finished["run_id"] as? String == runID)
        #expect(finished["error"] is NSNull && finished["failed_rank"] is NSNull)
        let previous = finished["previous_failures"] as? [String] ?? []
        #expect(previous.count == 1 && previous.first?.contains("rank 1") == true, "\(previous)")
        let history = ((finished["metrics"] as? [String: Any])?["history"] as? [[String: Any]] ?? []).compactMap { $0["epoch"] as? Int }
        #expect(history == Array(0..<6), "\(history)")
        let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("reference/model.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: scratch.path("killed/model.safetensors")))
        #expect(a == b, "the resumed run's weights differ from the uninterrupted run's")
        let epochs = try epochRecords(scratch.path("killed")).compactMap { $0["epoch"] as? Int }
        #expect(Set(epochs) == Set(0..<6), "metrics.jsonl lost epochs: \(epochs)")
    }

    @Test func anOperatorStopCheckpointsAndTheRunResumesExactly() throws {
        let scratch = try ScratchRun(samples: 3000, sampleShape: [1, 16, 16])
        let token = scratch.path("token")
        try "t0k3n".write(toFile: token, atomically: true, encoding: .utf8)
        let reference = try runTraining(config: try config(scratch, "reference"), ranks: 2)
        try #require(reference.exitCode == 0, "\(reference.output)")

        let config = try config(scratch, "stopped", tokenFile: token)
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config])
        let workers = try startWorkers(config: config, coordinator: coordinator.endpoint)
        _ = waitForStatus(coordinator, seconds: 60) { (($0["metrics"] as? [String: Any])?["history"] as? [Any])?.count ?? 0 >= 1 }
        try #require(workers.isRunning, "the run ended before it could be stopped")
        let thaw = try #require(thawExecutablePath())
        let control = try spawnProcessGroup([thaw, "ctl", "stop", "--coordinator", coordinator.endpoint, "--token-file", token],
                                            hangGuardSeconds: 30)
        #expect(control.exitCode == 0 && control.output.contains("accepted"), "\(control.output)")
        #expect(workers.waitForExit(seconds: 60), "\(workers.output)")
        #expect(workers.output.contains("stopped on request"), "\(workers.output)")
        let epochsBefore = try epochRecords(scratch.path("stopped")).count
        try #require(epochsBefore < 6, "the stop came too late to test anything")

        // Continue without the coordinator: the plans are the same policy's, so the weights must match.
        let resumed = try runTraining(config: config, ranks: 2, extraArguments: ["--resume", "latest"])
        try #require(resumed.exitCode == 0, "\(resumed.output)")
        let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("reference/model.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: scratch.path("stopped/model.safetensors")))
        #expect(a == b, "the stopped-and-resumed run differs from the uninterrupted one")
    }
}
