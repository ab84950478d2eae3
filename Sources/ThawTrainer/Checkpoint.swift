// Checkpoint: the full training state in one safetensors file, written atomically by rank 0.
//
// Tensors: every parameter and batch-norm state tensor under its Thaw name, and each optimizer
// buffer (`optimizer.exp_avg`, …) flat, laid out like the parameter buffer. The `thaw.checkpoint`
// metadata entry holds the rest as JSON: epochs completed, global step, plan and planner state,
// per-group optimizer step counts, digests of the configuration and layout, and the metrics history.
// The sampler needs no saved state: each epoch's order is a function of (seed, epoch), and dropout
// is reseeded from (seed, step, rank) at every step, so a checkpoint can be taken at any step.
import Foundation
import ThawPlan
import ThawData
import ThawNN
import ThawOptim

/// Everything about a run's progress that is not a tensor.
public struct CheckpointMetadata: Codable, Sendable {
    /// The checkpoint format version.
    public var formatVersion = 1
    /// Epochs finished; training resumes at this (0-based) epoch.
    public var epochsCompleted: Int
    /// Optimizer steps taken so far (drives the schedule).
    public var globalStep: Int
    /// Hex digest of the configuration that wrote the checkpoint.
    public var configDigest: String
    /// Hex digest of the parameter layout (names, shapes, groups).
    public var layoutDigest: String
    /// The number of ranks that wrote it (any number can resume it).
    public var worldSize: Int
    /// The architecture name.
    public var architecture: String
    /// The plan in force during the last finished epoch.
    public var plan: TrainingPlan?
    /// The in-process planner's state, when plans came from it.
    public var planner: UnfreezingPlanner?
    /// The global step at which each group was last thawed (for thaw warmup).
    public var thawedAtStep: [String: Int]
    /// Optimizer steps per group since its state was initialized.
    public var optimizerStepCounts: [Int]
    /// Whether each group's optimizer state is live.
    public var optimizerHasState: [Bool]
    /// Every finished epoch's record.
    public var history: [EpochRecord]
    /// Where the next epoch stood, when the run was stopped mid-epoch on request.
    public var partialEpoch: PartialEpoch?
    /// The run's first step's loss, which divergence is judged against (absent in older checkpoints).
    public var referenceLoss: Double?
    /// The configuration that wrote it, as canonical JSON (absent in older checkpoints), so a resume
    /// can say what changed.
    public var configuration: String?
}

/// A checkpoint read from disk: its tensors and metadata.
public struct Checkpoint {
    /// The file it came from.
    public let path: String
    /// Tensors by name.
    public let tensors: [String: SafeTensor]
    /// The non-tensor state.
    public let metadata: CheckpointMetadata

    static let metadataKey = "thaw.checkpoint"

    /// Reads and decodes a checkpoint file.
    /// - Throws: ``DataError`` for a damaged file, ``TrainingError`` when it is not a Thaw checkpoint.
    public static func load(_ path: String) throws -> Checkpoint {
        let file = try SafeTensors.read(path)
        guard let json = file.metadata[metadataKey] else {
            throw TrainingError.io(path: path, message: "not a Thaw checkpoint (no \(metadataKey) metadata); use a file from RUN/checkpoints/")
        }
        let metadata: CheckpointMetadata
        do { metadata = try JSONDecoder().decode(CheckpointMetadata.self, from: Data(json.utf8)) } catch {
            throw TrainingError.io(path: path, message: "damaged checkpoint metadata: \(error)")
        }
        return Checkpoint(path: path, tensors: file.tensors, metadata: metadata)
    }

    /// Copies parameters and batch-norm state into a model, checking every name and shape first.
    /// - Throws: ``TrainingError`` naming the first missing or mismatched tensor; the model is unchanged then.
    public func restore(into model: Model) throws {
        let store = model.store
        let entries = store.parameterEntries.map { ($0, store.parameters) } + store.stateEntries.map { ($0, store.state) }
        for (entry, _) in entries {
            guard let tensor = tensors[entry.name] else {
                throw TrainingError.io(path: path, message: "tensor '\(entry.name)' is missing; the checkpoint is for a different architecture (\(metadata.architecture))")
            }
            guard tensor.shape == entry.shape else {
                throw TrainingError.io(path: path, message: "tensor '\(entry.name)' has shape \(tensor.shape), the model needs \(entry.shape)")
            }
        }
        for (entry, buffer) in entries {
            tensors[entry.name]?.values.withUnsafeBufferPointer { source in
                (buffer.baseAddress! + entry.offset).update(from: source.baseAddress!, count: entry.count)
            }
        }
    }

    /// Copies the optimizer buffers and per-group counters into an optimizer.
    public func restore(into optimizer: Optimizer) throws {
        for buffer in optimizer.stateBuffers {
            guard let tensor = tensors["optimizer.\(buffer.name)"], tensor.values.count == buffer.values.count else {
                throw TrainingError.io(path: path, message: "optimizer buffer '\(buffer.name)' is missing or has the wrong size; was the checkpoint written with another optimizer.kind?")
            }
            tensor.values.withUnsafeBufferPointer { source in
                buffer.values.baseAddress!.update(from: source.baseAddress!, count: buffer.values.count)
            }
        }
        do { try optimizer.restoreGroupState(stepCounts: metadata.optimizerStepCounts, hasState: metadata.optimizerHasState) } catch {
            throw TrainingError.io(path: path, message: "optimizer state: \(error)")
        }
    }

