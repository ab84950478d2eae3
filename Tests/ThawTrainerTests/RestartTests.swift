// Automatic restarts with real processes: `launch/local 2 CONFIG --max-restarts K` survives a worker
// killed with -9 twice, at different epochs and ranks, relaunching with --resume auto against the same
// coordinator, and ends with the weights of an uninterrupted run; a configuration error is not retried.
import Foundation
import Testing
import ThawCoordinator
import ThawRun
import ThawTesting

#if canImport(Glibc)
import Glibc
#endif

/// One status query to `endpoint`, nil when it does not answer.
func statusQuery(_ endpoint: String) -> [String: Any]? {
    guard let context = try? ZMQContext(), let requester = try? JSONRequester(context: context, address: endpoint),
          let reply = try? requester.request(Array(#"{"type": "status"}"#.utf8), timeout: 2) else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(reply))) as? [String: Any]
}

/// `launch/local` with the test build's thaw, stopped with Ctrl-C (which stops its mpirun job too) when it goes away.
final class LocalLaunch {
    let process: BackgroundProcess
    let logs: String

    init(ranks: Int, config: String, options: [String]) throws {
        let thaw = try #require(thawExecutablePath())
        logs = packageRoot() + "/runs/launch/" + ((config as NSString).lastPathComponent as NSString).deletingPathExtension
        process = try BackgroundProcess([packageRoot() + "/launch/local", String(ranks), config, "--thaw", thaw] + options)
    }

    deinit {
        if process.isRunning {
            process.signal(SIGINT)
            _ = process.waitForExit(seconds: 15)
        }
        process.stop()
        try? FileManager.default.removeItem(atPath: logs)
    }

    /// The coordinator's endpoint, once it has written it.
    var endpoint: String? { try? String(contentsOfFile: logs + "/coordinator.endpoint", encoding: .utf8) }

    /// Polls status until `condition` holds or `seconds` pass (or the launcher exits); returns the last status.
    func waitForStatus(seconds: Double, _ condition: ([String: Any]) -> Bool) -> [String: Any] {
        var status: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, process.isRunning {
            if let endpoint, let current = statusQuery(endpoint) {
                status = current
                if condition(current) { break }
            }
            usleep(100_000)
        }
        return status
    }
}

@Suite(.serialized) struct RestartTests {
    func history(_ status: [String: Any]) -> Int { ((status["metrics"] as? [String: Any])?["history"] as? [Any])?.count ?? 0 }

    func pid(ofRank rank: Int, _ status: [String: Any]) -> Int? {
        (status["ranks"] as? [[String: Any]])?.first { $0["rank"] as? Int == rank }?["pid"] as? Int
    }

    @Test func aWorkerKilledTwiceAtDifferentEpochsStillFinishesWithTheUninterruptedWeights() throws {
        let scratch = try ScratchRun(samples: 3000, sampleShape: [1, 16, 16])
        let helper = CoordinatorRunTests()
        let reference = try runTraining(config: try helper.config(scratch, "reference"), ranks: 2)
        try #require(reference.exitCode == 0, "\(reference.output)")

        let name = "restarted-\(getpid())"
        let config = try helper.config(scratch, name)
        let launch = try LocalLaunch(ranks: 2, config: config, options: ["--max-restarts", "3", "--restart-delay", "0.5"])

        // First kill: rank 1, part-way into epoch 3.
        let first = launch.waitForStatus(seconds: 120) { history($0) >= 2 && ($0["step"] as? Int ?? 0) >= 5 && $0["restarts"] as? Int == 0 }
        let runID = try #require(first["run_id"] as? String, "no run to kill:\n\(launch.process.output)")
        let victim = try #require(pid(ofRank: 1, first), "no pid for rank 1: \(first)")
        kill(pid_t(victim), SIGKILL)

        // Second kill: rank 0 of the relaunched job, part-way into epoch 5.
        let second = launch.waitForStatus(seconds: 150) {
            $0["restarts"] as? Int == 1 && $0["state"] as? String == "running" && history($0) >= 4 && ($0["step"] as? Int ?? 0) >= 5
                && pid(ofRank: 0, $0) != nil
        }
        #expect(second["run_id"] as? String == runID, "the relaunch is another run: \(second)")
        let victim2 = try #require(pid(ofRank: 0, second), "the relaunched job never reached epoch 5: \(second)\n\(launch.process.output)")
        try #require(victim2 != victim)
        kill(pid_t(victim2), SIGKILL)

        #expect(launch.process.waitForExit(seconds: 240), "launch/local did not finish:\n\(launch.process.output)")
        #expect(launch.process.exitCode == 0, "\(launch.process.output)")
        let output = launch.process.output
        #expect(output.contains("restart 1 of 3") && output.contains("restart 2 of 3") && !output.contains("restart 3 of 3"), "\(output)")

        let stateData = try #require(FileManager.default.contents(atPath: launch.logs + "/coordinator-state.json"))
        let state = try #require(try JSONSerialization.jsonObject(with: stateData) as? [String: Any])
        let failures = state["previousFailures"] as? [String] ?? []
        #expect(state["runID"] as? String == runID && state["state"] as? String == "finished", "\(state)")
        #expect(failures.count == 2, "\(failures)")
        let a = try Data(contentsOf: URL(fileURLWithPath: scratch.path("reference/model.safetensors")))
        let b = try Data(contentsOf: URL(fileURLWithPath: scratch.path("\(name)/model.safetensors")))
        #expect(a == b, "the twice-restarted run's weights differ from the uninterrupted run's")
        let epochs = try epochRecords(scratch.path(name)).compactMap { $0["epoch"] as? Int }
        #expect(Set(epochs) == Set(0..<6), "metrics.jsonl lost epochs: \(epochs)")
    }

    @Test func aConfigurationErrorIsNotRetried() throws {
        let scratch = try ScratchRun()
        // Three classes of data for a two-class model: the coordinator plans happily, every rank refuses.
        let config = try scratch.writeConfig(name: "bad-\(getpid())", extra: "", model: "{architecture: mlp, classes: 2}")
        let launch = try LocalLaunch(ranks: 2, config: config, options: ["--max-restarts", "3", "--restart-delay", "0.2"])
        #expect(launch.process.waitForExit(seconds: 90), "\(launch.process.output)")
        #expect(launch.process.exitCode == TrainingRun.configurationExitCode, "\(launch.process.output)")
        let output = launch.process.output
        #expect(output.contains("configuration error (exit 78); not restarting") && !output.contains("restart 1 of"), "\(output)")
    }
}
