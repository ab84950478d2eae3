// CoordinatorClient: a rank's connection to the coordinator.
//
// The training thread uses one REQ socket for hello, plan requests and reports. A background
// thread owns a second REQ socket and sends a heartbeat about every second, so the coordinator
// sees the rank alive even during a long step. ZeroMQ sockets never cross threads; the two
// threads share only a locked step counter, a stop flag and the message sequence. Every message
// is signed with the job secret (see "Note: worker authentication" in JobSecret.swift).
import Foundation
import ThawPlan

/// A rank's connection to the coordinator.
public final class CoordinatorClient {
    /// The coordinator's address.
    public let address: String
    /// This rank.
    public let rank: Int
    /// The run id the coordinator assigned.
    public private(set) var runID = ""
    private let context: ZMQContext
    private let serverKey: String?
    private let secret: JobSecret
    private let sequence = MessageSequence()
    private let requester: JSONRequester
    private let shared = SharedHeartbeat()
    private var heartbeatsStarted = false
    private var lastFailure = -Double.infinity
    private var signalSources: [(signal: Int32, source: any DispatchSourceSignal)] = []

    /// Connects and says hello, retrying for up to `timeout` seconds (the coordinator may start later).
    /// - Throws: ``MessageError`` when the coordinator refuses the hello (for example a different
    ///   configuration), or ``ZMQError`` when nothing answers in time.
    /// - Parameters:
    ///   - address: The coordinator's endpoint.
    ///   - hello: This rank's introduction.
    ///   - secret: The run's job secret, which every message is signed with.
    ///   - timeout: Seconds to keep trying.
    ///   - serverKey: The coordinator's CURVE public key, when it runs with CURVE.
    public init(address: String, hello: HelloMessage, secret: JobSecret, timeout: Double = 30, serverKey: String? = nil) throws {
        self.address = address
        self.rank = hello.rank
        self.serverKey = serverKey
        self.secret = secret
        context = try ZMQContext()
        requester = try JSONRequester(context: context, address: address, serverKey: serverKey)
        let deadline = Coordinator.clock() + timeout
        while true {
            do {
                let frames = Self.signed(.hello(hello), secret: secret, sequence: sequence)
                let reply = try CoordinatorReply.decode(try requester.request(frames: frames, timeout: 2))
                switch reply {
                case .ok(let id, _): runID = id
                case .error(let error): throw error
                default: throw MessageError(field: "type", message: "unexpected reply to hello")
                }
                break
            } catch let error as ZMQError {
                if Coordinator.clock() > deadline {
                    throw MessageError(field: "", message: "cannot reach the coordinator at \(address) within \(Int(timeout)) s (\(error.message)); start `thaw coordinator` first, or train without --coordinator")
                }
            }
        }
        startHeartbeats()
    }

    /// Reads the job secret at `secretPath`, waiting for the coordinator to make it, then connects
    /// and says hello, all within `timeout` seconds.
    /// - Throws: ``MessageError`` naming what is missing: the coordinator, or only its job secret on
    ///   this host; ``JobSecretError`` for a secret that cannot be trusted; or what the hello throws.
    public convenience init(address: String, hello: HelloMessage, secretPath: String, timeout: Double = 30, serverKey: String? = nil) throws {
        let started = Coordinator.clock()
        let secret = try Self.secret(at: secretPath, of: address, timeout: timeout, serverKey: serverKey)
        try self.init(address: address, hello: hello, secret: secret, timeout: max(1, timeout - (Coordinator.clock() - started)), serverKey: serverKey)
    }

    /// The job secret, waited for; when it never appears, the error says whether the coordinator is missing
    /// or only its secret on this host.
    private static func secret(at path: String, of address: String, timeout: Double, serverKey: String?) throws -> JobSecret {
        let failure: JobSecretError
        do { return try JobSecret.load(from: path, waitingUpTo: timeout) } catch { failure = error }
        guard failure.isMissing else { throw failure }
        let context = try ZMQContext()
        let requester = try JSONRequester(context: context, address: address, serverKey: serverKey)
        let answers = (try? requester.request(CoordinatorRequest.status.encoded(), timeout: 1)) != nil
        throw MessageError(field: "secret_file", message: answers
            ? "the coordinator at \(address) answers, but its job secret \(path) is not on this host: copy it here (mode 0600) "
              + "or point coordinator.secret_file at it"
            : "cannot reach the coordinator at \(address) within \(Int(timeout)) s, and its job secret \(path) does not exist yet; "
              + "start `thaw coordinator` first (with the same configuration), or train without --coordinator")
    }

    deinit { stop() }

    /// A worker message's frames: its body, then its authentication under `secret`.
    static func signed(_ request: CoordinatorRequest, secret: JobSecret, sequence: MessageSequence) -> [[UInt8]] {
        let body = request.encoded()
        return [body, secret.authentication(for: body, sequence: sequence.next())]
    }

