// Timeline: a per-rank record of what the chosen steps spent their time on, written as Chrome trace
// events (`RUN/trace/rank-R.json`, loadable in Perfetto and chrome://tracing).
//
// Note: trace off costs nothing. A run without `training.trace` has no Timeline at all: the trainer,
// the model and the exchange hold `nil`, and `Optional<Timeline>.span` runs its body directly. With
// one, every rank passes one barrier at the start and takes its clock's origin right after it, so
// the ranks' timestamps line up to within that barrier's exit skew (microseconds on one host).
import Foundation
import ThawCollective
import ThawNN

/// Spans of one rank's steps, in microseconds from an origin shared by every rank.
public final class Timeline: GroupPassTimer {
    /// One complete event ("ph": "X").
    struct Event {
        var name: String
        var category: String
        var start: UInt64
        var duration: UInt64
        var arguments: [String: Int]
    }

    /// This rank.
    public let rank: Int
    /// The global steps recorded.
    public let steps: ClosedRange<Int>
    /// The layer groups' names, for forward and backward spans.
    public var groupNames: [String] = []
    /// Whether spans are kept now (the current step is in `steps`).
    public private(set) var isRecording = false
    /// The global step being recorded.
    public private(set) var step = 0
    /// The epoch being recorded.
    public private(set) var epoch = 0
    private var origin = DispatchTime.now().uptimeNanoseconds
    private var events: [Event] = []

    /// A timeline for `rank` that records the global steps in `steps`.
    public init(rank: Int, steps: ClosedRange<Int>) {
        self.rank = rank
        self.steps = steps
    }

    /// Every rank waits at one barrier, then takes its clock's origin, so timestamps agree across ranks.
    public func alignClock(_ collective: any Collective) throws {
        try collective.barrier()
        origin = DispatchTime.now().uptimeNanoseconds
    }

    /// Starts recording if `step` (a global step) is one of ``steps``; spans between steps (evaluation,
    /// checkpoints, cache fills) belong to the step entered last.
    public func enter(step: Int, epoch: Int) {
        self.step = step
        self.epoch = epoch
        isRecording = steps.contains(step)
    }

    /// Nanoseconds since the origin.
    public func now() -> UInt64 {
        let time = DispatchTime.now().uptimeNanoseconds
        return time > origin ? time - origin : 0
    }

    /// Records a span from `start` to `end` (both from ``now()``), when recording.
    public func record(_ name: String, category: String, from start: UInt64, to end: UInt64, arguments: [String: Int] = [:]) {
        guard isRecording else { return }
        var arguments = arguments
        arguments["step"] = step
        arguments["epoch"] = epoch
        events.append(Event(name: name, category: category, start: start, duration: end > start ? end - start : 0, arguments: arguments))
    }

    /// Runs `body` as one span.
    public func span<T>(_ name: String, category: String, arguments: [String: Int] = [:], _ body: () throws -> T) rethrows -> T {
        let start = now()
        defer { record(name, category: category, from: start, to: now(), arguments: arguments) }
        return try body()
    }

    /// A layer group's forward or backward pass (the model calls this).
    public func groupPassFinished(_ pass: GroupPass, group: Int, began: UInt64) {
        let name = group < groupNames.count ? groupNames[group] : "group \(group)"
        record("\(pass == .forward ? "forward" : "backward") \(name)", category: pass == .forward ? "forward" : "backward",
               from: began, to: now(), arguments: ["group": group])
    }

    /// The events as a Chrome trace JSON object, with the rank as its process id.
    public func json() -> [String: Any] {
        // All-reduces run while the rank computes, so they get a track (tid) of their own and the
        // compute track's spans nest strictly.
        var list: [[String: Any]] = [["name": "process_name", "ph": "M", "pid": rank, "tid": 0, "args": ["name": "rank \(rank)"]],
                                     ["name": "thread_name", "ph": "M", "pid": rank, "tid": 0, "args": ["name": "compute"]],
                                     ["name": "thread_name", "ph": "M", "pid": rank, "tid": 1, "args": ["name": "all-reduce"]]]
        for event in events {
            list.append(["name": event.name, "cat": event.category, "ph": "X", "pid": rank, "tid": event.category == "exchange" ? 1 : 0,
                         "ts": Double(event.start) / 1000, "dur": Double(event.duration) / 1000, "args": event.arguments])
        }
        return ["traceEvents": list, "displayTimeUnit": "ms", "otherData": ["rank": rank, "first_step": steps.lowerBound, "last_step": steps.upperBound]]
    }

    /// Writes the trace to `path` (directories made as needed).
    public func write(to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let data: Data
        do { data = try JSONSerialization.data(withJSONObject: json(), options: [.sortedKeys]) } catch {
            throw TrainingError.io(path: path, message: "trace: \(error)")
        }
        guard FileManager.default.createFile(atPath: path, contents: data) else { throw TrainingError.io(path: path, message: "cannot write the trace") }
    }
}

extension Optional where Wrapped == Timeline {
    /// Runs `body`, as a span of the timeline when there is one (without one, just `body`).
    @inline(__always)
    public func span<T>(_ name: String, category: String, arguments: [String: Int] = [:], _ body: () throws -> T) rethrows -> T {
        guard let timeline = self else { return try body() }
        return try timeline.span(name, category: category, arguments: arguments, body)
    }
}
