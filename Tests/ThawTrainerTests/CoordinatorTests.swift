// Coordinator tests: the protocol without sockets, then real processes on loopback — a
// coordinator planning for `mpirun -np 2` workers, malformed frames, a silent rank, a restart.
import Foundation
import Testing
import ThawCoordinator
import ThawTesting

#if canImport(Glibc)
import Glibc
#endif

func hello(rank: Int, worldSize: Int = 2, hash: String = "abc") -> CoordinatorRequest {
    .hello(HelloMessage(runName: "t", rank: rank, worldSize: worldSize, host: "h", pid: 100 + rank, configHash: hash,
                        groups: ["stem", "block1", "head"]))
}

func gradualSettings(heartbeatTimeout: Double = 10) -> CoordinatorSettings {
    var unfreezing = UnfreezingSection()
    unfreezing.policy = .gradual
    return CoordinatorSettings(unfreezing: unfreezing, baseLearningRate: 0.01, batchNormPolicy: "running_statistics",
                               epochs: 3, heartbeatTimeout: heartbeatTimeout)
}

@Suite struct CoordinatorProtocolTests {
    @Test func plansFollowThePolicyAndStatusTracksTheRun() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        #expect(coordinator.status(now: 0).state == "waiting")
        guard case .ok = coordinator.handle(hello(rank: 0), now: 0), case .ok = coordinator.handle(hello(rank: 1), now: 0) else {
            Issue.record("hello refused"); return
        }
        guard case .plan(let first) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 0, previousValidationLoss: nil)), now: 1),
              case .plan(let second) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 1, previousValidationLoss: 0.5)), now: 2) else {
            Issue.record("no plan"); return
        }
        #expect(first.trainableGroups == ["head"] && first.version == 1)
        #expect(second.trainableGroups == ["block1", "head"] && second.version == 2)
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 1, step: 7)), now: 3)
        let status = coordinator.status(now: 3.5)
        #expect(status.state == "running" && status.worldSize == 2)
        #expect(status.ranks.map(\.step) == [0, 7])
        #expect(status.schedule?.frozenGroups == ["stem"])
        #expect(status.schedule?.nextChange == 2)
        _ = coordinator.handle(.finished(EndMessage(rank: 0, reason: nil)), now: 4)
        #expect(coordinator.status(now: 4).state == "running")
        _ = coordinator.handle(.finished(EndMessage(rank: 1, reason: nil)), now: 4)
        #expect(coordinator.status(now: 4).state == "finished")
    }

    @Test func refusesADifferentConfiguration() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        _ = coordinator.handle(hello(rank: 0), now: 0)
        guard case .error(let error) = coordinator.handle(hello(rank: 1, hash: "xyz"), now: 0) else {
            Issue.record("accepted a different configuration"); return
        }
        #expect(error.field == "config_hash")
    }

    @Test func silentRankFailsTheRunByName() throws {
        let coordinator = try Coordinator(settings: gradualSettings(heartbeatTimeout: 5), statePath: nil)
        _ = coordinator.handle(hello(rank: 0), now: 0)
        _ = coordinator.handle(hello(rank: 1), now: 0)
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 0, step: 1)), now: 6)
        coordinator.checkLiveness(now: 6.5)
        let status = coordinator.status(now: 6.5)
        #expect(status.state == "failed")
        #expect(status.error?.contains("rank 1") == true)
        #expect(status.ranks.map(\.alive) == [true, false])
    }

    /// mpirun stops the survivors with SIGTERM when a rank dies: the survivors' `terminated` reports
    /// are not blamed; the rank that went silent is, after a short silence rather than the timeout.
    @Test func terminatedRanksPointAtTheRankThatWentSilent() throws {
        let coordinator = try Coordinator(settings: gradualSettings(heartbeatTimeout: 30), statePath: nil)
        for rank in 0..<3 { _ = coordinator.handle(hello(rank: rank, worldSize: 3), now: 0) }
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 0, step: 4)), now: 9)
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 1, step: 4)), now: 8)   // rank 1 dies after this beat
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 2, step: 4)), now: 9)
        _ = coordinator.handle(.terminated(EndMessage(rank: 0, reason: "SIGTERM")), now: 9.2)
        _ = coordinator.handle(.terminated(EndMessage(rank: 2, reason: "SIGTERM")), now: 9.3)
        #expect(coordinator.status(now: 9.5).state == "running", "a termination alone must not fail the run")
        coordinator.checkLiveness(now: 8 + Coordinator.silenceAfterTermination + 0.1)
        let status = coordinator.status(now: 11)
        #expect(status.state == "failed")
        #expect(status.failedRank == 1)
        #expect(status.error?.contains("rank 1 (host h, pid 101) died") == true, "\(status.error ?? "")")
        #expect(status.ranks.map(\.ended) == ["terminated", "dead", "terminated"])

        // A relaunch continues the run; the failure is kept as history.
        _ = coordinator.handle(hello(rank: 0, worldSize: 3), now: 20)
        let resumed = coordinator.status(now: 20)
        #expect(resumed.state == "running" && resumed.error == nil && resumed.failedRank == nil)
        #expect(resumed.previousFailures.count == 1 && resumed.previousFailures[0].contains("rank 1"))
    }

    @Test func everyRankTerminatedMeansTheJobWasStoppedFromOutside() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        for rank in 0..<2 { _ = coordinator.handle(hello(rank: rank), now: 0) }
        _ = coordinator.handle(.terminated(EndMessage(rank: 1, reason: "SIGINT")), now: 1)
        _ = coordinator.handle(.terminated(EndMessage(rank: 0, reason: "SIGINT")), now: 1)
        let status = coordinator.status(now: 1)
        #expect(status.state == "failed" && status.failedRank == nil)
        #expect(status.error?.contains("stopped from outside") == true, "\(status.error ?? "")")
    }

    @Test func malformedFramesAreRefusedByField() {
        func field(_ text: String) -> String? {
            do { _ = try CoordinatorRequest.decode(Array(text.utf8)); return nil } catch { return error.field }
        }
        #expect(field("not json") == "")
        #expect(field(#"{"type": 3}"#) == "type")
        #expect(field(#"{"type": "launch"}"#) == "type")
        #expect(field(#"{"type": "heartbeat", "rank": "one", "step": 1}"#) == "rank")
        #expect(field(#"{"type": "heartbeat", "rank": 1}"#) == "step")
        #expect(field(#"{"type": "heartbeat", "rank": 1, "step": 2, "extra": 0}"#) == "extra")
        #expect(field(#"{"type": "failed", "rank": 1}"#) == "reason")
        #expect(field(#"{"type": "status", "verbose": true}"#) == "verbose")
        #expect(throws: Never.self) { try CoordinatorRequest.decode(Array(#"{"type": "status"}"#.utf8)) }
        // Every request survives its own encoding.
        let requests: [CoordinatorRequest] = [hello(rank: 1), .heartbeat(HeartbeatMessage(rank: 0, step: 3)), .status,
                                              .failed(EndMessage(rank: 0, reason: "x"))]
        for request in requests { #expect((try? CoordinatorRequest.decode(request.encoded())) == request) }
    }

    @Test func statusAlwaysHasEveryKey() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        let bytes = CoordinatorReply.status(coordinator.status(now: 0)).encoded()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        for key in ["state", "run_id", "world_size", "ranks", "epoch", "step", "samples_per_second", "schedule", "metrics",
                    "checkpoint", "bytes_exchanged_per_step", "error"] {
            #expect(object.keys.contains(key), "status lacks \(key)")
        }
    }
}

