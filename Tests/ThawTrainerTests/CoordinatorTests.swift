// Coordinator tests with real processes on loopback: a coordinator planning for `mpirun -np 2`
// workers, malformed frames, a silent rank, a restart, CURVE, a Python client. The protocol
// handler itself is tested without sockets in ThawCoordinatorTests.
import Foundation
import Testing
import ThawCoordinator
import ThawPlan
import ThawTesting
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

#if canImport(Glibc)
import Glibc
#endif

/// A coordinator process on a free loopback port.
final class CoordinatorProcess {
    let process: BackgroundProcess
    let endpoint: String
    /// The job secret workers sign with: the configuration's, or one in `directory` without a configuration.
    let secretPath: String
    private let sequence = MessageSequence()

    init(directory: String, arguments: [String]) throws {
        let thaw = try #require(thawExecutablePath())
        let endpointFile = (directory as NSString).appendingPathComponent("endpoint-\(UUID().uuidString)")
        var arguments = arguments
        let config = arguments.firstIndex(of: "--config").map { arguments[$0 + 1] }
        let overrides = arguments.indices.filter { arguments[$0] == "--set" }.map { arguments[$0 + 1] }
        if config == nil && !overrides.contains(where: { $0.hasPrefix("coordinator.secret_file=") }) {
            arguments += ["--set", "coordinator.secret_file=" + (directory as NSString).appendingPathComponent("job.secret")]
        }
        secretPath = try TrainingConfig.load(path: config, overrides: arguments.indices.filter { arguments[$0] == "--set" }.map { arguments[$0 + 1] })
            .jobSecretPath
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
        try request(frames: [Array(text.utf8)])
    }

    /// One worker message signed with the run's job secret, as a worker sends it.
    func signedRequest(_ text: String) throws -> [String: Any] {
        let secret = try JobSecret.load(from: secretPath)
        let body = Array(text.utf8)
        return try request(frames: [body, secret.authentication(for: body, sequence: sequence.next())])
    }

    /// One message of `frames` from a fresh REQ socket.
    func request(frames: [[UInt8]]) throws -> [String: Any] {
        let context = try ZMQContext()
        let requester = try JSONRequester(context: context, address: endpoint)
        let reply = try requester.request(frames: frames, timeout: 5)
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
        #expect(try coordinator.signedRequest(hello)["type"] as? String == "ok")
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
        _ = try first.signedRequest(hello)
        _ = try first.signedRequest(#"{"type": "plan_request", "rank": 0, "epoch": 0}"#)
        _ = try first.signedRequest(#"{"type": "plan_request", "rank": 0, "epoch": 1, "previous_validation_loss": 0.7}"#)
        let runID = try #require(try first.status()["run_id"] as? String)
        first.process.signal(SIGTERM)
        #expect(first.process.waitForExit(seconds: 10))

        let second = try CoordinatorProcess(directory: scratch.directory, arguments: ["--state-file", state, "--set", "unfreezing.policy=gradual"])
        let status = try second.status()
        #expect(status["run_id"] as? String == runID)
        #expect((status["schedule"] as? [String: Any])?["trainable_groups"] as? [String] == ["b", "head"])
        _ = try second.signedRequest(hello)
        let reply = try second.signedRequest(#"{"type": "plan_request", "rank": 0, "epoch": 2, "previous_validation_loss": 0.6}"#)
        let plan = try #require(reply["plan"] as? [String: Any])
        #expect(plan["version"] as? Int == 3)
        #expect(plan["trainable_groups"] as? [String] == ["a", "b", "head"])
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
        #expect(waiting.state == .waiting)
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
        #expect((object["rejected_messages"] as? [String: Int])?["unauthenticated"] == 0)

        // Signed from Python as the protocol page says, a worker message passes authentication and
        // reaches the handler (which refuses a heartbeat before hello); unsigned, it does not.
        func send(_ extra: [String]) throws -> [String: Any] {
            let reply = try spawnProcessGroup([python, packageRoot() + "/scripts/thaw_status.py", coordinator.endpoint,
                                               "--worker-message", #"{"type": "heartbeat", "rank": 0, "step": 1}"#] + extra, hangGuardSeconds: 60)
            return try #require(try JSONSerialization.jsonObject(with: Data(reply.output.utf8)) as? [String: Any], "\(reply.output)")
        }
        #expect(try send(["--secret", coordinator.secretPath])["field"] as? String == "rank")
        #expect(try send([])["field"] as? String == "authentication")
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