    /// This rank's frames for `request`, naming the run.
    private func frames(_ request: CoordinatorRequest) -> [[UInt8]] {
        Self.signed(runID.isEmpty ? request : request.naming(runId: runID), secret: secret, sequence: sequence)
    }

    /// Records the rank's step for the next heartbeat.
    public func setStep(_ step: Int) { shared.set(step: step) }

    /// Sends a report (progress, epoch report, finished, failed). Reports are best effort: if the
    /// coordinator does not answer within `timeout`, training goes on, and reports are skipped for
    /// a few seconds so a restarting coordinator does not slow training down.
    /// - Returns: An operator command the coordinator passed along in its reply (`stop`), if any.
    @discardableResult
    public func report(_ request: CoordinatorRequest, timeout: Double = 1) -> OperatorCommand? {
        let now = Coordinator.clock()
        guard now - lastFailure > 5 else { return nil }
        do {
            if case .ok(_, let control) = try CoordinatorReply.decode(try requester.request(frames: frames(request), timeout: timeout)) {
                return control
            }
        } catch {
            lastFailure = now
        }
        return nil
    }

    /// Asks for the plan of `epoch`, retrying for up to `timeout` seconds while the coordinator is unreachable.
    public func requestPlan(epoch: Int, previousValidationLoss: Double?, timeout: Double = 120) throws -> TrainingPlan {
        let request = CoordinatorRequest.planRequest(PlanRequestMessage(rank: rank, epoch: epoch, previousValidationLoss: previousValidationLoss))
        let deadline = Coordinator.clock() + timeout
        while true {
            do {
                switch try CoordinatorReply.decode(try requester.request(frames: frames(request), timeout: 2)) {
                case .plan(let plan): return plan
                case .error(let error): throw error
                default: throw MessageError(field: "type", message: "unexpected reply to plan_request")
                }
            } catch let error as ZMQError {
                if Coordinator.clock() > deadline {
                    throw MessageError(field: "", message: "no plan for epoch \(epoch) from the coordinator at \(address) within \(Int(timeout)) s: \(error)")
                }
            }
        }
    }

    /// Reports termination by a signal instead of dying silently: from now on SIGTERM, SIGINT and
    /// SIGHUP make this process tell the coordinator `terminated` (on a socket of its own, waiting
    /// at most half a second) and then exit with 128 + the signal number, as the default action would.
    ///
    /// mpirun stops the surviving ranks with SIGTERM when one rank dies, so this is what lets the
    /// coordinator tell the rank that died from the ranks that were stopped because of it.
    public func reportTerminationBySignal() {
        let context = self.context
        let address = self.address
        let rank = self.rank
        let serverKey = self.serverKey
        let secret = self.secret
        let sequence = self.sequence
        let runID = self.runID
        for (signalNumber, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGHUP, "SIGHUP")] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                let message = CoordinatorRequest.terminated(EndMessage(rank: rank, reason: "\(name)", runId: runID))
                if let requester = try? JSONRequester(context: context, address: address, serverKey: serverKey) {
                    _ = try? requester.request(frames: Self.signed(message, secret: secret, sequence: sequence), timeout: 0.5)
                }
                _exit(128 + signalNumber)
            }
            source.resume()
            signalSources.append((signalNumber, source))
        }
    }

    /// Stops the heartbeat thread and waits briefly for it to close its socket.
    /// Signals get their default action back.
    public func stop() {
        for (signalNumber, source) in signalSources {
            source.cancel()
            signal(signalNumber, SIG_DFL)
        }
        signalSources = []
        guard shared.stop(), heartbeatsStarted else { return }
        _ = shared.finished.wait(timeout: .now() + 3)
    }

    private func startHeartbeats() {
        heartbeatsStarted = true
        let shared = self.shared
        let context = self.context
        let address = self.address
        let rank = self.rank
        let runID = self.runID
        let serverKey = self.serverKey
        let secret = self.secret
        let sequence = self.sequence
        let thread = Thread {
            defer { shared.finished.signal() }
            guard let requester = try? JSONRequester(context: context, address: address, serverKey: serverKey) else { return }
            while !shared.isStopped {
                let beat = CoordinatorRequest.heartbeat(HeartbeatMessage(rank: rank, step: shared.step, runId: runID))
                _ = try? requester.request(frames: Self.signed(beat, secret: secret, sequence: sequence), timeout: 2)
                for _ in 0..<10 where !shared.isStopped { usleep(100_000) }
            }
        }
        thread.name = "thaw-heartbeat"
        thread.start()
    }
}

/// The few values the training thread and the heartbeat thread share, behind a lock.
final class SharedHeartbeat: @unchecked Sendable {
    private let lock = NSLock()
    private var currentStep = 0
    private var stopped = false
    let finished = DispatchSemaphore(value: 0)

    var step: Int { lock.withLock { currentStep } }
    var isStopped: Bool { lock.withLock { stopped } }
    func set(step: Int) { lock.withLock { currentStep = step } }
    /// Sets the stop flag; returns false if it was already set.
    func stop() -> Bool { lock.withLock { defer { stopped = true }; return !stopped } }
}