/// A coordinator process on a free loopback port.
final class CoordinatorProcess {
    let process: BackgroundProcess
    let endpoint: String

    init(directory: String, arguments: [String]) throws {
        let thaw = try #require(thawExecutablePath())
        let endpointFile = (directory as NSString).appendingPathComponent("endpoint-\(UUID().uuidString)")
        process = try BackgroundProcess([thaw, "coordinator", "--bind", "tcp://127.0.0.1:*", "--endpoint-file", endpointFile] + arguments)
        var endpoint: String?
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: endpointFile, encoding: .utf8), !text.isEmpty { endpoint = text; break }
            usleep(50_000)
        }
        self.endpoint = try #require(endpoint, "the coordinator did not start:\n\(process.output)")
    }

    /// One raw request from a fresh REQ socket, as any ZeroMQ client would send it.
    func request(_ text: String) throws -> [String: Any] {
        let context = try ZMQContext()
        let requester = try JSONRequester(context: context, address: endpoint)
        let reply = try requester.request(Array(text.utf8), timeout: 5)
        return try #require(try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any])
    }

    func status() throws -> [String: Any] { try request(#"{"type": "status"}"#) }
}

@Suite(.serialized) struct CoordinatorProcessTests {
    @Test func workersTakePlansFromTheCoordinatorAndMatchTheLocalPlanner() throws {
        let scratch = try ScratchRun()
        let extra = "training: {epochs: 3, batch_size: 12}\nunfreezing: {policy: gradual}"
        let local = try runTraining(config: try scratch.writeConfig(name: "local", extra: extra), ranks: 2)
        try #require(local.exitCode == 0, "\(local.output)")
        let config = try scratch.writeConfig(name: "coordinated", extra: extra)
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config, "--exit-when-done"])
        let run = try runTraining(config: config, ranks: 2, extraArguments: ["--coordinator", coordinator.endpoint])
        try #require(run.exitCode == 0, "\(run.output)\ncoordinator:\n\(coordinator.process.output)")
        // The same plans as the in-process planner, so the same weights.
        let difference = maximumRelativeDifference(try readWeights(scratch.path("coordinated/model.safetensors")),
                                                   try readWeights(scratch.path("local/model.safetensors")))
        #expect(difference < 1e-6)
        let status = try coordinator.status()
        #expect(status["state"] as? String == "finished")
        #expect(status["world_size"] as? Int == 2)
        let ranks = try #require(status["ranks"] as? [[String: Any]])
        #expect(ranks.compactMap { $0["rank"] as? Int } == [0, 1])
        let history = try #require((status["metrics"] as? [String: Any])?["history"] as? [[String: Any]])
        #expect(history.compactMap { $0["trainable_groups"] as? [String] } == [["head"], ["hidden2", "head"], ["hidden1", "hidden2", "head"]])
        #expect(history.compactMap { $0["plan_version"] as? Int } == [1, 2, 3])
        #expect((status["schedule"] as? [String: Any])?["version"] as? Int == 3)
        #expect(coordinator.process.waitForExit(seconds: 15), "the coordinator did not exit after the run")
        #expect(coordinator.process.output.contains("finished"))
    }

    @Test func malformedFramesGetErrorsAndTheCoordinatorKeepsServing() throws {
        let scratch = try ScratchRun()
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: [])
        for garbage in ["\u{0}\u{1}garbage", "[1, 2]", #"{"type": "heartbeat", "rank": "x", "step": 1}"#, #"{"type": "reboot"}"#,
                        #"{"type": "plan_request", "rank": 0, "epoch": 0}"#] {
            let reply = try coordinator.request(garbage)
            #expect(reply["type"] as? String == "error", "\(garbage) got \(reply)")
            #expect((reply["message"] as? String)?.isEmpty == false)
        }
        #expect(try coordinator.status()["state"] as? String == "waiting")
        #expect(coordinator.process.isRunning)
    }

    @Test func aRankThatGoesSilentIsReportedDeadByName() throws {
        let scratch = try ScratchRun()
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--heartbeat-timeout", "1"])
        let hello = #"{"type": "hello", "run_name": "x", "rank": 1, "world_size": 2, "host": "h1", "pid": 4242, "config_hash": "c", "groups": ["a", "head"]}"#
        #expect(try coordinator.request(hello)["type"] as? String == "ok")
        var status: [String: Any] = [:]
        for _ in 0..<100 {
            status = try coordinator.status()
            if status["state"] as? String == "failed" { break }
            usleep(100_000)
        }
        #expect(status["state"] as? String == "failed")
        #expect((status["error"] as? String)?.contains("rank 1 (host h1, pid 4242)") == true, "\(status)")
        let ranks = try #require(status["ranks"] as? [[String: Any]])
        #expect(ranks.first?["alive"] as? Bool == false)
    }

    @Test func aRestartedCoordinatorContinuesTheSameRun() throws {
        let scratch = try ScratchRun()
        let state = scratch.path("coordinator-state.json")
        let first = try CoordinatorProcess(directory: scratch.directory, arguments: ["--state-file", state, "--set", "unfreezing.policy=gradual"])
        let hello = #"{"type": "hello", "run_name": "x", "rank": 0, "world_size": 1, "host": "h", "pid": 1, "config_hash": "c", "groups": ["a", "b", "head"]}"#
        _ = try first.request(hello)
        _ = try first.request(#"{"type": "plan_request", "rank": 0, "epoch": 0}"#)
        _ = try first.request(#"{"type": "plan_request", "rank": 0, "epoch": 1, "previous_validation_loss": 0.7}"#)
        let runID = try #require(try first.status()["run_id"] as? String)
        first.process.signal(SIGTERM)
        #expect(first.process.waitForExit(seconds: 10))

        let second = try CoordinatorProcess(directory: scratch.directory, arguments: ["--state-file", state, "--set", "unfreezing.policy=gradual"])
        let status = try second.status()
        #expect(status["run_id"] as? String == runID)
        #expect((status["schedule"] as? [String: Any])?["trainable_groups"] as? [String] == ["b", "head"])
        _ = try second.request(hello)
        let reply = try second.request(#"{"type": "plan_request", "rank": 0, "epoch": 2, "previous_validation_loss": 0.6}"#)
        let plan = try #require(reply["plan"] as? [String: Any])
        #expect(plan["version"] as? Int == 3)
        #expect(plan["trainable_groups"] as? [String] == ["a", "b", "head"])
    }
}

@Suite struct CoordinatorControlTests {
    func coordinator(token: String?) throws -> Coordinator {
        var settings = gradualSettings()
        settings.controlToken = token
        let coordinator = try Coordinator(settings: settings, statePath: nil)
        _ = coordinator.handle(hello(rank: 0, worldSize: 1), now: 0)
        return coordinator
    }

    @Test func controlNeedsTheToken() throws {
        let off = try coordinator(token: nil)
        guard case .error(let disabled) = off.handle(.control(ControlMessage(command: "stop", groups: nil, token: "x")), now: 1) else {
            Issue.record("control accepted without a configured token"); return
        }
        #expect(disabled.field == "token")
        let on = try coordinator(token: "right")
        guard case .error(let wrong) = on.handle(.control(ControlMessage(command: "stop", groups: nil, token: "wrong")), now: 1) else {
            Issue.record("a wrong token was accepted"); return
        }
        #expect(wrong.message.contains("refused"))
        // Nothing changed: progress replies carry no stop.
        guard case .ok(_, let control) = on.handle(.progress(ProgressMessage(rank: 0, epoch: 0, step: 1, loss: 1, samplesPerSecond: 1, bytesExchangedPerStep: 0)), now: 2) else {
            Issue.record("progress refused"); return
        }
        #expect(control == nil)
        _ = on.handle(.control(ControlMessage(command: "stop", groups: nil, token: "right")), now: 3)
        guard case .ok(_, let stop) = on.handle(.progress(ProgressMessage(rank: 0, epoch: 0, step: 2, loss: 1, samplesPerSecond: 1, bytesExchangedPerStep: 0)), now: 4) else {
            Issue.record("progress refused"); return
        }
        #expect(stop == "stop")
    }

    @Test func thawNowWidensTheNextPlan() throws {
        let coordinator = try coordinator(token: "t")
        guard case .plan(let first) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 0, previousValidationLoss: nil)), now: 1) else {
            Issue.record("no plan"); return
        }
        #expect(first.trainableGroups == ["head"])
        guard case .error(let unknown) = coordinator.handle(.control(ControlMessage(command: "thaw", groups: ["blok1"], token: "t")), now: 2) else {
            Issue.record("unknown group accepted"); return
        }
        #expect(unknown.field == "groups")
        _ = coordinator.handle(.control(ControlMessage(command: "thaw", groups: ["block1"], token: "t")), now: 2)
        guard case .plan(let next) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 1, previousValidationLoss: 1)), now: 3) else {
            Issue.record("no plan"); return
        }
        #expect(next.trainableGroups == ["block1", "head"])
        #expect(next.newlyThawed == ["block1"])
    }
}

