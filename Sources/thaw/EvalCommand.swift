// thaw eval: a checkpoint's accuracy, per-class precision/recall/F1 and confusion matrix on a
// split of the configured dataset, as a table or JSON.
import ArgumentParser
import Foundation
import ThawData
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw eval --config FILE [--checkpoint PATH|latest] [--split test|validation|train] [--json]`.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a checkpoint on a split of the configured dataset: accuracy, per-class precision, recall and F1, confusion matrix.",
        discussion: "The configuration gives the data and the model; use the one the run trained with.")

    @Option(help: "The run's configuration file.") var config: String
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value")) var overrides: [String] = []
    @Option(help: ArgumentHelp("The checkpoint, or `latest` in the run's checkpoints/ directory.", valueName: "path|latest")) var checkpoint = "latest"
    @Option(help: "Which split: test, validation or train.") var split: SplitName = .test
    @Option(help: "Samples per forward pass.") var batch = 128
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        let training: TrainingConfig
        do { training = try TrainingConfig.load(path: config, overrides: overrides) } catch { throw RuntimeFailure.configuration(error, file: config) }
        guard batch > 0 else { throw ValidationError("--batch must be at least 1") }
        let data = try DatasetCatalog.load(training.data)
        let dataset = try data.named(split)
        let (model, path) = try Checkpoint.restoredModel(training, checkpoint: checkpoint, sampleShape: dataset.sampleShape)
        let report = try ClassificationReport.evaluate(model: model, dataset: dataset, classCount: training.model.classes,
                                                       outputWidth: TrainingObjectives.make(training).outputWidth, batchSize: batch)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("\(path) on the \(split) split of \(training.data.dataset.rawValue):")
            print(report.table(names: training.data.dataset == .fashionMNIST ? FashionMNIST.classNames : nil))
        }
    }
}
