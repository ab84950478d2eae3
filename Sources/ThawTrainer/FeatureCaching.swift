// FeatureCaching: when the frozen-prefix cache is built, read, dropped or left off, and why.
//
// While the groups below the trainable boundary are frozen, they are a fixed function of their input
// (inference-mode batch norm, dropout off), so their output is computed once per sample and the
// epochs read it (FeatureCache.swift holds the rows; docs/design.md, "The frozen-prefix cache").
// The rules, each announced once as a note:
// - off for the whole run when the switch is off, or augmentation changes the frozen groups' input;
// - off while frozen batch norm uses batch statistics;
// - not built for a boundary the schedule holds for one epoch only (the fill would compute the frozen
//   output once: exactly the work it saves), from the agreed plan's look-ahead, so every rank decides
//   alike and an operator's thaw is taken into account;
// - dropped when the boundary moves, or when older weights are put back.
// Training rows are filled by every rank computing a 1/W slice and broadcasting it; evaluation rows
// fill as they are first met (evaluation shards never move).
import Foundation
import ThawCollective
import ThawData
import ThawNN
import ThawPlan

/// The frozen-prefix cache's settings.
public struct FeatureCacheSettings: Equatable, Sendable {
    /// Whether to compute the frozen groups' output once and reuse it while the boundary stays put.
    public var enabled: Bool
    /// Bytes the caches of one rank may hold in memory; beyond it they go to a file.
    public var memoryBytes: Int
    /// Where spilled caches go (mapped and unlinked at once).
    public var spillDirectory: String

    /// Creates settings.
    public init(enabled: Bool = true, memoryBytes: Int = 2048 << 20, spillDirectory: String) {
        self.enabled = enabled
        self.memoryBytes = memoryBytes
        self.spillDirectory = spillDirectory
    }
}

/// The cache policy of one trainer.
final class FeatureCaching {
    private let settings: FeatureCacheSettings
    private let model: Model
    private let collective: any Collective
    private let buffers: BatchBuffers
    private let localCapacity: Int
    private let note: (String) -> Void
    /// Why the cache can never be used in this run (nil when it can).
    private let offReason: String?
    private var announcedOff = false
    private var announcedShortBoundary: Int?
    /// Whether the current boundary is held for this epoch only, so no cache is built for it.
    private var boundaryIsShortLived = false
    private var training: FeatureCache?
    private var evaluation: [String: FeatureCache] = [:]
    /// The most bytes the caches held in memory at once.
    private(set) var peakBytes = 0
    /// Records cache fills (nil: no trace).
    var timeline: Timeline?

    /// Creates the policy. `augmented`: the training input is augmented (the cache is then off).
    init(settings: FeatureCacheSettings, augmented: Bool, model: Model, collective: any Collective, buffers: BatchBuffers,
         localCapacity: Int, note: @escaping (String) -> Void) {
        self.settings = settings
        self.model = model
        self.collective = collective
        self.buffers = buffers
        self.localCapacity = localCapacity
        self.note = note
        if !settings.enabled {
            offReason = "training.feature_cache.enabled is false"
        } else if augmented {
            offReason = "data augmentation (data.crop_padding, data.horizontal_flip) changes the frozen groups' input every epoch"
        } else {
            offReason = nil
        }
    }

    /// Bytes of caches held in memory (not in files).
    private var memoryBytes: Int {
        ([training].compactMap { $0 } + Array(evaluation.values)).filter { $0.backing == .memory }.reduce(0) { $0 + $1.byteCount }
    }

    /// After a plan was applied: drops the caches when the boundary moved or batch norm runs on batch statistics.
    func planApplied() {
        guard let cached = training ?? evaluation.values.first else { return }
        if cached.boundary != model.firstTrainableLayer || model.frozenBatchNormPolicy == .batchStatistics {
            drop(because: "the trainable boundary moved (\(model.trainableGroups.first ?? "nothing") now trains)")
        }
    }

    /// Drops every cache (`reason` is announced when given and there was one).
    func drop(because reason: String?) {
        if let reason, training != nil { note("feature cache: dropped: \(reason)") }
        training = nil
        evaluation = [:]
    }

    /// The training batches of `epoch` under `plan`: from the cache of the current boundary (built
    /// now if needed, with the seconds it took), or raw.
    func trainingSource(plan: TrainingPlan, epochs: Int, dataset: any Dataset, augmentation: ImageAugmentation?) throws
        -> (source: BatchSource, fillSeconds: Double?) {
        let started = Date()
        let hadCache = training != nil
        guard let cache = try trainingCache(plan: plan, epochs: epochs, dataset: dataset) else { return (.raw(augmentation: augmentation), nil) }
        return (.cached(cache, needsRawInput: model.needsRawInput(belowGroup: cache.boundary)),
                hadCache ? nil : Date().timeIntervalSince(started))
    }

