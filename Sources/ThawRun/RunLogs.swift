// RunLogs: the files a run writes as it goes, as run observers: `metrics.jsonl` (rank 0; plans,
// epochs, and the final and memory lines) and, with `run.log_per_rank`, `rank-R.log` on every rank.
import Foundation
import ThawPlan
import ThawTrainer

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

    private func write(_ text: String) { handle?.write(Data("rank \(rank): \(text)\n".utf8)) }

    deinit { try? handle?.close() }
}

extension MetricsLog: RunObserver {
    /// A `plan` line.
    public func planApplied(_ plan: TrainingPlan, atStep step: Int) { write(kind: "plan", plan) }
    /// An `epoch` line.
    public func epochFinished(_ record: EpochRecord, checkpoint: String?) { write(kind: "epoch", record) }
}

extension RankLog: RunObserver {
    /// The plan's version, digest and step, as this rank applied it.
    public func planApplied(_ plan: TrainingPlan, atStep step: Int) {
        write("plan v\(plan.version) digest \(String(plan.trainableSetDigest, radix: 16)) applied at step \(step), epoch \(plan.epoch + 1): "
              + "trainable \(plan.trainableGroups.joined(separator: ","))")
    }

    /// The step's local loss.
    public func stepFinished(_ report: StepReport) -> OperatorCommand? {
        write("epoch \(report.epoch + 1) step \(report.step)/\(report.steps) local loss \(report.loss)")
        return nil
    }

    /// The epoch's loss and bytes.
    public func epochFinished(_ record: EpochRecord, checkpoint: String?) {
        write("epoch \(record.epoch + 1) done: train loss \(record.train.loss) bytes \(record.bytesExchanged)")
    }

    /// The note.
    public func note(_ text: String) { write(text) }
}
