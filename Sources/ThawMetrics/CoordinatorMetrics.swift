// CoordinatorMetrics: a coordinator's status as Prometheus metrics (swift-prometheus).
//
// The coordinator stays socket-free and knows nothing of Prometheus: this watcher reads its status
// (`Coordinator.status(now:)`) from the serve loop's own thread, at most every `refreshSeconds`,
// and sets gauges in a registry that the HTTP thread (MetricsServer) renders on each scrape.
// Values not known yet (no epoch finished, no validation set) are absent until they are.
import Foundation
import Prometheus
import ThawCoordinator
import ThawPlan

/// The Prometheus view of one coordinator. Updated by the serve loop, rendered by the HTTP thread.
public final class CoordinatorMetrics: CoordinatorWatcher, @unchecked Sendable {
    /// Seconds between two reads of the coordinator's status.
    public static let refreshSeconds = 0.25

    /// Where every metric lives; rendered by ``exposition()``.
    public let registry = PrometheusCollectorRegistry()
    private let lock = NSLock()
    private var lastRefresh = -Double.infinity
    private var rejectedSoFar = RejectedMessages()
    private var restartsSoFar = 0
    private let statusLatency: ValueHistogram
    private let statusQueries: Counter

    /// Creates the metrics, with the status-query latency histogram in place from the start.
    public init() {
        statusLatency = registry.makeValueHistogram(
            name: "thaw_status_query_seconds", buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
            help: "Seconds from a status query's arrival to its reply")
        statusQueries = registry.makeCounter(name: "thaw_status_queries_total", help: "Status queries answered")
    }

    /// The metrics in Prometheus text format (version 0.0.4).
    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    /// Records one status query's latency.
    public func statusQueryAnswered(seconds: Double) {
        statusLatency.record(max(0, seconds))
        statusQueries.increment()
    }

    /// Reads the coordinator's status, at most every ``refreshSeconds``.
    public func coordinatorTurned(_ coordinator: Coordinator, now: Double) {
        guard now - lastRefresh >= Self.refreshSeconds else { return }
        lastRefresh = now
        update(from: coordinator.status(now: now))
    }

    /// Sets every metric from one status report.
    public func update(from status: StatusReport) {
        lock.lock()
        defer { lock.unlock() }
        for state in RunState.allCases {
            gauge("thaw_run_state", [("state", state.rawValue)], "1 for the run's current state, 0 for the others")
                .set(Double(state == status.state ? 1 : 0))
        }
        gauge("thaw_run_info", [("run_id", status.runId)], "The run's id, as a label").set(Double(1))
        gauge("thaw_world_size", "Ranks in the run").set(Double(status.worldSize))
        gauge("thaw_ranks_alive", "Ranks that sent a heartbeat within the timeout").set(Double(status.ranks.filter(\.alive).count))
        for rank in status.ranks {
            let labels = [("rank", String(rank.rank))]
            gauge("thaw_rank_heartbeat_age_seconds", labels, "Seconds since the rank's last heartbeat").set(max(0, rank.heartbeatAgeS))
            gauge("thaw_rank_alive", labels, "1 while the rank sends heartbeats").set(Double(rank.alive ? 1 : 0))
            gauge("thaw_rank_step", labels, "Optimizer steps the rank has taken").set(Double(rank.step))
        }
        set("thaw_epoch", status.epoch.map(Double.init), "The current epoch (0-based)")
        set("thaw_step", status.step.map(Double.init), "The current step within the epoch")
        set("thaw_samples_per_second", status.samplesPerSecond, "Training samples per second over all ranks")
        set("thaw_train_loss", status.metrics.trainLoss, "The latest training loss")
        set("thaw_validation_loss", status.metrics.valLoss, "The last epoch's validation loss")
        set("thaw_validation_accuracy", status.metrics.valAccuracy, "The last epoch's validation accuracy (0-1)")
        let last = status.metrics.history.last
        set("thaw_train_accuracy", last?.trainAccuracy, "The last epoch's training accuracy (0-1)")
        set("thaw_test_accuracy", last?.testAccuracy, "The last epoch's test accuracy (0-1)")
        set("thaw_epochs_finished", Double(status.metrics.history.count), "Epochs finished")
        set("thaw_plan_version", status.schedule.map { Double($0.version) }, "The unfreezing plan's version")
        set("thaw_trainable_groups", status.schedule.map { Double($0.trainableGroups.count) }, "Layer groups training now")
        set("thaw_bytes_exchanged_per_step", status.bytesExchangedPerStep.map(Double.init), "Gradient bytes each rank sends per step")
        set("thaw_bytes_exchanged", status.metrics.history.reduce(0.0) { $0 + Double($1.bytesExchanged) },
            "Gradient bytes each rank sent in the finished epochs")
        if status.restarts > restartsSoFar {
            counter("thaw_restarts_total", [], "Relaunches of the run after a failure").increment(by: Int64(status.restarts - restartsSoFar))
            restartsSoFar = status.restarts
        }
        let rejected = status.rejectedMessages
        for (reason, now, before) in [("unauthenticated", rejected.unauthenticated, rejectedSoFar.unauthenticated),
                                      ("replayed", rejected.replayed, rejectedSoFar.replayed),
                                      ("malformed", rejected.malformed, rejectedSoFar.malformed),
                                      ("not_request", rejected.notRequest, rejectedSoFar.notRequest)] {
            // Made at zero for every reason, so a rate() over it works from the first scrape.
            counter("thaw_rejected_messages_total", [("reason", reason)], "Messages the coordinator dropped, by reason")
                .increment(by: Int64(max(0, now - before)))
        }
        rejectedSoFar = rejected
    }

    private func set(_ name: String, _ value: Double?, _ help: String) {
        guard let value, value.isFinite else { return }
        gauge(name, help).set(value)
    }

    private func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(name: name, help: help) }

    private func gauge(_ name: String, _ labels: [(String, String)], _ help: String) -> Gauge {
        registry.makeGauge(name: name, labels: labels, help: help)
    }

    private func counter(_ name: String, _ labels: [(String, String)], _ help: String) -> Counter {
        labels.isEmpty ? registry.makeCounter(name: name, help: help) : registry.makeCounter(name: name, labels: labels, help: help)
    }
}