@Suite(.serialized) struct CoordinatorCurveTests {
    @Test func curveEncryptsAndLocksOutClientsWithoutTheKey() throws {
        try #require(CurveKeyPair.isAvailable, "libzmq without CURVE")
        let scratch = try ScratchRun()
        let thaw = try #require(thawExecutablePath())
        let keygen = try spawnProcessGroup([thaw, "keygen", "--out", scratch.path("coordinator")], hangGuardSeconds: 30)
        try #require(keygen.exitCode == 0, "\(keygen.output)")
        let publicKey = try String(contentsOfFile: scratch.path("coordinator.public"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let config = try scratch.writeConfig(name: "curve", extra: """
            training: {epochs: 2, batch_size: 12}
            unfreezing: {policy: gradual}
            coordinator: {curve_public_key_file: \(scratch.path("coordinator.public")), curve_secret_key_file: \(scratch.path("coordinator.secret"))}
            """)
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config])
        #expect(coordinator.process.output.contains("(CURVE)"))

        // A client without the key gets no answer at all.
        let context = try ZMQContext()
        let plain = try JSONRequester(context: context, address: coordinator.endpoint)
        #expect(throws: ZMQError.self) { try plain.request(CoordinatorRequest.status.encoded(), timeout: 1.5) }
        // One with the key does, and so do workers that read it from the config.
        let secure = try JSONRequester(context: context, address: coordinator.endpoint, serverKey: publicKey)
        guard case .status(let waiting) = try CoordinatorReply.decode(try secure.request(CoordinatorRequest.status.encoded(), timeout: 5)) else {
            Issue.record("no status over CURVE"); return
        }
        #expect(waiting.state == "waiting")
        let run = try runTraining(config: config, ranks: 2, extraArguments: ["--coordinator", coordinator.endpoint])
        #expect(run.exitCode == 0, "\(run.output)")
        let status = try spawnProcessGroup([thaw, "status", "--coordinator", coordinator.endpoint, "--curve-server-key-file",
                                            scratch.path("coordinator.public"), "--json"], hangGuardSeconds: 30)
        #expect(status.output.contains(#""state":"finished""#), "\(status.output)")
    }
}

