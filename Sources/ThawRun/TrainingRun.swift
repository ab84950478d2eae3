// TrainingRun: everything `thaw train` does around the loop, in order: agree how the ranks were
// started, load the data, build the model, load pretrained weights and the checkpoint, connect to the
// coordinator, assemble the trainer (RunAssembly) with its observers, train, and write the run
// directory (metrics.jsonl, model.safetensors, the final table).
import Foundation
import ThawCollective
import ThawCoordinator
import ThawData
import ThawKernels
import ThawNN
import ThawPlan
import ThawTrainer

/// Where `--resume` continues from.
public enum ResumeSource: Equatable, Sendable, CustomStringConvertible {
    /// This checkpoint file.
    case checkpoint(String)
    /// The newest checkpoint in the run directory (one must exist).
    case latest
    /// The newest checkpoint if there is one, else a fresh start (for batch scripts rerun after a failure).
    case auto

    /// Reads `latest`, `auto` or a path.
    public init(_ text: String) {
        switch text {
        case "latest": self = .latest
        case "auto": self = .auto
        default: self = .checkpoint(text)
        }
    }

    /// The option's value as given.
    public var description: String {
        switch self {
        case .checkpoint(let path): path
        case .latest: "latest"
        case .auto: "auto"
        }
    }

    /// The checkpoint file this source names in `runDirectory`, or nil to start fresh (`auto` without one).
    public func resolve(runDirectory: String) throws -> String? {
        switch self {
        case .auto: Checkpoint.newest(runDirectory: runDirectory)
        case .latest: try Checkpoint.resolve("latest", runDirectory: runDirectory)
        case .checkpoint(let path): try Checkpoint.resolve(path, runDirectory: runDirectory)
        }
    }
}

/// One `thaw train` invocation on this rank.
public final class TrainingRun {
    /// The configuration.
    public let config: TrainingConfig
    private let progress: ProgressStyle
    private let resume: ResumeSource?
    private let coordinator: String?
    private let coordinatorTimeout: Double
    private var link: CoordinatorLink?

    /// Prepares a run.
    /// - Parameters:
    ///   - config: The configuration.
    ///   - progress: How rank 0 shows progress.
    ///   - resume: Where to continue from, or nil for a fresh start.
    ///   - coordinator: The coordinator's address (`tcp://HOST:PORT`), or nil to plan in-process.
    ///   - coordinatorTimeout: Seconds to keep trying to reach the coordinator at start.
    public init(config: TrainingConfig, progress: ProgressStyle, resume: ResumeSource? = nil, coordinator: String? = nil,
                coordinatorTimeout: Double = 30) {
        self.coordinatorTimeout = coordinatorTimeout
        self.config = config
        self.progress = progress
        self.resume = resume
        self.coordinator = coordinator
    }

    /// Runs training to the end and prints the final table on rank 0.
    ///
    /// With several ranks, an error on any rank is printed with the rank and then aborts the whole
    /// job, so no other rank is left waiting in a collective.
    @discardableResult
    public func execute() throws -> [EpochRecord] {
        try MPICollective.runJob({ try train($0) }, onFailure: { error, collective in self.link?.ended(rank: collective.rank, failure: error) },
                                 exitCode: { Self.isConfigurationError($0) ? Self.configurationExitCode : 1 })
    }

    /// The exit status of `thaw train` for a configuration error (sysexits' EX_CONFIG), which a
    /// launcher must not retry; runtime failures exit 1 (or as mpirun reports a killed rank).
    public static let configurationExitCode: Int32 = 78

    /// Whether `error` is the configuration's fault (a bad key, or data, model and settings that do
    /// not fit together), so that running again cannot help.
    public static func isConfigurationError(_ error: any Error) -> Bool { error is ConfigError || error is RunMismatch }

