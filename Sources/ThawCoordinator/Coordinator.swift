// Coordinator: the process that plans unfreezing, watches every rank and answers status.
//
// It serves one ROUTER socket; workers and status clients are REQ sockets, so every request
// gets exactly one reply. `receive(_:authentication:now:)` checks a frame (decoding, the worker's
// signature, replays) and `handle(_:now:)` is the protocol; both are tested without sockets, and
// `serve` (CoordinatorServer.swift) is the loop around them. With a state file, everything but
// liveness is saved after every change (CoordinatorState.swift), and a restarted coordinator
// continues the same run.
import Foundation
import ThawPlan

#if canImport(Glibc)
import Glibc
#endif

/// What the coordinator needs from the configuration.
public struct CoordinatorSettings: Sendable {
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
    /// The secret every worker message must be signed with (see "Note: worker authentication").
    public var jobSecret: JobSecret

    /// Creates settings. Without a `jobSecret`, a random one no worker knows is used.
    public init(unfreezing: UnfreezingSection, baseLearningRate: Float, batchNormPolicy: String, epochs: Int,
                heartbeatTimeout: Double = 10, controlToken: String? = nil, jobSecret: JobSecret = .random()) {
        self.unfreezing = unfreezing
        self.baseLearningRate = baseLearningRate
        self.batchNormPolicy = batchNormPolicy
        self.epochs = epochs
        self.heartbeatTimeout = heartbeatTimeout
        self.controlToken = controlToken
        self.jobSecret = jobSecret
    }
}

