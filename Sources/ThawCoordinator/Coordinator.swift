// Coordinator: the process that plans unfreezing, watches every rank and answers status.
//
// It serves one ROUTER socket; workers and status clients are REQ sockets, so every request
// gets exactly one reply. `handle(_:now:)` is the whole protocol and is tested without sockets;
// `serve` is the loop around it. With a state file, everything but liveness is saved after
// every change (temporary file, fsync, rename), and a restarted coordinator continues the same run.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What the coordinator needs from the configuration.
public struct CoordinatorSettings: Codable, Sendable {
    /// The unfreezing policy.
    public var unfreezing: UnfreezingSection
    /// The head's base learning rate.
    public var baseLearningRate: Float
    /// The frozen batch-norm policy name.
    public var batchNormPolicy: String
    /// The run's epochs (for `next_change`).
    public var epochs: Int
    /// Seconds without a heartbeat after which a rank counts as dead and the run as failed.
    public var heartbeatTimeout: Double
    /// The shared token control commands must carry; nil turns control off.
    public var controlToken: String?

    /// Creates settings.
    public init(unfreezing: UnfreezingSection, baseLearningRate: Float, batchNormPolicy: String, epochs: Int,
                heartbeatTimeout: Double = 10, controlToken: String? = nil) {
        self.unfreezing = unfreezing
        self.baseLearningRate = baseLearningRate
        self.batchNormPolicy = batchNormPolicy
        self.epochs = epochs
        self.heartbeatTimeout = heartbeatTimeout
        self.controlToken = controlToken
    }
}

/// The coordinator's durable state (everything but liveness, which restarts fresh).
struct CoordinatorState: Codable {
    var runID: String
    var state = "waiting"
    var worldSize = 0
    var configHash: String?
    var hellos: [Int: HelloMessage] = [:]
    var planner: UnfreezingPlanner?
    var plan: TrainingPlan?
    var history: [EpochSummary] = []
    var ended: [Int: String] = [:]
    var error: String?
    var failedRank: Int?
    var previousFailures: [String] = []
    var checkpoint: CheckpointStatus?
    var stopRequested = false

    init(runID: String) { self.runID = runID }

    /// Decodes a state file, giving fields added in later versions their defaults.
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        runID = try c.decode(String.self, forKey: .runID)
        state = try c.decode(String.self, forKey: .state)
        worldSize = try c.decode(Int.self, forKey: .worldSize)
        configHash = try c.decodeIfPresent(String.self, forKey: .configHash)
        hellos = try c.decode([Int: HelloMessage].self, forKey: .hellos)
        planner = try c.decodeIfPresent(UnfreezingPlanner.self, forKey: .planner)
        plan = try c.decodeIfPresent(TrainingPlan.self, forKey: .plan)
        history = try c.decode([EpochSummary].self, forKey: .history)
        ended = try c.decode([Int: String].self, forKey: .ended)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        failedRank = try c.decodeIfPresent(Int.self, forKey: .failedRank)
        previousFailures = try c.decodeIfPresent([String].self, forKey: .previousFailures) ?? []
        checkpoint = try c.decodeIfPresent(CheckpointStatus.self, forKey: .checkpoint)
        stopRequested = try c.decode(Bool.self, forKey: .stopRequested)
    }
}

/// The coordinator: plans, liveness and status for one run.
public final class Coordinator {
    private let settings: CoordinatorSettings
    private let statePath: String?
    private var state: CoordinatorState
    private var lastHeartbeat: [Int: Double] = [:]
    private var steps: [Int: Int] = [:]
    private var progress: ProgressMessage?
    private var terminationReason: String?

    /// Creates a coordinator, continuing the run in `statePath` if that file exists.
    /// - Throws: When the state file exists but cannot be read.
    public init(settings: CoordinatorSettings, statePath: String?) throws {
        self.settings = settings
        self.statePath = statePath
        if let statePath, let data = FileManager.default.contents(atPath: statePath) {
            do { state = try JSONDecoder().decode(CoordinatorState.self, from: data) } catch {
                throw MessageError(field: "", message: "\(statePath): unreadable coordinator state (\(error)); move it away to start a new run")
            }
        } else {
            state = CoordinatorState(runID: Self.newRunID())
        }
    }