    /// Writes a checkpoint atomically (temporary file, fsync, rename, fsync of the directory).
    public static func write(model: Model, optimizer: Optimizer, metadata: CheckpointMetadata, to path: String) throws {
        let store = model.store
        var tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)] = []
        for entry in store.parameterEntries {
            tensors.append((entry.name, entry.shape, UnsafeBufferPointer(rebasing: store.parameters[entry.range])))
        }
        for entry in store.stateEntries {
            tensors.append((entry.name, entry.shape, UnsafeBufferPointer(rebasing: store.state[entry.range])))
        }
        for buffer in optimizer.stateBuffers {
            tensors.append(("optimizer.\(buffer.name)", [buffer.values.count], UnsafeBufferPointer(buffer.values)))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(metadata), as: UTF8.self)
        try SafeTensors.write(tensors, metadata: [metadataKey: json, "format": "thaw-checkpoint",
                                                  "groups": model.groups.map(\.name).joined(separator: ","),
                                                  "trainable_parameters": String(model.trainableParameterCount),
                                                  "total_parameters": String(model.store.parameterCount)], to: path)
        try AtomicFile.synchronizeDirectory(of: path)
    }

    /// The checkpoint a `--checkpoint` or `--resume` value names: a file path, or `latest` for the
    /// newest in the run's `checkpoints/` directory.
    public static func resolve(_ value: String, runDirectory: String) throws -> String {
        guard value == "latest" else {
            guard FileManager.default.fileExists(atPath: value) else {
                throw TrainingError.io(path: value, message: "no such checkpoint file")
            }
            return value
        }
        guard let newest = newest(runDirectory: runDirectory) else {
            throw TrainingError.io(path: (runDirectory as NSString).appendingPathComponent("checkpoints"),
                                   message: "`latest`: no epoch-NNNN.safetensors checkpoint here (has the run written one yet? checkpoints are written every checkpoint.every_epochs epochs; 0 turns them off)")
        }
        return newest
    }

    /// The newest checkpoint in the run's `checkpoints/` directory, or nil when there is none.
    public static func newest(runDirectory: String) -> String? {
        let directory = (runDirectory as NSString).appendingPathComponent("checkpoints")
        return epochFiles(in: directory).last.map { (directory as NSString).appendingPathComponent($0) }
    }

    /// `epoch-NNNN.safetensors` and `epoch-NNNN-step-SSSS.safetensors` (a stop mid-epoch) files in a
    /// directory, oldest first by (epochs done, steps into the next).
    static func epochFiles(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        func position(_ name: String) -> (Int, Int)? {
            let parts = name.dropLast(".safetensors".count).split(separator: "-")
            guard parts.count >= 2, parts[0] == "epoch", let epochs = Int(parts[1]) else { return nil }
            if parts.count == 2 { return (epochs, 0) }
            guard parts.count == 4, parts[2] == "step", let step = Int(parts[3]) else { return nil }
            return (epochs, step)
        }
        return names.filter { $0.hasSuffix(".safetensors") }.compactMap { name in position(name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }.map(\.0)
    }

    /// Deletes all but the newest `keep` epoch checkpoints, and the temporaries of killed checkpoint
    /// writes (see "Note: stale temporaries" in SafeTensorsTemporaries.swift).
    static func prune(directory: String, keep: Int) {
        let files = epochFiles(in: directory)
        for name in files.dropLast(max(keep, 1)) {
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(name))
        }
        SafeTensors.removeStaleTemporaries(in: directory)
    }

    /// Removes the temporaries that killed writes left in a run directory (`model.safetensors.tmp-PID`,
    /// ...) and in its `checkpoints/`; run by rank 0 when a run starts.
    /// - Returns: The line to print, or nil when there were none.
    public static func removeStaleTemporaries(runDirectory: String) -> String? {
        let top = SafeTensors.removeStaleTemporaries(in: runDirectory)
        let checkpoints = SafeTensors.removeStaleTemporaries(in: (runDirectory as NSString).appendingPathComponent("checkpoints"))
        let count = top.paths.count + checkpoints.paths.count
        guard count > 0 else { return nil }
        let megabytes = Double(top.bytes + checkpoints.bytes) / 1e6
        return "thaw: removed \(count) stale temporary file\(count == 1 ? "" : "s") of killed writes in \(runDirectory) "
            + String(format: "(%.1f MB)", megabytes)
    }
}

/// Durable file updates.
public enum AtomicFile {
    /// Flushes a directory entry to disk, so a rename inside it survives a crash.
    public static func synchronizeDirectory(of path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let descriptor = open(directory.isEmpty ? "." : directory, O_RDONLY)
        guard descriptor >= 0 else { throw TrainingError.io(path: directory, message: "cannot open directory to sync it") }
        defer { close(descriptor) }
        _ = fsync(descriptor)
    }
}

/// Formats a digest for checkpoint metadata.
func hex(_ value: UInt64) -> String { String(value, radix: 16) }

#if canImport(Glibc)
import Glibc
#endif
