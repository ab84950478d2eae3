// TrainingRun: everything `thaw train` does around the loop: join the ranks, load the
// data, build the model, train, and write the run directory (metrics.jsonl, summary).
import Foundation
import ThawCollective
import ThawCoordinator
import ThawPlan
import ThawData
import ThawKernels
import ThawNN

/// One `thaw train` invocation on this rank.
public final class TrainingRun {
    /// The configuration.
    public let config: TrainingConfig
    private let progress: ProgressStyle
    private let resume: String?
    private let coordinator: String?
    private let coordinatorTimeout: Double
    private var client: CoordinatorClient?

    /// Prepares a run.
    /// - Parameters:
    ///   - config: The configuration.
    ///   - progress: How rank 0 shows progress.
    ///   - resume: A checkpoint path, `latest` for the newest in the run directory, `auto` for the newest
    ///     if any (else a fresh start), or nil.
    ///   - coordinator: The coordinator's address (`tcp://HOST:PORT`), or nil to plan in-process.
    ///   - coordinatorTimeout: Seconds to keep trying to reach the coordinator at start.
    public init(config: TrainingConfig, progress: ProgressStyle, resume: String? = nil, coordinator: String? = nil,
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
        let collective = try MPICollective()
        do {
            let history = try train(collective)
            try? collective.finalize()
            return history
        } catch {
            client?.report(.failed(EndMessage(rank: collective.rank, reason: "\(error)")))
            client?.stop()
            guard collective.worldSize > 1 else { throw error }
            FileHandle.standardError.write(Data("thaw: rank \(collective.rank) of \(collective.worldSize): error: \(error)\n".utf8))
            collective.abort(code: 1)
        }
    }

