// Comparison: the negative-transfer check behind `thaw compare`. The same recipe runs twice on the
// same ranks and data: as configured (pretrained weights, unfreezing schedule) and from scratch
// (random initialization, every group trainable from the first step at one learning rate). Both runs
// are full `thaw train` runs with their own run directories; the verdict compares their final test accuracy.
import Foundation
import ThawRun
import ThawTrainer
import ThawCollective
import ThawPlan

/// The outcome of one comparison (identical on every rank).
public struct ComparisonOutcome: Codable, Equatable, Sendable {
    /// Final test accuracy of the run as configured (pretrained), in [0, 1].
    public var transferAccuracy: Double
    /// Final test accuracy of the run from scratch, in [0, 1].
    public var scratchAccuracy: Double
    /// Transfer minus scratch, in percentage points.
    public var differencePoints: Double
    /// Test samples each accuracy was measured on.
    public var testSamples: Int
    /// One plain sentence: "transfer helped by X points …" or "transfer hurt: …".
    public var verdict: String
    /// The pretrained run's directory.
    public var transferRun: String
    /// The scratch run's directory.
    public var scratchRun: String

    enum CodingKeys: String, CodingKey {
        case verdict
        case transferAccuracy = "transfer_accuracy"
        case scratchAccuracy = "scratch_accuracy"
        case differencePoints = "difference_points"
        case testSamples = "test_samples"
        case transferRun = "transfer_run"
        case scratchRun = "scratch_run"
    }

    /// Builds the outcome and its verdict from the two accuracies.
    public init(transferAccuracy: Double, scratchAccuracy: Double, testSamples: Int, transferRun: String, scratchRun: String) {
        self.transferAccuracy = transferAccuracy
        self.scratchAccuracy = scratchAccuracy
        self.differencePoints = (transferAccuracy - scratchAccuracy) * 100
        self.testSamples = testSamples
        self.transferRun = transferRun
        self.scratchRun = scratchRun
        self.verdict = ComparisonOutcome.verdict(transferAccuracy: transferAccuracy, scratchAccuracy: scratchAccuracy)
    }

    /// The plain-language verdict.
    public static func verdict(transferAccuracy: Double, scratchAccuracy: Double) -> String {
        let points = (transferAccuracy - scratchAccuracy) * 100
        let both = String(format: "%.2f%% pretrained vs %.2f%% from scratch", transferAccuracy * 100, scratchAccuracy * 100)
        if points > 0 { return String(format: "transfer helped by %.2f points (", points) + both + ")" }
        if points < 0 {
            return String(format: "transfer hurt: training from scratch was %.2f points better (", -points) + both + "); negative transfer"
        }
        return "transfer made no difference (" + both + ")"
    }
}

/// One `thaw compare` invocation on this rank.
public final class ComparisonRun {
    /// The recipe as configured.
    public let config: TrainingConfig
    private let progress: ProgressStyle

    /// Prepares a comparison.
    /// - Parameters:
    ///   - config: The recipe; `model.pretrained` must name weights, and the data must have a test split.
    ///   - progress: How rank 0 shows each run's progress.
    /// - Throws: ``ConfigError`` naming `model.pretrained` when there is nothing to transfer.
    public init(config: TrainingConfig, progress: ProgressStyle) throws(ConfigError) {
        guard !config.model.pretrained.isEmpty else {
            throw ConfigError(file: "", key: "model.pretrained", message: "thaw compare needs pretrained weights to compare with training from scratch")
        }
        self.config = config
        self.progress = progress
    }

    /// The run as configured, writing to `<run.output>/transfer`.
    public static func transferConfig(_ config: TrainingConfig) -> TrainingConfig {
        var result = config
        result.run.name = config.run.name + "-transfer"
        result.run.output = (config.run.output as NSString).appendingPathComponent("transfer")
        return result
    }

    /// The same recipe from scratch, writing to `<run.output>/scratch`: no pretrained weights, every group
    /// trainable from the start (`unfreezing.policy: none`), one learning rate for all groups
    /// (`discriminative_factor: 1`); epochs, batch, optimizer, schedule, data and seed unchanged.
    public static func scratchConfig(_ config: TrainingConfig) -> TrainingConfig {
        var result = config
        result.run.name = config.run.name + "-scratch"
        result.run.output = (config.run.output as NSString).appendingPathComponent("scratch")
        result.model.pretrained = ""
        result.unfreezing.policy = .none
        result.unfreezing.discriminativeFactor = 1
        result.unfreezing.warmupSteps = 0
        return result
    }

    /// Runs both trainings on every rank (under mpirun, all ranks together), writes
    /// `<run.output>/comparison.json` on rank 0, and returns the outcome and whether this rank is rank 0.
    ///
    /// With several ranks, an error on any rank is printed with the rank and aborts the whole job.
    public func execute() throws -> (outcome: ComparisonOutcome, isLeader: Bool) {
        try MPICollective.runJob { collective in (try compare(collective), collective.rank == 0) }
    }

    private func compare(_ collective: MPICollective) throws -> ComparisonOutcome {
        let printer = ProgressPrinter(style: progress)
        let isLeader = collective.rank == 0
        let transfer = ComparisonRun.transferConfig(config), scratch = ComparisonRun.scratchConfig(config)
        if isLeader { printer.line("thaw compare: 1/2, as configured (pretrained weights from \(config.model.pretrained)) → \(transfer.run.output)") }
        let transferHistory = try TrainingRun(config: transfer, progress: progress).train(collective)
        if isLeader { printer.line("thaw compare: 2/2, from scratch (random initialization, every group trainable) → \(scratch.run.output)") }
        let scratchHistory = try TrainingRun(config: scratch, progress: progress).train(collective)
        guard let transferTest = transferHistory.last?.test, let scratchTest = scratchHistory.last?.test else {
            throw EvaluationError.noTestSet
        }
        let outcome = ComparisonOutcome(transferAccuracy: transferTest.accuracy, scratchAccuracy: scratchTest.accuracy,
                                        testSamples: transferTest.samples, transferRun: transfer.run.output, scratchRun: scratch.run.output)
        if isLeader {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let path = (config.run.output as NSString).appendingPathComponent("comparison.json")
            try FileManager.default.createDirectory(atPath: config.run.output, withIntermediateDirectories: true)
            do { try encoder.encode(outcome).write(to: URL(fileURLWithPath: path)) } catch {
                throw TrainingError.io(path: path, message: "cannot write the comparison: \(error.localizedDescription)")
            }
        }
        return outcome
    }
}