    /// Trains on `collective`'s ranks (already initialized), without finalizing MPI: `execute` and
    /// tools that run several trainings in one job (`thaw compare`) call it.
    public func train(_ collective: MPICollective) throws -> [EpochRecord] {
        // Before anything else: every rank was started alike. A rank alone with --coordinator would
        // wait for a hello the others never send; one alone with --resume would broadcast a checkpoint
        // the others do not expect.
        try RankAgreement.verifyLaunchOptions([("--coordinator", coordinator ?? "none"), ("--resume", resume?.description ?? "none")],
                                              collective: collective)
        try RankAgreement.verifyConfiguration(config, collective: collective)
        let ranksHere = try ranksOnThisHost(collective)
        Gemm.setThreadCount(config.training.blasThreads > 0 ? config.training.blasThreads
                                                            : max(1, ProcessInfo.processInfo.activeProcessorCount / ranksHere))
        let isLeader = collective.rank == 0
        let printer = ProgressPrinter(style: progress)
        if isLeader, let removed = Checkpoint.removeStaleTemporaries(runDirectory: config.run.output) { printer.line(removed) }

        try RunPreflight.beforeLoading(config, worldSize: collective.worldSize, ranksOnHost: ranksHere)
        let data = try DatasetCatalog.load(config.data)
        try RunPreflight.beforeBuilding(config, data: data, worldSize: collective.worldSize, ranksOnHost: ranksHere)
        let model = try ModelZoo.build(config.model, sampleShape: data.train.sampleShape, seed: config.run.seed)
        // Token ids come from data and forward cannot throw, so they are checked once, here.
        try ModelZoo.validateInputs(data.train, for: model, name: "training set")
        if let validation = data.validation { try ModelZoo.validateInputs(validation, for: model, name: "validation set") }
        if let test = data.test { try ModelZoo.validateInputs(test, for: model, name: "test set") }
        if isLeader {
            printer.line("thaw: \(config.model.architecture) on \(config.data.dataset) \(data.train.sampleShape): \(data.train.count) train, "
                         + "\(data.validation?.count ?? 0) validation, \(data.test?.count ?? 0) test samples"
                         + (data.targetTrain.map { " (test from target \(config.data.target), \($0.count) unlabelled target train)" } ?? "") + "; "
                         + "\(collective.worldSize) rank(s); \(model.store.parameterCount) parameters in groups "
                         + model.groupNames.joined(separator: ", "))
            let most = TrainableShare(trainable: model.plannableParameterCount, total: model.store.parameterCount, worldSize: collective.worldSize)
            printer.line("thaw: " + (config.adapterSummary.map { "\($0); " } ?? "") + "trainable at most \(most)")
            printer.describeTrainable = { groups in
                TrainableShare(trainable: model.parameterCount(ofGroups: groups), total: model.store.parameterCount,
                               worldSize: collective.worldSize).description
            }
        }
        // Pretrained weights and the checkpoint: rank 0 reads them, and the trainer broadcasts them.
        if isLeader && !config.model.pretrained.isEmpty {
            let report = try ModelZoo.loadPretrained(config.model.pretrained, into: model, architecture: config.model.architecture,
                                                     strict: config.model.strictLoad, adapters: config.model.adapters)
            printer.line("thaw: pretrained weights from \(config.model.pretrained): \(report)")
        }
        let checkpoint = isLeader ? try loadCheckpoint(printer: printer, worldSize: collective.worldSize) : nil

        let planSource: any PlanSource
        if let coordinator {
            let connected = try CoordinatorLink(address: coordinator, config: config, rank: collective.rank, worldSize: collective.worldSize,
                                                groups: model.plannableGroupNames, timeout: coordinatorTimeout)
            link = connected
            planSource = connected
            if isLeader { printer.line("thaw: coordinator \(coordinator), run \(connected.client.runID)") }
        } else {
            planSource = LocalPlanSource(planner: try RunAssembly.planner(config, groups: model.plannableGroupNames, resumed: checkpoint?.metadata.planner),
                                         epochs: config.training.epochs)
        }
        let log = try MetricsLog(directory: config.run.output, enabled: isLeader, append: checkpoint != nil)
        let rankLog = try RankLog(directory: config.run.output, rank: collective.rank, worldSize: collective.worldSize, enabled: config.run.logPerRank)
        var observers: [any RunObserver] = config.run.logPerRank ? [rankLog] : []
        if let link { observers.append(link) }
        if isLeader { observers += [printer, log] }
        // Domain-adversarial training trains on source and (unlabelled) target images together.
        let train = config.model.domainAdaptation == nil ? data.train : try data.sourceAndTarget()
        let writer = isLeader ? CheckpointWriter(everyEpochs: config.checkpoint.everyEpochs, keepLast: config.checkpoint.keepLast,
                                                 keepBest: config.checkpoint.keepBest, runDirectory: config.run.output,
                                                 epochs: config.training.epochs) : nil
        let trainer = try RunAssembly.trainer(config, model: model, data: TrainingData(train: train, validation: data.validation, test: data.test),
                                              collective: collective, planSource: planSource, checkpoint: checkpoint, checkpoints: writer,
                                              observers: observers)
        let residentBeforeTraining = ResidentMemory.current
        ResidentMemory.resetPeak()
        let history = try trainer.run()
        if let timeline = trainer.timeline {
            let path = Self.tracePath(runDirectory: config.run.output, rank: collective.rank)
            try timeline.write(to: path)
            if isLeader { printer.line("thaw: trace of steps \(timeline.steps.lowerBound)–\(timeline.steps.upperBound) in \((path as NSString).deletingLastPathComponent)/rank-R.json") }
        }
        if let partial = trainer.partial {
            // Stopped by an operator: every rank finished the same step; rank 0 checkpoints it.
            if let writer {
                let path = try writer.writeStopped(trainer, partial: partial)
                printer.line("thaw: stopped on request at epoch \(partial.epoch + 1), step \(partial.stepsDone); checkpoint \(path); "
                             + "continue with --resume latest")
            }
            link?.ended(rank: collective.rank, failure: nil, stoppedOnRequest: true)
            try? collective.finalize()
            return history
        }
        if isLeader, let stopped = trainer.stoppedEarlyAfter {
            printer.line("thaw: early stopping after epoch \(stopped + 1): \(config.training.earlyStopping.metric.rawValue) "
                         + "has not improved since epoch \((trainer.bestEpoch ?? stopped) + 1) and nothing is left to thaw")
        }
        if let restored = trainer.restoredEpoch, isLeader {
            printer.line("thaw: restored the weights of epoch \(restored + 1), the best by \(config.training.earlyStopping.metric.rawValue)")
        }
        if isLeader, trainer.stoppedEarlyAfter != nil || trainer.restoredEpoch != nil {
            log.write(kind: "final", FinalRecord(restoredEpoch: trainer.restoredEpoch, stoppedAfterEpoch: trainer.stoppedEarlyAfter,
                                                 test: trainer.history.last?.test))
        }
        let memory = try RankMemory.gather(RankMemory.measure(rank: collective.rank, model: model, optimizer: trainer.optimizer,
                                                              featureCache: trainer.peakFeatureCacheBytes,
                                                              residentBeforeTraining: residentBeforeTraining), collective: collective)
        log.write(kind: "memory", MemoryRecord(ranks: memory))
        link?.ended(rank: collective.rank, failure: nil)
        if isLeader {
            printer.line(RankMemory.summary(memory))
            let weights = (config.run.output as NSString).appendingPathComponent("model.safetensors")
            try saveWeights(model, to: weights)
            printer.line(summaryTable(history))
            printer.line("thaw: weights in \(weights)")
            printer.line("thaw: metrics in \(log.path)")
        }
        return history
    }