    func train(_ collective: MPICollective) throws -> [EpochRecord] {
        // Before anything else: every rank was started alike. A rank alone with --coordinator would
        // wait for a hello the others never send; one alone with --resume would broadcast a checkpoint
        // the others do not expect.
        try RankAgreement.verifyLaunchOptions([("--coordinator", coordinator ?? "none"), ("--resume", resume ?? "none")],
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
        }
        // Pretrained weights: rank 0 loads them, and the trainer broadcasts them to every rank.
        if isLeader && !config.model.pretrained.isEmpty {
            let report = try ModelZoo.loadPretrained(config.model.pretrained, into: model, architecture: config.model.architecture,
                                                     strict: config.model.strictLoad)
            printer.line("thaw: pretrained weights from \(config.model.pretrained): \(report)")
        }
        // Only rank 0 reads the checkpoint; the trainer broadcasts its state to the other ranks.
        var checkpoint: Checkpoint?
        // `auto` resumes from the newest checkpoint if there is one and starts fresh if not.
        let resumePath = try resume.flatMap { $0 == "auto" ? Checkpoint.newest(runDirectory: config.run.output)
                                                           : try Checkpoint.resolve($0, runDirectory: config.run.output) }
        if isLeader, let path = resumePath {
            let loaded = try Checkpoint.load(path)
            checkpoint = loaded
            printer.line("thaw: resuming from \(path): \(loaded.metadata.epochsCompleted) epoch(s) done, "
                         + "written by \(loaded.metadata.worldSize) rank(s), now \(collective.worldSize)")
            for change in try ResumeChanges.describe(checkpoint: loaded.metadata, path: path, config: config) {
                printer.line("thaw: resume: \(change)")
            }
        }
        var planner = try UnfreezingPlanner(settings: config.unfreezing, groupNames: model.groupNames,
                                            baseLearningRate: config.optimizer.learningRate,
                                            batchNormPolicy: config.model.frozenBatchNorm.rawValue)
        // A resumed run keeps its planner's history; changed unfreezing settings or rates apply from the next plan.
        if let saved = checkpoint?.metadata.planner {
            planner = try saved.adopting(settings: config.unfreezing, baseLearningRate: config.optimizer.learningRate,
                                         batchNormPolicy: config.model.frozenBatchNorm.rawValue)
        }
        var planSource: PlanSource = LocalPlanSource(planner: planner)
        if let coordinator {
            let process = ProcessInfo.processInfo
            let hello = HelloMessage(runName: config.run.name, rank: collective.rank, worldSize: collective.worldSize,
                                     host: process.hostName, pid: Int(process.processIdentifier),
                                     configHash: hex(config.digest), groups: model.groupNames)
            var serverKey: String?
            if !config.coordinator.curvePublicKeyFile.isEmpty {
                guard let text = try? String(contentsOfFile: config.coordinator.curvePublicKeyFile, encoding: .utf8) else {
                    throw TrainingError.io(path: config.coordinator.curvePublicKeyFile, message: "coordinator.curve_public_key_file: cannot read it")
                }
                serverKey = text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let connected: CoordinatorClient
            do {
                connected = try CoordinatorClient(address: coordinator, hello: hello, secretPath: config.jobSecretPath,
                                                  timeout: coordinatorTimeout, serverKey: serverKey)
            } catch let error as JobSecretError {
                throw TrainingError.io(path: error.path, message: "coordinator.secret_file: \(error.problem)")
            } catch let error as MessageError where error.field == "authentication" {
                throw TrainingError.io(path: config.jobSecretPath, message: "the coordinator at \(coordinator) refused rank \(collective.rank): "
                                       + "it was started with another job secret (coordinator.secret_file); start both with the same one")
            }
            client = connected
            connected.reportTerminationBySignal()
            planSource = CoordinatorPlanSource(client: connected)
            if isLeader { printer.line("thaw: coordinator \(coordinator), run \(connected.runID)") }
        }
        // Domain-adversarial training trains on source and (unlabelled) target images together.
        let train = config.model.domainAdaptation == nil ? data.train : try data.sourceAndTarget()
        let trainer = try Trainer(config: config, model: model, train: train, validation: data.validation, test: data.test,
                                  collective: collective, planSource: planSource, checkpoint: checkpoint)
        let writer = isLeader && config.checkpoint.everyEpochs > 0
            ? CheckpointWriter(settings: config.checkpoint, runDirectory: config.run.output, epochs: config.training.epochs) : nil
        let client = self.client
        trainer.afterEpoch = { trainer in
            let path = try writer?.afterEpoch(trainer)
            if let path { printer.line("thaw: checkpoint \(path)") }
            if isLeader, let client, let record = trainer.history.last {
                client.report(.epochReport(EpochReportMessage(rank: 0, summary: EpochSummary(
                    epoch: record.epoch, planVersion: record.planVersion, trainableGroups: record.trainableGroups,
                    trainLoss: record.train.loss, trainAccuracy: record.train.accuracy, validationLoss: record.validation?.loss,
                    validationAccuracy: record.validation?.accuracy, testAccuracy: record.test?.accuracy, seconds: record.seconds,
                    bytesExchanged: record.bytesExchanged, checkpointPath: path))))
            }
        }
        let log = try MetricsLog(directory: config.run.output, enabled: isLeader, append: checkpoint != nil)
        let rankLog = try RankLog(directory: config.run.output, rank: collective.rank, worldSize: collective.worldSize,
                                  enabled: config.run.logPerRank)
        var steps = 0
        var lastProgress = -Double.infinity
        let stop = StopFlag()
        if client != nil { trainer.stopRequested = { stop.isSet } }
        trainer.onEvent = { event in
            rankLog.record(event)
            if let client, case .step(let epoch, let step, _, let loss, let rate) = event {
                steps += 1
                client.setStep(steps)
                let now = Coordinator.clock()
                if isLeader && now - lastProgress >= 1 {
                    lastProgress = now
                    let control = client.report(.progress(ProgressMessage(rank: 0, epoch: epoch, step: step, loss: loss, samplesPerSecond: rate,
                                                                          bytesExchangedPerStep: trainer.bytesExchangedPerStep)))
                    if control == .stop { stop.isSet = true }
                }
            }
            guard isLeader else { return }
            printer.handle(event)
            if case .epoch(let record) = event { log.write(kind: "epoch", record) }
            if case .plan(let plan, _) = event { log.write(kind: "plan", plan) }
        }
        let residentBeforeTraining = ResidentMemory.current
        ResidentMemory.resetPeak()
        let history = try trainer.run()
        if let partial = trainer.partial {
            // Stopped by an operator: every rank finished the same step; rank 0 checkpoints it.
            if isLeader {
                let path = try CheckpointWriter.writeStopped(trainer, runDirectory: config.run.output, partial: partial)
                printer.line("thaw: stopped on request at epoch \(partial.epoch + 1), step \(partial.stepsDone); checkpoint \(path); "
                             + "continue with --resume latest")
            }
            client?.report(.finished(EndMessage(rank: collective.rank, reason: "stopped on request")))
            client?.stop()
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
        client?.report(.finished(EndMessage(rank: collective.rank, reason: nil)))
        client?.stop()
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
                                                  "groups": model.groupNames.joined(separator: ",")], to: path)
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

/// A flag the progress reporter sets and the trainer reads on the same thread.
final class StopFlag {
    var isSet = false
}

/// Writes checkpoints after epochs on rank 0: every N epochs and after the last, keeping the newest
/// K and the best by validation loss (training loss without a validation set).
final class CheckpointWriter {
    private let settings: CheckpointSection
    private let directory: String
    private let epochs: Int

    init(settings: CheckpointSection, runDirectory: String, epochs: Int) {
        self.settings = settings
        self.directory = (runDirectory as NSString).appendingPathComponent("checkpoints")
        self.epochs = epochs
    }

    /// Writes the checkpoint of a run stopped mid-epoch, named for its position; returns its path.
    static func writeStopped(_ trainer: Trainer, runDirectory: String, partial: PartialEpoch) throws -> String {
        let directory = (runDirectory as NSString).appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(String(format: "epoch-%04d-step-%04d.safetensors", partial.epoch, partial.stepsDone))
        try Checkpoint.write(model: trainer.model, optimizer: trainer.optimizer, metadata: trainer.checkpointMetadata(), to: path)
        return path
    }

    /// Writes the checkpoint due after the trainer's last epoch, if one is due; returns its path.
    func afterEpoch(_ trainer: Trainer) throws -> String? {
        let metadata = trainer.checkpointMetadata()
        let done = metadata.epochsCompleted
        guard done % settings.everyEpochs == 0 || done == epochs else { return nil }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(String(format: "epoch-%04d.safetensors", done))
        try Checkpoint.write(model: trainer.model, optimizer: trainer.optimizer, metadata: metadata, to: path)
        Checkpoint.prune(directory: directory, keep: settings.keepLast)
        // Best is judged over the whole history, so it survives a resume.
        let losses = metadata.history.map { $0.validation?.loss ?? $0.train.loss }
        if settings.keepBest, let loss = losses.last, let best = losses.min() {
            if loss <= best {
                try Checkpoint.write(model: trainer.model, optimizer: trainer.optimizer, metadata: metadata,
                                     to: (directory as NSString).appendingPathComponent("best.safetensors"))
            }
        }
        return path
    }
}

/// The metrics.jsonl line written when early stopping ended the run or put back the best epoch's weights.
/// The metrics.jsonl line with every rank's memory figures.
struct MemoryRecord: Encodable {
    var ranks: [RankMemory]
}

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
