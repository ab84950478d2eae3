// Metrics: what one epoch produced, and the JSON-lines log every run writes.
import Foundation

/// Loss and accuracy over a set of samples.
public struct Evaluation: Codable, Equatable, Sendable {
    /// Mean loss per real sample.
    public var loss: Double
    /// Fraction of real samples classified correctly.
    public var accuracy: Double
    /// How many real samples were counted (over all ranks).
    public var samples: Int
}

/// One epoch's results.
public struct EpochRecord: Codable, Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// The plan version the epoch trained under.
    public var planVersion: Int
    /// The trainable groups during the epoch.
    public var trainableGroups: [String]
    /// Groups thawed at the start of this epoch.
    public var newlyThawed: [String]
    /// Training loss and accuracy (over the real samples of all ranks).
    public var train: Evaluation
    /// Validation results, when a validation set exists.
    public var validation: Evaluation?
    /// Test results, when evaluated this epoch.
    public var test: Evaluation?
    /// Wall-clock seconds of the training part of the epoch.
    public var seconds: Double
    /// Gradient bytes each rank sent into all-reduces during the epoch.
    public var bytesExchanged: Int
    /// Optimizer steps taken.
    public var steps: Int
    /// Training samples per second over all ranks.
    public var samplesPerSecond: Double
    /// Seconds spent filling the frozen-prefix cache before the epoch (not part of `seconds`); nil when
    /// the epoch filled none. An epoch that read the cache has `fromCache` true.
    public var cacheFillSeconds: Double? = nil
    /// Whether the epoch ran only the trainable groups, on cached frozen-prefix features.
    public var fromCache: Bool? = nil
    /// Domain-adversarial training only: the domain classifier's loss and accuracy on the training rows
    /// (source and target) of the epoch; accuracy near ½ means the features no longer tell the domains apart.
    public var domain: Evaluation? = nil

    enum CodingKeys: String, CodingKey {
        case epoch, train, validation, test, seconds, steps, domain
        case cacheFillSeconds = "cache_fill_seconds"
        case fromCache = "from_cache"
        case planVersion = "plan_version"
        case trainableGroups = "trainable_groups"
        case newlyThawed = "newly_thawed"
        case bytesExchanged = "bytes_exchanged"
        case samplesPerSecond = "samples_per_second"
    }
}

/// Appends one JSON object per line to `metrics.jsonl` in the run directory.
public final class MetricsLog {
    private let handle: FileHandle?
    /// The file being written.
    public let path: String

    /// Opens the log: a new run truncates it, a resumed run appends to it so no earlier line is lost.
    /// Returns a log that writes nothing when `enabled` is false.
    public init(directory: String, enabled: Bool, append: Bool = false) throws {
        path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        guard enabled else { handle = nil; return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if !append || !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TrainingError.io(path: path, message: "cannot open for writing")
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    /// Writes one record as a line, with a `kind` field naming it.
    public func write<Record: Encodable>(kind: String, _ record: Record) {
        guard let handle else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let body = try? encoder.encode(record), var line = String(data: body, encoding: .utf8) else { return }
        line = "{\"kind\":\"\(kind)\"," + line.dropFirst()
        handle.write(Data((line + "\n").utf8))
    }

    deinit { try? handle?.close() }
}

/// A per-rank text log, `rank-R.log` in the run directory, written when `run.log_per_rank` is true.
/// It records every plan, every step's local loss and every epoch summary as this rank saw them.
public final class RankLog {
    private let handle: FileHandle?
    private let rank: Int

    /// Opens the rank's log (appending, so a resumed run keeps the earlier lines) and writes which
    /// host and process the rank is, or does nothing when `enabled` is false.
    public init(directory: String, rank: Int, worldSize: Int, enabled: Bool) throws {
        self.rank = rank
        guard enabled else { handle = nil; return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent("rank-\(rank).log")
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TrainingError.io(path: path, message: "cannot open for writing")
        }
        handle.seekToEndOfFile()
        self.handle = handle
        let process = ProcessInfo.processInfo
        handle.write(Data("rank \(rank): started as rank \(rank) of \(worldSize) on \(process.hostName), pid \(process.processIdentifier)\n".utf8))
    }

    /// Appends one line for an event.
    public func record(_ event: TrainingEvent) {
        guard let handle else { return }
        let text: String
        switch event {
        case .plan(let plan, let step):
            text = "plan v\(plan.version) digest \(String(plan.trainableSetDigest, radix: 16)) applied at step \(step), epoch \(plan.epoch + 1): "
                + "trainable \(plan.trainableGroups.joined(separator: ","))"
        case .step(let epoch, let step, let steps, let loss, _):
            text = "epoch \(epoch + 1) step \(step)/\(steps) local loss \(loss)"
        case .epoch(let record):
            text = "epoch \(record.epoch + 1) done: train loss \(record.train.loss) bytes \(record.bytesExchanged)"
        case .note(let note):
            text = note
        }
        handle.write(Data("rank \(rank): \(text)\n".utf8))
    }

    deinit { try? handle?.close() }
}