    /// The run's id.
    public var runID: String { state.runID }

    /// Whether the run has ended (finished or failed).
    public var hasEnded: Bool { state.state == "finished" || state.state == "failed" }

    /// Answers one request at time `now` (seconds, any monotonic origin).
    public func handle(_ request: CoordinatorRequest, now: Double) -> CoordinatorReply {
        switch request {
        case .hello(let hello):
            if let runID = hello.runId, runID != state.runID {
                return .error(MessageError(field: "run_id", message: "this coordinator serves run \(state.runID), not \(runID)"))
            }
            if let expected = state.configHash, expected != hello.configHash {
                return .error(MessageError(field: "config_hash", message: "rank \(hello.rank) has configuration \(hello.configHash) but this run has \(expected)"))
            }
            guard hello.rank >= 0, hello.rank < hello.worldSize, state.worldSize == 0 || state.worldSize == hello.worldSize else {
                return .error(MessageError(field: "rank", message: "rank \(hello.rank) of \(hello.worldSize) does not fit this run of \(state.worldSize) ranks"))
            }
            if state.planner == nil {
                do {
                    state.planner = try UnfreezingPlanner(settings: settings.unfreezing, groupNames: hello.groups,
                                                          baseLearningRate: settings.baseLearningRate, batchNormPolicy: settings.batchNormPolicy)
                } catch {
                    return .error(MessageError(field: "groups", message: error.description))
                }
            }
            state.configHash = hello.configHash
            state.worldSize = hello.worldSize
            state.hellos[hello.rank] = hello
            state.ended[hello.rank] = nil
            // A relaunch (`--resume`) after a failure continues the same run; the failure is kept as history.
            if state.state == "failed" {
                state.previousFailures.append(state.error ?? "failed")
                state.error = nil
                state.failedRank = nil
                state.ended = [:]
            }
            if state.state != "running" { state.state = "running" }
            lastHeartbeat[hello.rank] = now
            save()
            return .ok(runID: state.runID)
        case .heartbeat(let beat):
            if let runID = beat.runId, runID != state.runID {
                return .error(MessageError(field: "run_id", message: "this coordinator serves run \(state.runID), not \(runID)"))
            }
            guard state.hellos[beat.rank] != nil else { return unknownRank(beat.rank) }
            lastHeartbeat[beat.rank] = now
            steps[beat.rank] = beat.step
            return .ok(runID: state.runID)
        case .progress(let message):
            progress = message
            // Rank 0 reports progress every second or so; an operator's stop rides back on the reply.
            return .ok(runID: state.runID, control: state.stopRequested ? "stop" : nil)
        case .control(let control):
            guard let expected = settings.controlToken else {
                return .error(MessageError(field: "token", message: "control is off for this run: set control.token_file in the configuration"))
            }
            guard constantTimeEqual(Array(control.token.utf8), Array(expected.utf8)) else {
                return .error(MessageError(field: "token", message: "refused: wrong token"))
            }
            switch control.command {
            case "stop":
                state.stopRequested = true
            default:
                guard var planner = state.planner else {
                    return .error(MessageError(field: "", message: "no rank has said hello yet, so the model's groups are unknown"))
                }
                do { try planner.thaw(groups: control.groups ?? []) } catch { return .error(error) }
                state.planner = planner
            }
            save()
            return .ok(runID: state.runID)
        case .epochReport(_, let summary):
            state.history.removeAll { $0.epoch >= summary.epoch }
            state.history.append(summary)
            if let path = summary.checkpointPath { state.checkpoint = CheckpointStatus(path: path, epoch: summary.epoch + 1) }
            save()
            return .ok(runID: state.runID)
        case .planRequest(let request):
            guard var planner = state.planner else {
                return .error(MessageError(field: "", message: "no rank has said hello yet, so the model's groups are unknown"))
            }
            // The planner records each epoch's validation loss once, even if the request is repeated.
            if let loss = request.previousValidationLoss, planner.validationLosses.count < request.epoch { planner.record(validationLoss: loss) }
            let plan = planner.plan(forEpoch: request.epoch)
            state.planner = planner
            state.plan = plan
            save()
            return .plan(plan)
        case .finished(let end):
            state.ended[end.rank] = "finished"
            if state.state != "failed" && state.ended.count == state.worldSize && state.ended.values.allSatisfy({ $0 == "finished" }) {
                state.state = "finished"
            }
            save()
            return .ok(runID: state.runID)
        case .failed(let end):
            state.ended[end.rank] = "failed"
            fail("rank \(end.rank) failed: \(end.reason ?? "no reason given")", rank: end.rank)
            return .ok(runID: state.runID)
        case .terminated(let end):
            guard state.hellos[end.rank] != nil else { return unknownRank(end.rank) }
            if state.ended[end.rank] == nil { state.ended[end.rank] = "terminated" }
            terminationReason = terminationReason ?? end.reason
            save()
            checkLiveness(now: now)
            return .ok(runID: state.runID)
        case .status:
            return .status(status(now: now))
        }
    }