    /// Where rank `rank`'s trace goes: `RUN/trace/rank-R.json`.
    public static func tracePath(runDirectory: String, rank: Int) -> String {
        ((runDirectory as NSString).appendingPathComponent("trace") as NSString).appendingPathComponent("rank-\(rank).json")
    }

    /// Rank 0's checkpoint to resume from, with what it changes said out loud; nil for a fresh start.
    private func loadCheckpoint(printer: ProgressPrinter, worldSize: Int) throws -> Checkpoint? {
        guard let path = try resume?.resolve(runDirectory: config.run.output) else { return nil }
        let loaded = try Checkpoint.load(path)
        printer.line("thaw: resuming from \(path): \(loaded.metadata.epochsCompleted) epoch(s) done, "
                     + "written by \(loaded.metadata.worldSize) rank(s), now \(worldSize)")
        for change in try ResumeChanges.describe(checkpoint: loaded.metadata, path: path, config: config) {
            printer.line("thaw: resume: \(change)")
        }
        return loaded
    }

    /// How many ranks run on this host (this one included), so that OpenBLAS threads × ranks ≤ cores
    /// on every host: ranks share a hash of their host name through one all-reduce.
    func ranksOnThisHost(_ collective: any Collective) throws -> Int {
        var hashes = [Double](repeating: 0, count: collective.worldSize)
        hashes[collective.rank] = Double(fnv1a(Array(ProcessInfo.processInfo.hostName.utf8)) >> 12)   // exact in a Double
        try hashes.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        return hashes.filter { $0 == hashes[collective.rank] }.count
    }