@Suite(.serialized) struct PythonClientTests {
    /// A pyzmq client written from docs/protocol.md reads status. The test installs pyzmq into its
    /// own virtual environment (cached under the temporary directory); no system Python is changed.
    @Test func aPyzmqClientReadsStatus() throws {
        let python = try PythonEnvironment.python(name: "pyzmq", packages: ["pyzmq"], probe: "import zmq")
        let scratch = try ScratchRun()
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: [])
        let result = try spawnProcessGroup([python, packageRoot() + "/scripts/thaw_status.py", coordinator.endpoint], hangGuardSeconds: 60)
        #expect(result.exitCode == 0, "\(result.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
        #expect(object["state"] as? String == "waiting")
        #expect(object.keys.contains("bytes_exchanged_per_step"))
    }
}

@Suite struct UnreachableCoordinatorTests {
    @Test func workersGiveUpWithAClearMessage() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "alone", extra: "training: {epochs: 1}")
        let started = Date()
        // Port 9 (discard) on loopback: nothing answers ZeroMQ there.
        let run = try runTraining(config: config, ranks: 2, extraArguments: ["--coordinator", "tcp://127.0.0.1:9", "--coordinator-timeout", "2"])
        #expect(run.exitCode != 0)
        #expect(run.output.contains("cannot reach the coordinator at tcp://127.0.0.1:9"), "\(run.output)")
        #expect(Date().timeIntervalSince(started) < 60)
    }
}