/// The coordinator: plans, liveness and status for one run.
public final class Coordinator {
    let settings: CoordinatorSettings
    private let statePath: String?
    private var state: CoordinatorState
    /// Messages dropped since start, by reason (shown in status).
    public internal(set) var rejected = RejectedMessages()
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
        // A coordinator restarted with a changed configuration plans by it from the next epoch on.
        if let planner = state.planner,
           planner.differs(settings: settings.unfreezing, baseLearningRate: settings.baseLearningRate, batchNormPolicy: settings.batchNormPolicy) {
            state.planner = try planner.adopting(settings: settings.unfreezing, baseLearningRate: settings.baseLearningRate,
                                                 batchNormPolicy: settings.batchNormPolicy)
            adoptedChangedSettings = true
        }
    }

    /// Whether the state file's run was planned with other unfreezing settings or rates than this
    /// coordinator's configuration, which now apply from the next plan on.
    public private(set) var adoptedChangedSettings = false

    /// The run's id.
    public var runID: String { state.runID }

    /// Whether the run has ended (finished or failed).
    public var hasEnded: Bool { state.state.hasEnded }

    /// Checks one request frame from a client and answers it.
    ///
    /// A worker's message (hello, heartbeat, progress, epoch report, plan request, finished, failed,
    /// terminated) must come with an `authentication` frame signed with the job secret and a sequence
    /// number this rank has not used; anything else is dropped, counted in ``rejected`` and answered
    /// with an error that reveals nothing. Status queries and operator commands need no signature.
    /// - Parameters:
    ///   - body: The request's JSON frame.
    ///   - authentication: The second frame, for worker messages.
    ///   - now: Seconds on a monotonic clock.
    public func receive(_ body: [UInt8], authentication: [UInt8]?, now: Double) -> CoordinatorReply {
        let request: CoordinatorRequest
        do { request = try CoordinatorRequest.decode(body) } catch {
            rejected.malformed += 1
            return .error(error)
        }
        if let worker = request.worker {
            guard let authentication, let sequence = settings.jobSecret.verify(body: body, authentication: authentication) else {
                rejected.unauthenticated += 1
                return .error(MessageError(field: "authentication", message: "refused: worker messages must be signed with this run's job secret "
                                           + "(coordinator.secret_file); see docs/protocol.md"))
            }
            guard state.replayWindows[worker.rank, default: ReplayWindow()].admit(sequence) else {
                rejected.replayed += 1
                return .error(MessageError(field: "authentication", message: "refused: rank \(worker.rank) already sent message \(sequence), "
                                           + "or it is too old (a replay, or this host's clock went back)"))
            }
        }
        return handle(request, now: now)
    }

    /// Answers one request at time `now` (seconds, any monotonic origin). The request is trusted:
    /// ``receive(_:authentication:now:)`` checks a worker's signature before calling this.
    public func handle(_ request: CoordinatorRequest, now: Double) -> CoordinatorReply {
        if let worker = request.worker {
            if let runID = worker.runId, runID != state.runID {
                return .error(MessageError(field: "run_id", message: "this coordinator serves run \(state.runID), not \(runID)"))
            }
            if case .hello = request {} else if state.hellos[worker.rank] == nil { return unknownRank(worker.rank) }
        }
        switch request {
        case .hello(let hello):
            if let expected = state.configHash, expected != hello.configHash {
                // The expected digest is not echoed: a client must not learn what to claim.
                return .error(MessageError(field: "config_hash", message: "rank \(hello.rank)'s configuration differs from the one this run started with; "
                                           + "start the coordinator and every rank with the same --config and --set options"))
            }
            guard hello.rank >= 0, hello.rank < hello.worldSize, state.worldSize == 0 || state.worldSize == hello.worldSize || state.state == .failed else {
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
            // A new process for a rank of a running job: the old job died and was relaunched before its
            // failure showed (a launcher's --max-restarts is quicker than the heartbeat timeout).
            if state.state == .running, let previous = state.hellos[hello.rank], previous.pid != hello.pid || previous.host != hello.host {
                fail("rank \(hello.rank) (host \(previous.host), pid \(previous.pid)) stopped without a report, and the job was relaunched", rank: hello.rank)
            }
            // A relaunch (`--resume`) after a failure continues the same run; the failure is kept as history.
            if state.state == .failed {
                state.previousFailures.append(state.error ?? "failed")
                state.error = nil
                state.failedRank = nil
            }
            // A new job of an ended run (a relaunch, a requeue): the old job's ranks are forgotten until they say hello again.
            if state.state.hasEnded {
                state.ended = [:]
                state.hellos = [:]
            }
            state.configHash = hello.configHash
            state.worldSize = hello.worldSize
            state.hellos[hello.rank] = hello
            state.ended[hello.rank] = nil
            if state.state != .running { state.state = .running }
            lastHeartbeat[hello.rank] = now
            save()
            return .ok(runID: state.runID)
        case .heartbeat(let beat):
            lastHeartbeat[beat.rank] = now
            steps[beat.rank] = beat.step
            return .ok(runID: state.runID)
        case .progress(let message):
            progress = message
            // Rank 0 reports progress every second or so; an operator's stop rides back on the reply.
            return .ok(runID: state.runID, control: state.stopRequested ? .stop : nil)
        case .control(let control):
            guard let expected = settings.controlToken else {
                return .error(MessageError(field: "token", message: "control is off for this run: set control.token_file in the configuration"))
            }
            guard constantTimeEqual(Array(control.token.utf8), Array(expected.utf8)) else {
                return .error(MessageError(field: "token", message: "refused: wrong token"))
            }
            switch control.command {
            case .stop:
                state.stopRequested = true
            case .thaw(let groups):
                guard var planner = state.planner else {
                    return .error(MessageError(field: "", message: "no rank has said hello yet, so the model's groups are unknown"))
                }
                do { try planner.thaw(groups: groups) } catch { return .error(error) }
                state.planner = planner
            }
            save()
            return .ok(runID: state.runID)
        case .epochReport(let report):
            let summary = report.summary
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
            let plan = planner.plan(forEpoch: request.epoch, epochs: settings.epochs)
            state.planner = planner
            state.plan = plan
            save()
            return .plan(plan)
        case .finished(let end):
            state.ended[end.rank] = .finished
            if state.state != .failed && state.ended.count == state.worldSize && state.ended.values.allSatisfy({ $0 == .finished }) {
                state.state = .finished
            }
            save()
            return .ok(runID: state.runID)
        case .failed(let end):
            state.ended[end.rank] = .failed
            fail("rank \(end.rank) failed: \(end.reason ?? "no reason given")", rank: end.rank)
            return .ok(runID: state.runID)
        case .terminated(let end):
            if state.ended[end.rank] == nil { state.ended[end.rank] = .terminated }
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
        guard state.state == .running else { return }
        let terminated = state.ended.filter { $0.value == .terminated }.keys.sorted()
        let limit = terminated.isEmpty ? settings.heartbeatTimeout : min(settings.heartbeatTimeout, Self.silenceAfterTermination)
        let silent = state.hellos.keys.filter { state.ended[$0] == nil && now - (lastHeartbeat[$0] ?? now) > limit }
        // The rank silent the longest is the one that died first.
        if let rank = silent.min(by: { (lastHeartbeat[$0] ?? now, $0) < (lastHeartbeat[$1] ?? now, $1) }), let hello = state.hellos[rank] {
            let age = now - (lastHeartbeat[rank] ?? now)
            let others = terminated.isEmpty ? "" : "; then \(Self.rankList(terminated)) stopped (\(terminationReason ?? "signal")), as mpirun does to the other ranks"
            state.ended[rank] = .dead
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
            failedRank: state.failedRank, previousFailures: state.previousFailures, rejectedMessages: rejected)
    }

    private func unknownRank(_ rank: Int) -> CoordinatorReply {
        .error(MessageError(field: "rank", message: "rank \(rank) has not said hello"))
    }

    private func fail(_ reason: String, rank: Int?) {
        if state.state != .failed {
            state.state = .failed
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
