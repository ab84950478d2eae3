// CoordinatorState: what the coordinator saves after every change, so that a restarted
// coordinator continues the same run (liveness is not saved and starts fresh).
import Foundation
import ThawPlan

/// The coordinator's durable state (everything but liveness, which restarts fresh).
struct CoordinatorState: Codable {
    var runID: String
    var state = RunState.waiting
    var worldSize = 0
    var configHash: String?
    var hellos: [Int: HelloMessage] = [:]
    var planner: UnfreezingPlanner?
    var plan: TrainingPlan?
    var history: [EpochSummary] = []
    var ended: [Int: RankEnd] = [:]
    var error: String?
    var failedRank: Int?
    var previousFailures: [String] = []
    var checkpoint: CheckpointStatus?
    var stopRequested = false
    /// Per rank, the sequence numbers of its signed messages (only the highest is saved).
    var replayWindows: [Int: ReplayWindow] = [:]

    init(runID: String) { self.runID = runID }

    /// Decodes a state file, giving fields added in later versions their defaults.
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        runID = try c.decode(String.self, forKey: .runID)
        state = try c.decode(RunState.self, forKey: .state)
        worldSize = try c.decode(Int.self, forKey: .worldSize)
        configHash = try c.decodeIfPresent(String.self, forKey: .configHash)
        hellos = try c.decode([Int: HelloMessage].self, forKey: .hellos)
        planner = try c.decodeIfPresent(UnfreezingPlanner.self, forKey: .planner)
        plan = try c.decodeIfPresent(TrainingPlan.self, forKey: .plan)
        history = try c.decode([EpochSummary].self, forKey: .history)
        ended = try c.decode([Int: RankEnd].self, forKey: .ended)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        failedRank = try c.decodeIfPresent(Int.self, forKey: .failedRank)
        previousFailures = try c.decodeIfPresent([String].self, forKey: .previousFailures) ?? []
        checkpoint = try c.decodeIfPresent(CheckpointStatus.self, forKey: .checkpoint)
        stopRequested = try c.decode(Bool.self, forKey: .stopRequested)
        replayWindows = try c.decodeIfPresent([Int: ReplayWindow].self, forKey: .replayWindows) ?? [:]
    }
}
