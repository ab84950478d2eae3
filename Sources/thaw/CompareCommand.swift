// thaw compare: the negative-transfer check. Trains the configured recipe twice on the same ranks and
// data, pretrained as configured and from scratch, and says whether transfer helped.
import ArgumentParser
import Foundation
import ThawPlan
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw compare --config FILE [--set key=value ...] [--progress ...] [--json]`, plain or under mpirun.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Train a recipe pretrained (as configured) and from scratch on the same data, and report whether transfer helped.",
        discussion: """
            Both runs keep the configuration's data, seed, epochs, batch, optimizer and schedule. The scratch run drops \
            model.pretrained and trains every group from the first step at one learning rate (unfreezing.policy none, \
            discriminative_factor 1). Runs go to RUN/transfer and RUN/scratch (RUN = run.output), each with its own \
            metrics.jsonl and model.safetensors; the outcome goes to RUN/comparison.json. Run it under mpirun like thaw train.
            """)

    @Option(help: "The recipe's configuration file; model.pretrained must name the weights.") var config: String
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value")) var overrides: [String] = []
    @Option(help: "Progress display of each run: auto, live, lines or quiet.") var progress: String = "auto"
    @Flag(help: "Print the outcome as JSON on the last line (rank 0).") var json = false

    func run() throws {
        let comparison: ComparisonRun
        do {
            let configuration = try TrainingConfig.load(path: config, overrides: overrides)
            guard let style = ProgressStyle(rawValue: progress) else {
                throw ValidationError("--progress: expected one of \(ProgressStyle.allCases.map(\.rawValue).joined(separator: ", ")), got '\(progress)'")
            }
            comparison = try ComparisonRun(config: configuration, progress: style)
        } catch let error as ConfigError {
            throw RuntimeFailure.configuration(error, file: config)
        }
        let (outcome, isLeader) = try comparison.execute()
        guard isLeader else { return }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(outcome), as: UTF8.self))
            return
        }
        print("")
        print("pretrained (as configured): \(String(format: "%.2f%%", outcome.transferAccuracy * 100)) test accuracy   run \(outcome.transferRun)")
        print("from scratch:               \(String(format: "%.2f%%", outcome.scratchAccuracy * 100)) test accuracy   run \(outcome.scratchRun)")
        print(String(format: "difference:                 %+.2f points on %d test samples", outcome.differencePoints, outcome.testSamples))
        print("verdict: \(outcome.verdict)")
    }
}