    /// Writes every parameter and state tensor under Thaw's names.
    func saveWeights(_ model: Model, to path: String) throws {
        let store = model.store
        let tensors = (store.parameterEntries.map { ($0, store.parameters) } + store.stateEntries.map { ($0, store.state) }).map { entry, buffer in
            (name: entry.name, shape: entry.shape, values: UnsafeBufferPointer(rebasing: buffer[entry.range]))
        }
        try SafeTensors.write(tensors, metadata: ["format": "thaw", "architecture": config.model.architecture,
                                                  "groups": model.groups.map(\.name).joined(separator: ","),
                                                  "trainable_parameters": String(model.trainableParameterCount),
                                                  "total_parameters": String(model.store.parameterCount)], to: path)
    }

    /// The final table: accuracy, time and bytes per epoch, and when each group thawed.
    func summaryTable(_ history: [EpochRecord]) -> String {
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }
        // Trainable groups are a top slice, so "first…last" names them all.
        func slice(_ groups: [String]) -> String {
            groups.count <= 2 ? groups.joined(separator: ",") : "\(groups[0])…\(groups[groups.count - 1]) (\(groups.count))"
        }
        var lines = ["", "epoch  trainable groups                  train acc  test acc   seconds  exchanged"]
        for r in history {
            let thawed = r.newlyThawed.isEmpty || r.epoch == 0 ? "" : " +\(r.newlyThawed.count)"
            lines.append(pad(String(format: "%5d", r.epoch + 1), 7) + pad(slice(r.trainableGroups) + thawed, 34)
                         + pad(percent(r.train.accuracy), 11) + pad(r.test.map { percent($0.accuracy) } ?? "-", 10)
                         + pad(String(format: "%7.1f", r.seconds), 9) + bytes(r.bytesExchanged))
        }
        if let final = history.last?.test {
            lines.append("final test accuracy: \(percent(final.accuracy)) on \(final.samples) samples")
            // The epochs before the first thaw trained the head alone: the feature-extraction baseline.
            if let headOnly = history.last(where: { $0.trainableGroups.count == 1 })?.test, history.last?.trainableGroups.count ?? 1 > 1 {
                lines.append("head-only accuracy (feature extraction): \(percent(headOnly.accuracy)); "
                             + String(format: "thawing added %+.2f points", (final.accuracy - headOnly.accuracy) * 100))
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// The metrics.jsonl line with every rank's memory figures.
struct MemoryRecord: Encodable {
    var ranks: [RankMemory]
}

/// The metrics.jsonl line written when early stopping ended the run or put back the best epoch's weights.
struct FinalRecord: Encodable {
    var restoredEpoch: Int?
    var stoppedAfterEpoch: Int?
    var test: Evaluation?

    enum CodingKeys: String, CodingKey {
        case restoredEpoch = "restored_epoch"
        case stoppedAfterEpoch = "stopped_after_epoch"
        case test
    }
}
