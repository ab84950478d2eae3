// The coordinator's Prometheus endpoint with real processes: /metrics scraped over HTTP while
// `mpirun -np 2` workers train (the step must advance between scrapes), and hostile HTTP input
// (garbage, an oversized head, a silent client, wrong methods and paths) that must be answered or
// dropped without stalling the endpoint or the coordinator; and the coordinator's event log.
import Foundation
import Logging
@testable import ThawMetrics
import ThawPlan
import Testing
import ThawTesting

#if canImport(Glibc)
import Glibc
#endif

/// Sends `request` to 127.0.0.1:`port` and returns everything the server answered before closing
/// (empty when it closed without answering). Gives up after `seconds`.
func httpExchange(port: UInt16, _ request: [UInt8], seconds: Double = 5) throws -> String {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(descriptor >= 0)
    defer { close(descriptor) }
    var timeout = timeval(tv_sec: Int(seconds), tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(connected == 0, "cannot connect to the metrics port \(port)")
    _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var answer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { break }
        answer += chunk[0..<count]
    }
    return String(decoding: answer, as: UTF8.self)
}

/// `GET /metrics` and the value of the sample line starting with `series` (nil when absent).
func scrape(port: UInt16) throws -> String { try httpExchange(port: port, Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)) }

func sample(_ exposition: String, _ series: String) -> Double? {
    exposition.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
}

/// The metrics port the coordinator printed.
func metricsPort(_ coordinator: CoordinatorProcess) throws -> UInt16 {
    var port: UInt16?
    for _ in 0..<100 {
        if let line = coordinator.process.output.split(separator: "\n").first(where: { $0.contains("Prometheus metrics at http://") }),
           let text = line.split(separator: ":").last?.split(separator: "/").first {
            port = UInt16(text)
            break
        }
        usleep(50_000)
    }
    return try #require(port, "the coordinator did not say where its metrics are:\n\(coordinator.process.output)")
}

@Suite(.serialized) struct MetricsEndpointTests {
    @Test func metricsAreScrapedDuringALiveRunAndTheStepAdvances() throws {
        // Long enough (18,000 steps of a 512-wide MLP) that a release build is still running after several scrapes.
        let scratch = try ScratchRun(samples: 12_000, sampleShape: [512])
        let config = try scratch.writeConfig(name: "metrics", extra: """
            training: {epochs: 3, batch_size: 2, feature_cache: {enabled: false}}
            unfreezing: {policy: gradual}
            """)
        let coordinator = try CoordinatorProcess(directory: scratch.directory,
                                                 arguments: ["--config", config, "--exit-when-done", "--metrics-bind", "127.0.0.1:0"])
        let port = try metricsPort(coordinator)
        let before = try scrape(port: port)
        #expect(before.hasPrefix("HTTP/1.1 200 OK") && before.contains("text/plain; version=0.0.4"), "\(before)")
        #expect(sample(before, #"thaw_run_state{state="waiting"}"#) == 1, "\(before)")

        let workers = try startWorkers(config: config, coordinator: coordinator.endpoint)
        var steps: [Double] = []
        var last = ""
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, workers.isRunning, steps.count < 2 || steps.last ?? 0 <= steps.first ?? 0 {
            last = try scrape(port: port)
            if sample(last, #"thaw_run_state{state="running"}"#) == 1, let step = sample(last, #"thaw_rank_step{rank="0"}"#), step > 0 {
                if steps.last != step { steps.append(step) }
            }
            usleep(300_000)
        }
        #expect(steps.count >= 2 && (steps.last ?? 0) > (steps.first ?? 0),
                "the step did not advance between scrapes: \(steps)\n\(last)\n\(workers.output)")
        for series in ["thaw_ranks_alive", "thaw_world_size", #"thaw_rank_heartbeat_age_seconds{rank="1"}"#, "thaw_samples_per_second",
                       "thaw_train_loss", "thaw_bytes_exchanged_per_step", #"thaw_rejected_messages_total{reason="malformed"}"#,
                       "thaw_status_queries_total"] {
            #expect(sample(last, series) != nil, "no \(series) during the run:\n\(last)")
        }
        #expect(sample(last, "thaw_ranks_alive") == 2 && sample(last, "thaw_world_size") == 2)

        // A junk frame and a status query show up as a rejection and a latency sample.
        _ = try coordinator.request("{{{")
        _ = try coordinator.status()
        #expect(workers.waitForExit(seconds: 120), "the workers did not finish:\n\(workers.output)")
        var after = ""
        for _ in 0..<40 {
            after = try scrape(port: port)
            if sample(after, #"thaw_run_state{state="finished"}"#) == 1 { break }
            usleep(100_000)
        }
        #expect(sample(after, #"thaw_run_state{state="finished"}"#) == 1, "\(after)")
        #expect(sample(after, "thaw_epochs_finished") == 3 && sample(after, "thaw_test_accuracy") != nil, "\(after)")
        #expect((sample(after, #"thaw_rejected_messages_total{reason="malformed"}"#) ?? 0) >= 1, "\(after)")
        #expect((sample(after, "thaw_status_query_seconds_count") ?? 0) >= 1, "\(after)")
        #expect(sample(after, "thaw_restarts_total") == nil, "no restart happened, yet: \(after)")
    }

