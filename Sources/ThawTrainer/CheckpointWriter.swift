// CheckpointWriter: writes a run's checkpoints on rank 0: after every N epochs and the last, the
// newest K kept and the best by validation loss (training loss without a validation set); and, for a
// run stopped on request, one named for the step it stopped after. Also: the partial epoch such a
// checkpoint carries.
import Foundation

/// The part of an epoch already trained when a run stopped on request, so it can continue mid-epoch.
public struct PartialEpoch: Codable, Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// Optimizer steps of the epoch already taken.
    public var stepsDone: Int
    /// The epoch's sums so far over every rank (a resumed run adds them on rank 0 only).
    public var sums: ObjectiveResult
    /// Gradient bytes sent so far in the epoch.
    public var bytes: Int
    /// Seconds spent so far in the epoch.
    public var seconds: Double

    /// Creates a partial epoch.
    public init(epoch: Int, stepsDone: Int, sums: ObjectiveResult, bytes: Int, seconds: Double) {
        self.epoch = epoch
        self.stepsDone = stepsDone
        self.sums = sums
        self.bytes = bytes
        self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey { case epoch, stepsDone, sums, bytes, seconds }

    /// Decodes a partial epoch; older checkpoints hold the sums as a list (label loss, correct,
    /// labelled, domain loss, correct, rows, real rows).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(Int.self, forKey: .epoch)
        stepsDone = try c.decode(Int.self, forKey: .stepsDone)
        bytes = try c.decode(Int.self, forKey: .bytes)
        seconds = try c.decode(Double.self, forKey: .seconds)
        if let list = try? c.decode([Double].self, forKey: .sums) {
            sums = ObjectiveResult(values: list)
        } else {
            sums = try c.decode(ObjectiveResult.self, forKey: .sums)
        }
    }
}

/// Writes checkpoints after epochs (on rank 0 only).
public final class CheckpointWriter {
    /// Write one every this many epochs, and after the last.
    public let everyEpochs: Int
    /// How many epoch checkpoints to keep (the newest).
    public let keepLast: Int
    /// Whether to keep `best.safetensors` too.
    public let keepBest: Bool
    /// The run's `checkpoints/` directory.
    public let directory: String
    private let epochs: Int

    /// Creates a writer for a run of `epochs` epochs with its run directory.
    public init(everyEpochs: Int, keepLast: Int, keepBest: Bool, runDirectory: String, epochs: Int) {
        self.everyEpochs = everyEpochs
        self.keepLast = keepLast
        self.keepBest = keepBest
        self.directory = (runDirectory as NSString).appendingPathComponent("checkpoints")
        self.epochs = epochs
    }

    /// Writes the checkpoint of a run stopped mid-epoch, named for its position; returns its path.
    public func writeStopped(_ trainer: Trainer, partial: PartialEpoch) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(String(format: "epoch-%04d-step-%04d.safetensors", partial.epoch, partial.stepsDone))
        try Checkpoint.write(model: trainer.model, optimizer: trainer.optimizer, metadata: trainer.checkpointMetadata(), to: path)
        return path
    }

    /// Writes the checkpoint due after the trainer's last epoch, if one is due; returns its path.
    public func afterEpoch(_ trainer: Trainer) throws -> String? {
        let metadata = trainer.checkpointMetadata()
        let done = metadata.epochsCompleted
        guard everyEpochs > 0, done % everyEpochs == 0 || done == epochs else { return nil }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(String(format: "epoch-%04d.safetensors", done))
        try Checkpoint.write(model: trainer.model, optimizer: trainer.optimizer, metadata: metadata, to: path)
        Checkpoint.prune(directory: directory, keep: keepLast)
        // Best is judged over the whole history, so it survives a resume.
        let losses = metadata.history.map { $0.validation?.loss ?? $0.train.loss }
        if keepBest, let loss = losses.last, let best = losses.min(), loss <= best {
            try Checkpoint.write(model: trainer.model, optimizer: trainer.optimizer, metadata: metadata,
                                 to: (directory as NSString).appendingPathComponent("best.safetensors"))
        }
        return path
    }
}
