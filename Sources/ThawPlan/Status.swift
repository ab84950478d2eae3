// Status: the one JSON object a status query returns, and its rendering as a table.
import Foundation

/// One rank as the coordinator sees it.
public struct RankStatus: Codable, Equatable, Sendable {
    /// The rank.
    public var rank: Int
    /// Its host.
    public var host: String
    /// Its process id.
    public var pid: Int
    /// Whether it has sent a heartbeat recently (and has not ended).
    public var alive: Bool
    /// Seconds since its last heartbeat.
    public var heartbeatAgeS: Double
    /// Optimizer steps it has taken.
    public var step: Int
    /// How it ended: `finished`, `failed`, `terminated` (stopped by a signal), `dead` (went silent),
    /// or nil while it runs.
    public var ended: RankEnd?

    enum CodingKeys: String, CodingKey { case rank, host, pid, alive, heartbeatAgeS, step, ended }

    /// Creates a rank's status.
    public init(rank: Int, host: String, pid: Int, alive: Bool, heartbeatAgeS: Double, step: Int, ended: RankEnd?) {
        self.rank = rank; self.host = host; self.pid = pid; self.alive = alive
        self.heartbeatAgeS = heartbeatAgeS; self.step = step; self.ended = ended
    }

    /// Encodes every key, writing null for `ended` while the rank runs.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rank, forKey: .rank)
        try c.encode(host, forKey: .host)
        try c.encode(pid, forKey: .pid)
        try c.encode(alive, forKey: .alive)
        try c.encode(heartbeatAgeS, forKey: .heartbeatAgeS)
        try c.encode(step, forKey: .step)
        try c.encode(ended, forKey: .ended)
    }
}

/// The unfreezing schedule as it stands.
public struct ScheduleStatus: Codable, Equatable, Sendable {
    /// The current plan version (0 before the first plan).
    public var version: Int
    /// Groups training now.
    public var trainableGroups: [String]
    /// Groups frozen now.
    public var frozenGroups: [String]
    /// Base learning rate per trainable group.
    public var learningRates: [String: Float]
    /// The next epoch at which the trainable set changes, when the policy knows it in advance.
    public var nextChange: Int?

    /// Creates the schedule's status.
    public init(version: Int, trainableGroups: [String], frozenGroups: [String], learningRates: [String: Float], nextChange: Int?) {
        self.version = version
        self.trainableGroups = trainableGroups
        self.frozenGroups = frozenGroups
        self.learningRates = learningRates
        self.nextChange = nextChange
    }
}

/// Loss and accuracy so far.
public struct MetricsStatus: Codable, Equatable, Sendable {
    /// The latest training loss (running within the epoch).
    public var trainLoss: Double?
    /// The last validation loss.
    public var valLoss: Double?
    /// The last validation accuracy.
    public var valAccuracy: Double?
    /// Every finished epoch.
    public var history: [EpochSummary]

    /// Creates the metrics' status.
    public init(trainLoss: Double?, valLoss: Double?, valAccuracy: Double?, history: [EpochSummary]) {
        self.trainLoss = trainLoss
        self.valLoss = valLoss
        self.valAccuracy = valAccuracy
        self.history = history
    }
}

/// The last checkpoint.
public struct CheckpointStatus: Codable, Equatable, Sendable {
    /// Its path.
    public var path: String
    /// Epochs finished when it was written.
    public var epoch: Int

    /// Creates the checkpoint's status.
    public init(path: String, epoch: Int) {
        self.path = path
        self.epoch = epoch
    }
}

/// Messages the coordinator dropped since it started, by reason (counted, not logged one by one).
public struct RejectedMessages: Codable, Equatable, Sendable {
    /// Worker messages without a valid signature of this run's job secret.
    public var unauthenticated = 0
    /// Signed worker messages whose sequence number was already used, or too old.
    public var replayed = 0
    /// Frames that are not one JSON request of a known type with the right fields.
    public var malformed = 0
    /// Messages that are not REQ requests (no reply is possible).
    public var notRequest = 0

    /// No rejections.
    public init() {}

    /// All of them.
    public var total: Int { unauthenticated + replayed + malformed + notRequest }
}

/// The answer to `{"type": "status"}`: every key is always present (null when unknown).
public struct StatusReport: Codable, Equatable, Sendable {
    /// `waiting`, `running`, `finished` or `failed`.
    public var state: RunState
    /// The run's id, stable across coordinator restarts with a state file.
    public var runId: String
    /// Ranks announced by the workers (0 before the first hello).
    public var worldSize: Int
    /// Every rank that said hello.
    public var ranks: [RankStatus]
    /// The current epoch (0-based).
    public var epoch: Int?
    /// The current step within the epoch.
    public var step: Int?
    /// Training samples per second over all ranks.
    public var samplesPerSecond: Double?
    /// The unfreezing schedule.
    public var schedule: ScheduleStatus?
    /// Loss, accuracy and history.
    public var metrics: MetricsStatus
    /// The last checkpoint.
    public var checkpoint: CheckpointStatus?
    /// Gradient bytes each rank sends per step.
    public var bytesExchangedPerStep: Int?
    /// What went wrong, when failed.
    public var error: String?
    /// The rank the failure is attributed to (the one that failed or went silent first), when known.
    public var failedRank: Int?
    /// Earlier failures of this run that a resumed launch recovered from, oldest first.
    public var previousFailures: [String]
    /// How many times the run was relaunched after a failure (the count of `previousFailures`).
    public var restarts: Int
    /// Messages dropped since the coordinator started, by reason.
    public var rejectedMessages: RejectedMessages