    /// How long a status answer is reused for further status queries when no other message has
    /// arrived in between: a status is at most this old.
    public static let statusReuseSeconds = 0.1

    /// Seconds of silence after which a rank counts as dead once another rank of the job has been
    /// terminated by a signal: the job is ending, so the silent rank is the one that died first.
    public static let silenceAfterTermination = 2.5

    /// Marks ranks that stopped sending heartbeats as dead, failing the run and naming the rank.
    ///
    /// When a rank dies (`kill -9`, out of memory, a lost host), mpirun stops the others with
    /// SIGTERM, and they report `terminated`. Those reports are not blamed: the run fails naming the
    /// rank that went silent instead, after ``silenceAfterTermination`` seconds rather than the full
    /// heartbeat timeout. If every rank reports `terminated`, the job was stopped from outside.
    public func checkLiveness(now: Double) {
        guard state.state == "running" else { return }
        let terminated = state.ended.filter { $0.value == "terminated" }.keys.sorted()
        let limit = terminated.isEmpty ? settings.heartbeatTimeout : min(settings.heartbeatTimeout, Self.silenceAfterTermination)
        let silent = state.hellos.keys.filter { state.ended[$0] == nil && now - (lastHeartbeat[$0] ?? now) > limit }
        // The rank silent the longest is the one that died first.
        if let rank = silent.min(by: { (lastHeartbeat[$0] ?? now, $0) < (lastHeartbeat[$1] ?? now, $1) }), let hello = state.hellos[rank] {
            let age = now - (lastHeartbeat[rank] ?? now)
            let others = terminated.isEmpty ? "" : "; then \(Self.rankList(terminated)) stopped (\(terminationReason ?? "signal")), as mpirun does to the other ranks"
            state.ended[rank] = "dead"
            fail("rank \(rank) (host \(hello.host), pid \(hello.pid)) died: no heartbeat for \(Int(age.rounded())) s" + others, rank: rank)
            return
        }
        if !terminated.isEmpty && state.hellos.keys.allSatisfy({ state.ended[$0] != nil }) {
            fail("\(Self.rankList(terminated)) stopped by \(terminationReason ?? "a signal"): the job was stopped from outside (Ctrl-C, scancel, mpirun, a pod eviction)",
                 rank: nil)
        }
    }

    private static func rankList(_ ranks: [Int]) -> String {
        ranks.count == 1 ? "rank \(ranks[0])" : "ranks " + ranks.map(String.init).joined(separator: ", ")
    }

    /// The status report at time `now`.
    public func status(now: Double) -> StatusReport {
        let ranks = state.hellos.keys.sorted().compactMap { rank -> RankStatus? in
            guard let hello = state.hellos[rank] else { return nil }
            let age = now - (lastHeartbeat[rank] ?? now)
            return RankStatus(rank: rank, host: hello.host, pid: hello.pid,
                              alive: state.ended[rank] == nil && age <= settings.heartbeatTimeout && lastHeartbeat[rank] != nil,
                              heartbeatAgeS: lastHeartbeat[rank] == nil ? -1 : age, step: steps[rank] ?? 0, ended: state.ended[rank])
        }
        var schedule: ScheduleStatus?
        if let plan = state.plan, let planner = state.planner {
            schedule = ScheduleStatus(version: plan.version, trainableGroups: plan.trainableGroups,
                                      frozenGroups: planner.groupNames.filter { !plan.trainableGroups.contains($0) },
                                      learningRates: plan.learningRates,
                                      nextChange: planner.nextChange(after: plan.epoch, epochs: settings.epochs))
        }
        let last = state.history.last
        return StatusReport(
            state: state.state, runId: state.runID, worldSize: state.worldSize, ranks: ranks,
            epoch: progress?.epoch ?? state.plan?.epoch, step: progress?.step, samplesPerSecond: progress?.samplesPerSecond,
            schedule: schedule,
            metrics: MetricsStatus(trainLoss: progress?.loss ?? last?.trainLoss, valLoss: last?.validationLoss,
                                   valAccuracy: last?.validationAccuracy, history: state.history),
            checkpoint: state.checkpoint, bytesExchangedPerStep: progress?.bytesExchangedPerStep, error: state.error,
            failedRank: state.failedRank, previousFailures: state.previousFailures)
    }

