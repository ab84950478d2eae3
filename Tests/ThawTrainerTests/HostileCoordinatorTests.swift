// Hostile clients against a real run: while `mpirun -np 2` workers train under a coordinator,
// an attacker on loopback sends every kind of worker message without the job secret (and with
// a guessed one). The run must end exactly as the same run without a coordinator does.
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

/// Sends forged worker messages to `endpoint` until stopped, from its own thread and sockets.
final class Attacker: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var sentCount = 0
    private let finished = DispatchSemaphore(value: 0)

    /// Forged messages, as an outsider who read docs/protocol.md would write them.
    static let frames = [
        #"{"type":"hello","run_name":"x","rank":1,"world_size":2,"host":"attacker","pid":666,"config_hash":"0","groups":["hidden1","hidden2","head"]}"#,
        #"{"type":"heartbeat","rank":1,"step":99999}"#,
        #"{"type":"progress","rank":0,"epoch":98,"step":1,"loss":0,"samples_per_second":1e9,"bytes_exchanged_per_step":0}"#,
        #"{"type":"epoch_report","rank":0,"summary":{"epoch":98,"plan_version":9,"trainable_groups":["head"],"train_loss":0,"train_accuracy":1,"validation_loss":null,"validation_accuracy":null,"test_accuracy":1,"seconds":1,"bytes_exchanged":0,"checkpoint_path":"/tmp/forged.safetensors"}}"#,
        #"{"type":"plan_request","rank":0,"epoch":1,"previous_validation_loss":99}"#,
        #"{"type":"finished","rank":0}"#,
        #"{"type":"failed","rank":1,"reason":"forged"}"#,
        #"{"type":"terminated","rank":1,"reason":"SIGTERM"}"#,
    ]

    /// Starts attacking `endpoint`: each frame unsigned, then signed with a guessed secret.
    init(endpoint: String) {
        let guessed = JobSecret.random()
        let sequence = MessageSequence()
        Thread { [self] in
            defer { finished.signal() }
            guard let context = try? ZMQContext() else { return }
            while !isStopped {
                for frame in Self.frames where !isStopped {
                    let body = Array(frame.utf8)
                    for frames in [[body], [body, guessed.authentication(for: body, sequence: sequence.next())]] {
                        guard let socket = try? JSONRequester(context: context, address: endpoint) else { continue }
                        _ = try? socket.request(frames: frames, timeout: 1)
                        lock.withLock { sentCount += 1 }
                    }
                }
                usleep(20_000)
            }
        }.start()
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    /// Stops and returns how many forged messages were sent.
    func stop() -> Int {
        lock.withLock { stopped = true }
        _ = finished.wait(timeout: .now() + 10)
        return lock.withLock { sentCount }
    }
}

@Suite(.serialized) struct HostileCoordinatorTests {
    /// The plateau policy reads each epoch's validation loss, so a forged `previous_validation_loss`
    /// would change the plans, and with them the weights.
    static let extra = """
        training: {epochs: 4, batch_size: 12}
        unfreezing: {policy: plateau, patience: 1}
        """

    @Test func forgedWorkerMessagesChangeNothing() throws {
        let scratch = try ScratchRun(samples: 181)
        func config(_ name: String) throws -> String {
            let path = try scratch.writeConfig(name: name, extra: Self.extra)
            var text = try String(contentsOfFile: path, encoding: .utf8)
            text = text.replacingOccurrences(of: "{dataset: npy,", with: "{dataset: npy, validation_size: 12,")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let local = try runTraining(config: try config("local"), ranks: 2)
        try #require(local.exitCode == 0, "\(local.output)")

        let attacked = try config("attacked")
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", attacked, "--exit-when-done"])
        let attacker = Attacker(endpoint: coordinator.endpoint)
        let run = try runTraining(config: attacked, ranks: 2, extraArguments: ["--coordinator", coordinator.endpoint])
        let status = try coordinator.status()
        let sent = attacker.stop()
        try #require(run.exitCode == 0, "the attacked run failed:\n\(run.output)\ncoordinator:\n\(coordinator.process.output)")

        // The same plans, so the same weights as the run without a coordinator.
        let difference = maximumRelativeDifference(try readWeights(scratch.path("attacked/model.safetensors")),
                                                   try readWeights(scratch.path("local/model.safetensors")))
        #expect(difference < 1e-6, "the forged messages changed the trained model")
        #expect(status["state"] as? String == "finished", "\(status)")
        #expect(status["error"] is NSNull && (status["previous_failures"] as? [Any])?.isEmpty == true, "\(status)")
        let ranks = try #require(status["ranks"] as? [[String: Any]])
        #expect(ranks.allSatisfy { $0["host"] as? String != "attacker" && $0["pid"] as? Int != 666 }, "\(ranks)")
        let history = try #require((status["metrics"] as? [String: Any])?["history"] as? [[String: Any]])
        #expect(history.compactMap { $0["epoch"] as? Int } == [0, 1, 2, 3], "\(history)")
        let checkpoint = (status["checkpoint"] as? [String: Any])?["path"] as? String
        #expect(checkpoint?.hasPrefix(scratch.path("attacked")) == true, "\(String(describing: checkpoint))")
        let rejected = try #require(status["rejected_messages"] as? [String: Int])
        #expect(sent >= 16 && (rejected["unauthenticated"] ?? 0) >= 16, "sent \(sent), status \(rejected)")
        // Counted, not logged one by one.
        #expect(coordinator.process.output.split(separator: "\n").filter { $0.contains("dropped") }.count <= 3, "\(coordinator.process.output)")
    }

    @Test func aWorkerWithAnotherSecretIsToldSoAndStops() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "secret", extra: "training: {epochs: 1, batch_size: 12}")
        let coordinator = try CoordinatorProcess(directory: scratch.directory, arguments: ["--config", config])
        let other = scratch.path("other.secret")
        _ = try JobSecret.loadOrCreate(at: other)
        let run = try runTraining(config: config, ranks: 1, extraArguments: ["--coordinator", coordinator.endpoint, "--set",
                                                                             "coordinator.secret_file=\(other)"])
        #expect(run.exitCode != 0)
        #expect(run.output.contains("refused") && run.output.contains("job secret"), "\(run.output)")
        #expect(try coordinator.status()["state"] as? String == "waiting")
    }
}