    enum CodingKeys: String, CodingKey {
        case state, runId, worldSize, ranks, epoch, step, samplesPerSecond, schedule, metrics, checkpoint, bytesExchangedPerStep, error
        case failedRank, previousFailures, restarts, rejectedMessages
    }

    /// Creates a status report.
    public init(state: RunState, runId: String, worldSize: Int, ranks: [RankStatus], epoch: Int?, step: Int?, samplesPerSecond: Double?,
                schedule: ScheduleStatus?, metrics: MetricsStatus, checkpoint: CheckpointStatus?, bytesExchangedPerStep: Int?,
                error: String?, failedRank: Int?, previousFailures: [String], rejectedMessages: RejectedMessages) {
        self.state = state
        self.runId = runId
        self.worldSize = worldSize
        self.ranks = ranks
        self.epoch = epoch
        self.step = step
        self.samplesPerSecond = samplesPerSecond
        self.schedule = schedule
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.bytesExchangedPerStep = bytesExchangedPerStep
        self.error = error
        self.failedRank = failedRank
        self.previousFailures = previousFailures
        self.restarts = previousFailures.count
        self.rejectedMessages = rejectedMessages
    }

    /// Encodes every key, writing null for unknown values.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(state, forKey: .state)
        try c.encode(runId, forKey: .runId)
        try c.encode(worldSize, forKey: .worldSize)
        try c.encode(ranks, forKey: .ranks)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(step, forKey: .step)
        try c.encode(samplesPerSecond, forKey: .samplesPerSecond)
        try c.encode(schedule, forKey: .schedule)
        try c.encode(metrics, forKey: .metrics)
        try c.encode(checkpoint, forKey: .checkpoint)
        try c.encode(bytesExchangedPerStep, forKey: .bytesExchangedPerStep)
        try c.encode(error, forKey: .error)
        try c.encode(failedRank, forKey: .failedRank)
        try c.encode(previousFailures, forKey: .previousFailures)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(rejectedMessages, forKey: .rejectedMessages)
    }

    /// A table a person can read at a glance.
    public var table: String {
        func number(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "-" }
        var lines: [String] = []
        lines.append("run \(runId)   state \(state.rawValue.uppercased())   \(worldSize) rank(s)")
        if let error { lines.append("error" + (failedRank.map { " (rank \($0))" } ?? "") + ": \(error)") }
        if !previousFailures.isEmpty { lines.append("restarted \(restarts) time(s), recovered from \(previousFailures.count) earlier failure(s); last: \(previousFailures[previousFailures.count - 1])") }
        let position = epoch.map { "epoch \($0 + 1)" + (step.map { " step \($0)" } ?? "") } ?? "not started"
        lines.append("\(position)   \(number(samplesPerSecond, "%.0f")) samples/s   \(bytesExchangedPerStep.map { "\($0) B" } ?? "-") exchanged per step")
        if let schedule {
            lines.append("plan v\(schedule.version): trainable [\(schedule.trainableGroups.joined(separator: ", "))]   frozen [\(schedule.frozenGroups.joined(separator: ", "))]"
                         + (schedule.nextChange.map { "   next change at epoch \($0 + 1)" } ?? ""))
            let rates = schedule.trainableGroups.reversed().map { "\($0)=\(String(format: "%.2e", schedule.learningRates[$0] ?? 0))" }
            if !rates.isEmpty { lines.append("learning rates: " + rates.joined(separator: " ")) }
        }
        lines.append("train loss \(number(metrics.trainLoss, "%.4f"))   val loss \(number(metrics.valLoss, "%.4f"))   val acc \(number(metrics.valAccuracy.map { $0 * 100 }, "%.2f%%"))")
        if let checkpoint { lines.append("checkpoint: \(checkpoint.path) (after epoch \(checkpoint.epoch))") }
        if rejectedMessages.total > 0 {
            lines.append("rejected messages: \(rejectedMessages.unauthenticated) unauthenticated, \(rejectedMessages.replayed) replayed, "
                         + "\(rejectedMessages.malformed) malformed, \(rejectedMessages.notRequest) not requests")
        }
        lines.append("rank  host                 pid      alive  heartbeat  step")
        for r in ranks {
            let host = r.host.count > 20 ? String(r.host.prefix(20)) : r.host + String(repeating: " ", count: 20 - r.host.count)
            lines.append(String(format: "%4d  ", r.rank) + host + String(format: " %-8d ", r.pid) + (r.alive ? "yes   " : "NO    ")
                         + String(format: " %7.1f s  %d", r.heartbeatAgeS, r.step) + (r.ended.map { "  \($0.rawValue)" } ?? ""))
        }
        if !metrics.history.isEmpty {
            lines.append("epoch  plan  trainable                     train loss  val acc   test acc  seconds")
            for h in metrics.history {
                let groups = h.trainableGroups.joined(separator: ",")
                let padded = groups.count >= 28 ? String(groups.prefix(28)) : groups + String(repeating: " ", count: 28 - groups.count)
                lines.append(String(format: "%5d  v%-3d  ", h.epoch + 1, h.planVersion) + padded
                             + String(format: "  %10.4f  ", h.trainLoss) + number(h.validationAccuracy.map { $0 * 100 }, "%6.2f%%")
                             + "  " + number(h.testAccuracy.map { $0 * 100 }, "%6.2f%%") + String(format: "  %7.1f", h.seconds))
            }
        }
        return lines.joined(separator: "\n")
    }
}
