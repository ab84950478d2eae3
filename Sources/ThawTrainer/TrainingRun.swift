// TrainingRun: everything `thaw train` does around the loop: join the ranks, load the
// data, build the model, train, and write the run directory (metrics.jsonl, summary).
import Foundation
import ThawCollective
import ThawCoordinator
import ThawData
import ThawKernels
import ThawNN

/// One `thaw train` invocation on this rank.
public final class TrainingRun {
    /// The configuration.
    public let config: TrainingConfig
    private let progress: ProgressStyle

    /// Prepares a run.
    public init(config: TrainingConfig, progress: ProgressStyle) {
        self.config = config
        self.progress = progress
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
            guard collective.worldSize > 1 else { throw error }
            FileHandle.standardError.write(Data("thaw: rank \(collective.rank) of \(collective.worldSize): error: \(error)\n".utf8))
            collective.abort(code: 1)
        }
    }

    private func train(_ collective: MPICollective) throws -> [EpochRecord] {
        Gemm.setThreadCount(max(1, ProcessInfo.processInfo.activeProcessorCount / max(collective.worldSize, 1)))
        let isLeader = collective.rank == 0
        let printer = ProgressPrinter(style: progress)

        let data = try DatasetCatalog.load(config.data)
        let model = try ModelZoo.build(config.model, sampleShape: data.train.sampleShape, seed: config.run.seed)
        if isLeader {
            printer.line("thaw: \(config.model.architecture) on \(config.data.dataset): \(data.train.count) train, "
                         + "\(data.validation?.count ?? 0) validation, \(data.test?.count ?? 0) test samples; "
                         + "\(collective.worldSize) rank(s); \(model.store.parameterCount) parameters in groups "
                         + model.groupNames.joined(separator: ", "))
        }
        let planner = try UnfreezingPlanner(settings: config.unfreezing, groupNames: model.groupNames,
                                            baseLearningRate: config.optimizer.learningRate,
                                            batchNormPolicy: config.model.frozenBatchNorm.rawValue)
        let trainer = try Trainer(config: config, model: model, train: data.train, validation: data.validation, test: data.test,
                                  collective: collective, planSource: LocalPlanSource(planner: planner))
        let log = try MetricsLog(directory: config.run.output, enabled: isLeader)
        let rankLog = try RankLog(directory: config.run.output, rank: collective.rank, enabled: config.run.logPerRank)
        trainer.onEvent = { event in
            rankLog.record(event)
            guard isLeader else { return }
            printer.handle(event)
            if case .epoch(let record) = event { log.write(kind: "epoch", record) }
            if case .plan(let plan) = event { log.write(kind: "plan", plan) }
        }
        let history = try trainer.run()
        if isLeader {
            let weights = (config.run.output as NSString).appendingPathComponent("model.safetensors")
            try saveWeights(model, to: weights)
            printer.line(summaryTable(history))
            printer.line("thaw: weights in \(weights)")
            printer.line("thaw: metrics in \(log.path)")
        }
        return history
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
        var lines = ["", "epoch  trainable groups                  train acc  test acc   seconds  exchanged"]
        for r in history {
            let thawed = r.newlyThawed.isEmpty || r.epoch == 0 ? "" : " (+\(r.newlyThawed.joined(separator: ",")))"
            lines.append(pad(String(format: "%5d", r.epoch + 1), 7) + pad(r.trainableGroups.joined(separator: ",") + thawed, 34)
                         + pad(percent(r.train.accuracy), 11) + pad(r.test.map { percent($0.accuracy) } ?? "-", 10)
                         + pad(String(format: "%7.1f", r.seconds), 9) + bytes(r.bytesExchanged))
        }
        if let final = history.last?.test {
            lines.append("final test accuracy: \(percent(final.accuracy)) on \(final.samples) samples")
        }
        return lines.joined(separator: "\n")
    }
}