    @Test func hostileHTTPInputIsAnsweredOrDroppedAndTheEndpointKeepsServing() throws {
        let server = try MetricsServer(address: "127.0.0.1:0") { Array("thaw_up 1\n".utf8) }
        server.start()
        defer { server.stop() }
        let port = try #require(UInt16(server.boundAddress.split(separator: ":").last ?? ""))
        var generator = SystemRandomNumberGenerator()
        let garbage = (0..<3000).map { _ in UInt8.random(in: 0...255, using: &generator) } + [13, 10, 13, 10]
        let cases: [([UInt8], String)] = [
            (garbage, "400"),
            (Array("POST /metrics HTTP/1.1\r\n\r\n".utf8), "405"),
            (Array("GET /secret HTTP/1.1\r\n\r\n".utf8), "404"),
            (Array("GET /metrics\r\n\r\n".utf8), "400"),
            (Array(("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n").utf8), "431"),
        ]
        for (request, expected) in cases {
            let answer = try httpExchange(port: port, request)
            #expect(answer.isEmpty || answer.hasPrefix("HTTP/1.1 \(expected)"), "expected \(expected), got: \(answer.prefix(80))")
        }
        // A client that connects and says nothing is timed out by the server (after its 2 s, well before
        // the client's own 30 s on a loaded host), and a scrape right after still works.
        let started = Date()
        let silent = try httpExchange(port: port, [], seconds: 30)
        #expect(silent.hasPrefix("HTTP/1.1 408") && Date().timeIntervalSince(started) < 25, "\(silent)")
        let answer = try httpExchange(port: port, Array("GET /metrics?x=1 HTTP/1.0\n\n".utf8))
        #expect(answer.hasPrefix("HTTP/1.1 200 OK") && answer.hasSuffix("thaw_up 1\n"), "\(answer)")
        #expect(throws: MetricsServerError.self) { try MetricsServer(address: "localhost:99999") { [] } }
        #expect(throws: MetricsServerError.self) { try MetricsServer(address: "not-an-ip:9464") { [] } }
    }
}

/// Collects log lines in memory.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

/// A swift-log handler that keeps `level: message`.
struct CapturingHandler: LogHandler {
    let log: CapturedLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        log.append("\(level): \(message)")
    }
}

@Suite struct CoordinatorEventLogTests {
    @Test func stateChangesRanksAndRestartsAreLoggedAtTheirLevels() throws {
        let captured = CapturedLog()
        let events = CoordinatorEventLog(logger: Logger(label: "test") { _ in CapturingHandler(log: captured) })
        func status(_ state: RunState, ranks: [RankStatus], failures: [String] = [], error: String? = nil) -> StatusReport {
            StatusReport(state: state, runId: "run-1", worldSize: 2, ranks: ranks, epoch: nil, step: nil, samplesPerSecond: nil, schedule: nil,
                         metrics: MetricsStatus(trainLoss: nil, valLoss: nil, valAccuracy: nil, history: []), checkpoint: nil,
                         bytesExchangedPerStep: nil, error: error, failedRank: error == nil ? nil : 1, previousFailures: failures,
                         rejectedMessages: RejectedMessages())
        }
        func rank(_ index: Int, pid: Int, ended: RankEnd? = nil) -> RankStatus {
            RankStatus(rank: index, host: "h", pid: pid, alive: ended == nil, heartbeatAgeS: 0, step: 0, ended: ended)
        }
        let running = status(.running, ranks: [rank(0, pid: 10), rank(1, pid: 11)])
        events.report(changesFrom: nil, to: running)
        let failed = status(.failed, ranks: [rank(0, pid: 10, ended: .terminated), rank(1, pid: 11, ended: .dead)], error: "rank 1 died")
        events.report(changesFrom: running, to: failed)
        events.report(changesFrom: failed, to: status(.running, ranks: [rank(0, pid: 20)], failures: ["rank 1 died"]))
        let lines = captured.all
        #expect(lines.contains("notice: run running") && lines.contains("info: rank 1 joined from host h, pid 11"), "\(lines)")
        #expect(lines.contains("error: run failed: rank 1 died") && lines.contains("warning: rank 1 (host h, pid 11) ended: dead"), "\(lines)")
        #expect(lines.contains("notice: run restarted (restart 1) after: rank 1 died") && lines.contains("info: rank 0 joined from host h, pid 20"),
                "\(lines)")
    }
}
