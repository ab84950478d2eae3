// The per-rank timeline with real processes: a 2-rank bucketed run writes RUN/trace/rank-R.json for
// each rank in Chrome trace format; the compute track's spans nest, every kind of span is there,
// bucket all-reduces overlap backward spans, and `thaw report` summarizes overlap and slow ranks.
import Foundation
import Testing
import ThawEvaluation
import ThawRun
import ThawTesting

@Suite(.serialized) struct TraceTests {
    @Test func aBucketedTwoRankRunWritesNestedSpansWhoseBucketsOverlapBackward() throws {
        let scratch = try ScratchRun(samples: 400, sampleShape: [32])
        // One bucket per group (a bucket of at most one element), so lower groups' backward runs while
        // the head's bucket reduces; steps 3–24, the end of epoch 1 (evaluation and checkpoint included).
        let config = try scratch.writeConfig(name: "traced", extra: """
            training: {epochs: 2, batch_size: 16, exchange: bucketed, bucket_size_mb: 0.000001, trace: {enabled: true, steps: [3, 24]}}
            """)
        let run = try runTraining(config: config, ranks: 2)
        try #require(run.exitCode == 0, "\(run.output)")

        for rank in 0..<2 {
            let path = TrainingRun.tracePath(runDirectory: scratch.path("traced"), rank: rank)
            let data = try #require(FileManager.default.contents(atPath: path), "no trace for rank \(rank)")
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let events = try #require(object["traceEvents"] as? [[String: Any]])
            let spans = events.filter { $0["ph"] as? String == "X" }
            #expect(spans.allSatisfy { $0["pid"] as? Int == rank && $0["ts"] is Double && $0["dur"] is Double })
            let steps = spans.compactMap { ($0["args"] as? [String: Any])?["step"] as? Int }
            #expect(steps.count == spans.count && steps.allSatisfy { (3...24).contains($0) }, "steps outside 3–24: \(Set(steps).sorted())")
            let categories = Set(spans.compactMap { $0["cat"] as? String })
            for category in ["data", "forward", "backward", "exchange", "optimizer", "evaluation", "checkpoint"] {
                #expect(categories.contains(category), "rank \(rank) has no \(category) span: \(categories.sorted())")
            }
            let names = Set(spans.compactMap { $0["name"] as? String })
            for name in ["forward hidden1", "forward head", "backward head", "backward hidden1", "all-reduce bucket 0", "all-reduce bucket 2"] {
                #expect(names.contains(name), "rank \(rank) has no span '\(name)': \(names.sorted())")
            }

            // The compute track (tid 0) nests strictly: two spans are disjoint, or one holds the other.
            let intervals: [TraceInterval] = spans.filter { $0["tid"] as? Int == 0 }.map(TraceInterval.init).sorted(by: TraceInterval.outerFirst)
            var open: [TraceInterval] = []
            var crossing: [String] = []
            for interval in intervals {
                while let last = open.last, last.end <= interval.start { open.removeLast() }
                if let last = open.last, interval.end > last.end + 0.001 { crossing.append("\(interval.name) crosses \(last.name)") }
                open.append(interval)
            }
            #expect(crossing.isEmpty, "rank \(rank): spans that do not nest: \(crossing.prefix(5))")

            // Bucket all-reduces run while lower groups' backward computes.
            let backward = intervals.filter { $0.name.hasPrefix("backward") }
            let buckets = spans.map(TraceInterval.init).filter { $0.name.hasPrefix("all-reduce bucket") }
            let overlapping = buckets.filter { bucket in backward.contains { $0.start < bucket.end && bucket.start < $0.end } }
            #expect(!overlapping.isEmpty, "rank \(rank): no bucket all-reduce overlaps a backward span")
        }

        let report = try #require(try TraceReport(runDirectory: scratch.path("traced")))
        #expect(report.ranks == [0, 1])
        let overlap = report.overlap()
        #expect(overlap.map(\.epoch) == [0], "steps 3–24 lie in epoch 1 (25 steps per epoch): \(overlap)")
        #expect(overlap.allSatisfy { $0.percentHidden > 0 && $0.percentHidden <= 100 }, "\(overlap)")
        #expect(report.slowestRanks().count == 22, "one slowest rank per traced step")
        let thaw = try #require(thawExecutablePath())
        let command = try spawnProcessGroup([thaw, "report", scratch.path("traced")], hangGuardSeconds: 60)
        #expect(command.exitCode == 0, "\(command.output)")
        let markdown = try String(contentsOfFile: scratch.path("traced/report.md"), encoding: .utf8)
        #expect(markdown.contains("## Timeline (2 rank(s)") && markdown.contains("hidden behind backward") && markdown.contains("Slowest rank"), "\(markdown)")
    }

    @Test func traceStepsAreCheckedWithTheirKeyPaths() throws {
        for (steps, key) in [("[5]", "training.trace.steps"), ("[7, 3]", "training.trace.steps[1]"), ("[-1, 3]", "training.trace.steps[0]")] {
            #expect {
                _ = try TrainingConfig.load(path: nil, overrides: ["training.trace={enabled: true, steps: \(steps)}"])
            } throws: { error in
                "\(error)".contains(key)
            }
        }
        #expect(throws: (any Error).self) { _ = try TrainingConfig.load(path: nil, overrides: ["training.trace.colour=red"]) }
        let config = try TrainingConfig.load(path: nil, overrides: ["training.trace={enabled: true, steps: [2, 9]}"])
        #expect(config.training.trace.enabled && config.training.trace.stepRange == 2...9)
    }
}

/// One span of a trace file: name, start and end in microseconds.
struct TraceInterval {
    var name: String
    var start: Double
    var end: Double

    init(_ event: [String: Any]) {
        name = event["name"] as? String ?? ""
        start = event["ts"] as? Double ?? 0
        end = start + (event["dur"] as? Double ?? 0)
    }

    /// Earlier first; of two starting together, the longer (outer) one first.
    static func outerFirst(_ a: TraceInterval, _ b: TraceInterval) -> Bool { a.start < b.start || (a.start == b.start && a.end > b.end) }
}
