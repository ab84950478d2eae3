// RunStates: the values a run, a rank and an operator's command take, as closed sets instead of strings.
// On the wire they are the lowercase words docs/protocol.md lists.

/// Where a run stands, as the coordinator sees it.
public enum RunState: String, Codable, Sendable, CaseIterable {
    /// No rank has said hello yet.
    case waiting
    /// Ranks are training.
    case running
    /// Every rank finished.
    case finished
    /// A rank failed, died, or the job was stopped from outside.
    case failed

    /// Whether the run is over.
    public var hasEnded: Bool { self == .finished || self == .failed }
}

/// How one rank ended.
public enum RankEnd: String, Codable, Sendable, CaseIterable {
    /// It finished training.
    case finished
    /// It reported an error.
    case failed
    /// It was stopped by a signal (SIGTERM, SIGINT, SIGHUP): usually mpirun after another rank died.
    case terminated
    /// It went silent (no heartbeat within the timeout).
    case dead
}

/// What an operator can tell a running job (`thaw ctl`).
public enum OperatorCommand: Equatable, Sendable {
    /// Every rank finishes its step, rank 0 writes a checkpoint, and the job exits cleanly.
    case stop
    /// These groups (and every group above them) train from the next epoch boundary.
    case thaw(groups: [String])

    /// The command's word on the wire.
    public var name: String {
        switch self {
        case .stop: "stop"
        case .thaw: "thaw"
        }
    }
}