    /// The batches of an evaluation set named `key`: from its cache at the current boundary (rows
    /// fill as they are met), or raw.
    func evaluationSource(key: String, count: Int) throws -> BatchSource {
        let boundary = model.firstTrainableLayer
        // Evaluation never augments, so only the switch and batch-statistics batch norm rule it out.
        guard boundary > 0, boundary < model.groups.count, settings.enabled, !boundaryIsShortLived,
              model.frozenBatchNormPolicy == .runningStatistics else { return .raw(augmentation: nil) }
        let cache: FeatureCache
        if let existing = evaluation[key], existing.boundary == boundary {
            cache = existing
        } else {
            cache = try newCache(boundary: boundary, count: count, name: key)
            evaluation[key] = cache
        }
        return .cached(cache, needsRawInput: model.needsRawInput(belowGroup: boundary))
    }

    /// Why the cache cannot be used right now, or nil.
    private func blocker() -> String? {
        if let offReason { return offReason }
        if model.frozenBatchNormPolicy == .batchStatistics {
            return "frozen batch norm uses batch statistics (model.frozen_batch_norm), so the frozen groups' output changes as they run"
        }
        return nil
    }

    private func trainingCache(plan: TrainingPlan, epochs: Int, dataset: any Dataset) throws -> FeatureCache? {
        let boundary = model.firstTrainableLayer
        boundaryIsShortLived = false
        guard boundary > 0, boundary < model.groups.count else { return nil }
        if let training, training.boundary == boundary { return training }
        if let reason = blocker() {
            if !announcedOff { note("feature cache: off: \(reason)") }
            announcedOff = true
            return nil
        }
        if let holds = plan.epochsTheSetHolds(epochs: epochs), holds < 2 {
            boundaryIsShortLived = true
            if announcedShortBoundary != boundary {
                note("feature cache: not built for epoch \(plan.epoch + 1): the boundary holds for this epoch only "
                     + (plan.epoch + 1 >= epochs ? "(the last), " : "(the schedule moves it after), ")
                     + "so computing the frozen groups' output once would only repeat the work it saves")
            }
            announcedShortBoundary = boundary
            return nil
        }
        let cache = try newCache(boundary: boundary, count: dataset.count, name: "train")
        let world = collective.worldSize
        func slice(_ rank: Int) -> Range<Int> { (dataset.count * rank / world)..<(dataset.count * (rank + 1) / world) }
        let mine = Array(slice(collective.rank))
        try timeline.span("cache fill", category: "cache", arguments: ["boundary": boundary]) {
            var start = 0
            while start < mine.count {
                let indices: [Int?] = Array(mine[start..<min(start + localCapacity, mine.count)])
                buffers.assemble(indices, from: dataset)
                cache.store(model.forward(buffers.input, groups: 0..<boundary, training: false), indices: indices)
                start += indices.count
            }
            for rank in 0..<world { try cache.broadcast(rows: slice(rank), root: rank, collective: collective) }
        }
        cache.markAllFilled()
        training = cache
        // The layer groups below the boundary (under adapters, not the parameter groups' names).
        let frozen = model.groups[..<model.firstTrainableLayer].map(\.name)
        let place = switch cache.backing {
        case .memory: "in memory"
        case .file: "in a file in \(settings.spillDirectory) (beyond training.feature_cache.memory_mb)"
        }
        note("feature cache: the output of \(frozen.count > 1 ? "\(frozen[0])…\(frozen[frozen.count - 1])" : frozen[0]) "
             + "computed once for \(dataset.count) training samples, \(bytes(cache.byteCount)) \(place); "
             + "only the trainable groups run until the boundary moves")
        return cache
    }

    private func newCache(boundary: Int, count: Int, name: String) throws -> FeatureCache {
        var shape = [1] + model.sampleShape
        for index in 0..<boundary { shape = try model.groups[index].body.outputShape(for: shape) }
        let cache = try FeatureCache(boundary: boundary, rowShape: Array(shape.dropFirst()), count: count,
                                     budgetBytes: settings.memoryBytes - memoryBytes, spillDirectory: settings.spillDirectory,
                                     name: "feature-cache-\(name)-rank\(collective.rank)")
        peakBytes = max(peakBytes, memoryBytes + (cache.backing == .memory ? cache.byteCount : 0))
        return cache
    }
}
