// CoordinatorLink: a rank's side of the coordinator. It connects (reading the job secret, saying
// hello), serves as rank 0's plan source, and observes the run: heartbeats carry the global step,
// rank 0 reports progress about once a second (an operator's stop rides back on the reply) and each
// finished epoch with its checkpoint, and every rank says how it ended.
import Foundation
import ThawCoordinator
import ThawPlan
import ThawTrainer

/// One rank's connection to the coordinator, as plan source and run observer.
public final class CoordinatorLink: PlanSource, RunObserver {
    /// The connected client.
    public let client: CoordinatorClient
    private let isLeader: Bool
    private var lastProgress = -Double.infinity

    /// Connects to the coordinator at `address` and says hello for this rank.
    /// - Throws: ``TrainingError`` naming the job secret's file or the coordinator, when they refuse or are missing.
    public init(address: String, config: TrainingConfig, rank: Int, worldSize: Int, groups: [String], timeout: Double) throws {
        let process = ProcessInfo.processInfo
        let hello = HelloMessage(runName: config.run.name, rank: rank, worldSize: worldSize, host: process.hostName,
                                 pid: Int(process.processIdentifier), configHash: String(config.digest, radix: 16), groups: groups)
        var serverKey: String?
        if !config.coordinator.curvePublicKeyFile.isEmpty {
            guard let text = try? String(contentsOfFile: config.coordinator.curvePublicKeyFile, encoding: .utf8) else {
                throw TrainingError.io(path: config.coordinator.curvePublicKeyFile, message: "coordinator.curve_public_key_file: cannot read it")
            }
            serverKey = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        do {
            client = try CoordinatorClient(address: address, hello: hello, secretPath: config.jobSecretPath, timeout: timeout, serverKey: serverKey)
        } catch let error as JobSecretError {
            throw TrainingError.io(path: error.path, message: "coordinator.secret_file: \(error.problem)")
        } catch let error as MessageError where error.field == "authentication" {
            throw TrainingError.io(path: config.jobSecretPath, message: "the coordinator at \(address) refused rank \(rank): "
                                   + "it was started with another job secret (coordinator.secret_file); start both with the same one")
        }
        isLeader = rank == 0
        client.reportTerminationBySignal()
    }

    /// Asks the coordinator, retrying while it is unreachable.
    public func plan(forEpoch epoch: Int, previousValidationLoss: Double?) throws -> TrainingPlan {
        try client.requestPlan(epoch: epoch, previousValidationLoss: previousValidationLoss)
    }

    /// The coordinator keeps the planner, so checkpoints hold none.
    public var plannerState: UnfreezingPlanner? { nil }

    /// Heartbeats carry the step; rank 0 reports progress at most once a second and passes on a stop.
    public func stepFinished(_ report: StepReport) -> OperatorCommand? {
        client.setStep(report.globalStep)
        let now = Coordinator.clock()
        guard isLeader, now - lastProgress >= 1 else { return nil }
        lastProgress = now
        return client.report(.progress(ProgressMessage(rank: 0, epoch: report.epoch, step: report.step, loss: report.loss,
                                                       samplesPerSecond: report.samplesPerSecond, bytesExchangedPerStep: report.bytesExchanged)))
    }

    /// Rank 0 reports the epoch and its checkpoint.
    public func epochFinished(_ record: EpochRecord, checkpoint: String?) {
        guard isLeader else { return }
        client.report(.epochReport(EpochReportMessage(rank: 0, summary: EpochSummary(record, checkpoint: checkpoint))))
    }

    /// Says how this rank ended (best effort) and stops the heartbeats.
    public func ended(rank: Int, failure: (any Error)?, stoppedOnRequest: Bool = false) {
        if let failure {
            client.report(.failed(EndMessage(rank: rank, reason: "\(failure)")))
        } else {
            client.report(.finished(EndMessage(rank: rank, reason: stoppedOnRequest ? "stopped on request" : nil)))
        }
        client.stop()
    }
}

extension EpochSummary {
    /// The coordinator's summary of an epoch record (its wire form).
    public init(_ record: EpochRecord, checkpoint: String?) {
        self.init(epoch: record.epoch, planVersion: record.planVersion, trainableGroups: record.trainableGroups,
                  trainLoss: record.train.loss, trainAccuracy: record.train.accuracy, validationLoss: record.validation?.loss,
                  validationAccuracy: record.validation?.accuracy, testAccuracy: record.test?.accuracy, seconds: record.seconds,
                  bytesExchanged: record.bytesExchanged, checkpointPath: checkpoint)
    }
}
