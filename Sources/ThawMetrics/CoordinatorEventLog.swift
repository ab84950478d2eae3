// CoordinatorEventLog: the coordinator's operational events as swift-log lines an operator can
// filter by level: the run's state changes, ranks joining and ending, restarts and the failures
// they recovered from. Like the metrics, it reads the coordinator's status from the serve loop.
import Logging
import ThawCoordinator
import ThawPlan

/// Logs what changed in a coordinator's status since the last turn of its serve loop.
public final class CoordinatorEventLog: CoordinatorWatcher {
    private let logger: Logger
    private var last: StatusReport?
    private var lastRead = -Double.infinity

    /// Logs to `logger` (its level filters the lines: notice for state changes and restarts, info for ranks).
    public init(logger: Logger) { self.logger = logger }

    /// Compares the status with the last one, at most every 0.25 s.
    public func coordinatorTurned(_ coordinator: Coordinator, now: Double) {
        guard now - lastRead >= CoordinatorMetrics.refreshSeconds else { return }
        lastRead = now
        let status = coordinator.status(now: now)
        defer { last = status }
        report(changesFrom: last, to: status)
    }

    /// Status queries are not events.
    public func statusQueryAnswered(seconds: Double) {}

    /// Logs the differences between two statuses.
    func report(changesFrom previous: StatusReport?, to status: StatusReport) {
        let metadata: Logger.Metadata = ["run_id": "\(status.runId)"]
        if status.restarts > previous?.restarts ?? 0 {
            logger.notice("run restarted (restart \(status.restarts)) after: \(status.previousFailures.last ?? "a failure")", metadata: metadata)
        }
        if status.state != previous?.state {
            switch status.state {
            case .failed:
                logger.error("run failed: \(status.error ?? "no reason given")", metadata: metadata.merging(
                    status.failedRank.map { ["rank": "\($0)"] } ?? [:]) { $1 })
            case .waiting: logger.info("waiting for workers", metadata: metadata)
            default: logger.notice("run \(status.state.rawValue)", metadata: metadata)
            }
        }
        let before = Dictionary((previous?.ranks ?? []).map { ($0.rank, $0) }) { $1 }
        for rank in status.ranks {
            let old = before[rank.rank]
            if old == nil || old?.pid != rank.pid {
                logger.info("rank \(rank.rank) joined from host \(rank.host), pid \(rank.pid)", metadata: metadata)
            }
            if let ended = rank.ended, old?.ended != ended {
                let line = "rank \(rank.rank) (host \(rank.host), pid \(rank.pid)) ended: \(ended.rawValue)"
                if ended == .finished { logger.info("\(line)", metadata: metadata) } else { logger.warning("\(line)", metadata: metadata) }
            }
        }
    }
}
