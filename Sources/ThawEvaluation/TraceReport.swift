// TraceReport: what `thaw report` reads from a run's per-rank timelines (RUN/trace/rank-R.json):
// per epoch, how much of the gradient exchange was hidden behind backward (overlap), and per step,
// which rank computed longest (the one the others waited for).
import Foundation

/// One span of a trace file, as the analysis needs it.
public struct TraceSpan: Equatable, Sendable {
    /// The span's name, such as `backward head` or `all-reduce bucket 0`.
    public var name: String
    /// Its category: forward, backward, exchange, data, optimizer, evaluation, checkpoint, cache.
    public var category: String
    /// The rank that recorded it.
    public var rank: Int
    /// Start and end, in microseconds from the ranks' shared origin.
    public var start: Double, end: Double
    /// The global step and the epoch it belongs to.
    public var step: Int, epoch: Int
}

/// One epoch's exchange overlap, over every rank.
public struct TraceOverlap: Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// Microseconds of all-reduce spans, summed over ranks.
    public var exchangeMicroseconds: Double
    /// The part of them during a backward span of the same rank.
    public var hiddenMicroseconds: Double
    /// hidden ÷ exchange, in percent (0 without exchange).
    public var percentHidden: Double { exchangeMicroseconds > 0 ? 100 * hiddenMicroseconds / exchangeMicroseconds : 0 }
}

/// One step's slowest rank by computation (batch, forward, backward, optimizer).
public struct TraceSlowestRank: Equatable, Sendable {
    /// The global step.
    public var step: Int
    /// The rank that computed longest.
    public var rank: Int
    /// Its computation, and the fastest rank's, in microseconds.
    public var slowestMicroseconds: Double, fastestMicroseconds: Double
}

/// The analysis of a run's trace files.
public struct TraceReport: Sendable {
    /// Every span of every rank.
    public var spans: [TraceSpan]
    /// The ranks that wrote a trace.
    public var ranks: [Int]

    /// Reads `RUN/trace/rank-*.json`; nil when the run has no trace.
    /// - Throws: ``RunReportError`` naming a file that is not a Chrome trace.
    public init?(runDirectory: String) throws {
        let directory = (runDirectory as NSString).appendingPathComponent("trace")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
        let files = names.filter { $0.hasPrefix("rank-") && $0.hasSuffix(".json") }.sorted()
        guard !files.isEmpty else { return nil }
        spans = []
        ranks = []
        for file in files {
            let path = (directory as NSString).appendingPathComponent(file)
            guard let data = FileManager.default.contents(atPath: path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let events = object["traceEvents"] as? [[String: Any]] else {
                throw RunReportError(description: "\(path): not a Chrome trace (an object with traceEvents)")
            }
            for event in events where event["ph"] as? String == "X" {
                guard let name = event["name"] as? String, let rank = event["pid"] as? Int, let start = event["ts"] as? Double,
                      let duration = event["dur"] as? Double, let arguments = event["args"] as? [String: Any] else {
                    throw RunReportError(description: "\(path): an event without name, pid, ts, dur or args")
                }
                spans.append(TraceSpan(name: name, category: event["cat"] as? String ?? "", rank: rank, start: start, end: start + duration,
                                       step: arguments["step"] as? Int ?? 0, epoch: arguments["epoch"] as? Int ?? 0))
                if !ranks.contains(rank) { ranks.append(rank) }
            }
        }
        ranks.sort()
    }

    /// Per epoch: exchange time, and the part of it that ran while the same rank was in backward.
    public func overlap() -> [TraceOverlap] {
        var result: [Int: TraceOverlap] = [:]
        for rank in ranks {
            let mine = spans.filter { $0.rank == rank }
            let backward = mine.filter { $0.category == "backward" }.sorted { $0.start < $1.start }
            for exchange in mine where exchange.category == "exchange" {
                var hidden = 0.0
                for span in backward where span.end > exchange.start && span.start < exchange.end {
                    hidden += min(span.end, exchange.end) - max(span.start, exchange.start)
                }
                var entry = result[exchange.epoch] ?? TraceOverlap(epoch: exchange.epoch, exchangeMicroseconds: 0, hiddenMicroseconds: 0)
                entry.exchangeMicroseconds += exchange.end - exchange.start
                // Backward spans of nested groups do not overlap each other, so the sum is no more than the span.
                entry.hiddenMicroseconds += min(hidden, exchange.end - exchange.start)
                result[exchange.epoch] = entry
            }
        }
        return result.values.sorted { $0.epoch < $1.epoch }
    }

    /// Per step with spans on more than one rank: the rank whose computation took longest.
    public func slowestRanks() -> [TraceSlowestRank] {
        let computing: Set<String> = ["data", "forward", "backward", "optimizer"]
        var perStep: [Int: [Int: Double]] = [:]
        for span in spans where computing.contains(span.category) && !span.name.hasPrefix("evaluation") {
            perStep[span.step, default: [:]][span.rank, default: 0] += span.end - span.start
        }
        return perStep.keys.sorted().compactMap { step in
            guard let times = perStep[step], times.count > 1,
                  let slowest = times.max(by: { ($0.value, -$0.key) < ($1.value, -$1.key) }), let fastest = times.values.min() else { return nil }
            return TraceSlowestRank(step: step, rank: slowest.key, slowestMicroseconds: slowest.value, fastestMicroseconds: fastest)
        }
    }

    /// The Markdown section `thaw report` appends to report.md.
    public func markdown() -> String {
        var lines = ["", "## Timeline (\(ranks.count) rank(s), trace/rank-R.json)", "",
                     "| epoch | exchange (ms, all ranks) | hidden behind backward | overlap |", "|---:|---:|---:|---:|"]
        for entry in overlap() {
            lines.append(String(format: "| %d | %.1f | %.1f | %.0f%% |", entry.epoch + 1, entry.exchangeMicroseconds / 1000,
                                entry.hiddenMicroseconds / 1000, entry.percentHidden))
        }
        let slowest = slowestRanks()
        if !slowest.isEmpty {
            var counts: [Int: Int] = [:]
            for entry in slowest { counts[entry.rank, default: 0] += 1 }
            let summary = counts.keys.sorted().map { "rank \($0): \(counts[$0] ?? 0)" }.joined(separator: ", ")
            lines += ["", "Slowest rank per step by computation (batch, forward, backward, optimizer): \(summary) of \(slowest.count) steps.", "",
                      "| step | slowest rank | its computation (ms) | fastest rank's (ms) |", "|---:|---:|---:|---:|"]
            for entry in slowest.prefix(50) {
                lines.append(String(format: "| %d | %d | %.2f | %.2f |", entry.step, entry.rank, entry.slowestMicroseconds / 1000,
                                    entry.fastestMicroseconds / 1000))
            }
            if slowest.count > 50 { lines += ["", "(first 50 of \(slowest.count) steps)"] }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