    /// Serves requests on `address` until `shouldStop` returns true, or (with `exitWhenDone`)
    /// `lingerSeconds` after the run has ended.
    /// - Parameter onBound: Called with the endpoint actually bound (useful with port `*`).
    /// - Parameter curveSecretKey: The server's CURVE secret key; when given, only clients that know the
    ///   matching public key can connect, and all traffic is encrypted.
    public func serve(address: String, exitWhenDone: Bool, lingerSeconds: Double = 3, curveSecretKey: String? = nil,
                      onBound: (String) -> Void = { _ in }, shouldStop: () -> Bool) throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, .router)
        if let curveSecretKey { try socket.enableCurveServer(secretKey: curveSecretKey) }
        // No legitimate message comes near 1 MB; larger frames from a stranger are dropped by libzmq.
        try socket.limitMessageSize(1 << 20)
        onBound(try socket.bind(address))
        var endedAt: Double?
        var cachedStatus: (bytes: [UInt8], at: Double)?
        while !shouldStop() {
            let now = Self.clock()
            checkLiveness(now: now)
            if hasEnded && exitWhenDone {
                endedAt = endedAt ?? now
                if now - (endedAt ?? now) > lingerSeconds { break }
            }
            guard let frames = try socket.receive(timeout: 0.2) else { continue }
            // REQ peers arrive as [identity, empty delimiter, payload]; anything else is not a REQ
            // client, so it is logged and dropped (there is no way to reply to it).
            guard frames.count == 3, frames[1].isEmpty else {
                FileHandle.standardError.write(Data("thaw coordinator: dropped a message of \(frames.count) frame(s) that is not a REQ request\n".utf8))
                continue
            }
            let request: CoordinatorRequest
            do { request = try CoordinatorRequest.decode(frames[2]) } catch {
                try socket.send([frames[0], [], CoordinatorReply.error(error).encoded()])
                continue
            }
            // Status answers are reused for up to `statusReuseSeconds` while nothing else arrives, so
            // hundreds of queries per second cost the training ranks' CPUs almost nothing.
            let at = Self.clock()
            if case .status = request {
                if let cached = cachedStatus, at - cached.at < Self.statusReuseSeconds {
                    try socket.send([frames[0], [], cached.bytes])
                    continue
                }
                let bytes = handle(request, now: at).encoded()
                cachedStatus = (bytes, at)
                try socket.send([frames[0], [], bytes])
                continue
            }
            cachedStatus = nil
            try socket.send([frames[0], [], handle(request, now: at).encoded()])
        }
        socket.close()
    }

    /// Compares tokens without leaking, through timing, how much of a guess was right.
    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) { difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
        return difference == 0
    }

    private func unknownRank(_ rank: Int) -> CoordinatorReply {
        .error(MessageError(field: "rank", message: "rank \(rank) has not said hello"))
    }

    private func fail(_ reason: String, rank: Int?) {
        if state.state != "failed" {
            state.state = "failed"
            state.error = reason
            state.failedRank = rank
        }
        save()
    }

    private func save() {
        guard let statePath else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(state) else { return }
        let temporary = statePath + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { return }
        _ = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        fsync(descriptor)
        close(descriptor)
        rename(temporary, statePath)
    }

    /// Seconds on a monotonic clock.
    public static func clock() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    static func newRunID() -> String {
        var generator = SystemRandomNumberGenerator()
        return "run-" + String(generator.next() & 0xFFFF_FFFF_FFFF, radix: 16)
    }
}
