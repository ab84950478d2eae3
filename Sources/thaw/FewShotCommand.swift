// thaw fewshot: few-shot accuracy of a backbone's embedding with prototype heads, over sampled
// N-way k-shot episodes on chosen (held-out) classes, as a table or JSON.
import ArgumentParser
import Foundation
import ThawData
import ThawNN
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw fewshot --config FILE [--checkpoint PATH|latest] --classes 5,6,7,8,9 [--ways 5] [--shots 1,5] ...`.
struct FewShotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fewshot",
        abstract: "Few-shot accuracy with prototype heads: nearest class mean of a backbone's embedding, over sampled N-way k-shot episodes.",
        discussion: """
            The configuration gives the architecture, the data and (model.pretrained) the weights; --checkpoint restores a trained run \
            instead. The embedding is the output of the groups below the head (inference mode; a feature map is averaged over \
            positions). The pool is the first --per-class images of each of --classes in --split; it is embedded once, and episode i \
            is drawn from it as a function of (--seed, i). Accuracy is the mean over episodes with a 95% interval 1.96·sd/√episodes.
            """)

    @Option(help: "The configuration file (architecture, data, model.pretrained).") var config: String
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value")) var overrides: [String] = []
    @Option(help: ArgumentHelp("A checkpoint to take the weights from, or `latest` in the run's checkpoints/ directory (default: model.pretrained).",
                               valueName: "path|latest")) var checkpoint: String?
    @Option(help: "Which split the pool comes from: test, validation or train.") var split: SplitName = .test
    @Option(help: ArgumentHelp("The classes episodes draw from, comma-separated (for Fashion-MNIST the held-out split is 5,6,7,8,9).",
                               valueName: "k,k,...")) var classes: String
    @Option(help: "Pool images per class (0 = every image of the class in the split).") var perClass = 0
    @Option(help: "Classes per episode (N).") var ways = 5
    @Option(help: ArgumentHelp("Support examples per class (k); a comma-separated list runs each.", valueName: "k,k,...")) var shots = "1,5"
    @Option(help: "Query examples per class.") var queries = 15
    @Option(help: "Episodes per setting.") var episodes = 600
    @Option(help: "The seed episodes are drawn from.") var seed: UInt64 = 0
    @Option(help: "Query-to-prototype distance: euclidean or cosine.") var distance = "euclidean"
    @Option(help: "How a feature-map embedding becomes a vector: average (over positions) or flatten.") var pooling = "average"
    @Option(help: "Fine-tune this many groups below the head on each episode's support set (0 = frozen backbone).") var fineTuneGroups = 0
    @Option(help: "SGD steps of prototype loss per episode when fine-tuning.") var fineTuneSteps = 5
    @Option(help: "The learning rate of episodic fine-tuning.") var fineTuneLearningRate: Float = 0.01
    @Option(help: "Images per forward pass when embedding the pool.") var batch = 64
    @Flag(help: "Print the results as JSON.") var json = false

    func run() throws {
        let training: TrainingConfig
        do { training = try TrainingConfig.load(path: config, overrides: overrides) } catch { throw RuntimeFailure.configuration(error, file: config) }
        guard let metric = PrototypeDistance(rawValue: distance) else { throw ValidationError("--distance must be euclidean or cosine, not '\(distance)'") }
        guard let pool = EmbeddingPooling(rawValue: pooling) else { throw ValidationError("--pooling must be average or flatten, not '\(pooling)'") }
        guard episodes >= 1 else { throw ValidationError("--episodes must be at least 1") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        let classList = try integers(classes, option: "--classes")
        let shotList = try integers(shots, option: "--shots")

        let data = try DatasetCatalog.load(training.data)
        let dataset = try data.named(split)
        let model: Model
        let weights: String
        if let checkpoint {
            (model, weights) = try Checkpoint.restoredModel(training, checkpoint: checkpoint, sampleShape: dataset.sampleShape)
        } else {
            model = try ModelZoo.build(training.model, sampleShape: dataset.sampleShape, seed: training.run.seed)
            if training.model.pretrained.isEmpty {
                weights = "random initialization (no model.pretrained, no --checkpoint)"
            } else {
                let report = try ModelZoo.loadPretrained(training.model.pretrained, into: model, architecture: training.model.architecture,
                                                         strict: training.model.strictLoad)
                weights = "\(training.model.pretrained) (\(report))"
            }
        }
        let evaluator: FewShotEvaluator
        let indices: [Int]
        do {
            evaluator = try FewShotEvaluator(model: model, pooling: pool, fineTuneGroups: fineTuneGroups, fineTuneSteps: fineTuneSteps,
                                             fineTuneLearningRate: fineTuneLearningRate, batchSize: batch)
            indices = try FewShotEvaluator.poolIndices(of: dataset, classes: classList, perClass: perClass)
            // Check every setting before the (slow) embedding pass.
            for k in shotList {
                _ = try EpisodeSampler(labels: indices.map { Int(dataset.label($0)) }, classes: classList, ways: ways, shots: k, queries: queries, seed: seed)
            }
        } catch { throw ValidationError(error.description) }
        let started = Date()
        let embedded = try evaluator.pool(dataset, indices: indices)
        let embeddingSeconds = Date().timeIntervalSince(started)
        var results: [FewShotResult] = []
        for k in shotList {
            let sampler = try EpisodeSampler(labels: embedded.labels, classes: classList, ways: ways, shots: k, queries: queries, seed: seed)
            results.append(evaluator.evaluate(embedded, sampler: sampler, episodes: episodes, distance: metric))
        }
        let tunedGroups = Array(model.groupNames[evaluator.firstTunedGroup..<evaluator.headIndex])
        if json {
            let report = FewShotReport(
                architecture: training.model.architecture, weights: weights, dataset: training.data.dataset.rawValue, split: split.rawValue, classes: classList,
                poolSize: indices.count, embeddingGroups: Array(model.groupNames[..<evaluator.headIndex]), distance: metric.rawValue,
                pooling: pool.rawValue, seed: seed, fineTunedGroups: tunedGroups, fineTuneSteps: evaluator.fineTuneSteps,
                fineTuneLearningRate: evaluator.fineTuneSteps > 0 ? Double(fineTuneLearningRate) : nil, results: results)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
            return
        }
        print("thaw fewshot: \(training.model.architecture), weights \(weights)")
        print("pool: \(indices.count) images of classes \(classList.map(String.init).joined(separator: ",")) from the \(split) split of "
              + "\(training.data.dataset.rawValue), embedded in \(String(format: "%.1f", embeddingSeconds)) s; \(metric.rawValue) distance, "
              + "\(episodes) episodes, seed \(seed)"
              + (tunedGroups.isEmpty ? "" : "; fine-tuning \(tunedGroups.joined(separator: ",")) for \(evaluator.fineTuneSteps) step(s) per episode"))
        print("")
        print("ways  shots  queries  accuracy  95% interval")
        for r in results {
            print(String(format: "%4d  %5d  %7d  %7.2f%%  ± %.2f", r.ways, r.shots, r.queries, r.accuracy * 100, r.interval95 * 100))
        }
    }

    private func integers(_ text: String, option: String) throws -> [Int] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap { Int($0) }
        guard !parts.isEmpty, values.count == parts.count else {
            throw ValidationError("\(option): expected comma-separated integers, got '\(text)'")
        }
        return values
    }
}

/// What `thaw fewshot --json` prints.
struct FewShotReport: Encodable {
    var architecture: String
    var weights: String
    var dataset: String
    var split: String
    var classes: [Int]
    var poolSize: Int
    var embeddingGroups: [String]
    var distance: String
    var pooling: String
    var seed: UInt64
    var fineTunedGroups: [String]
    var fineTuneSteps: Int
    var fineTuneLearningRate: Double?
    var results: [FewShotResult]

    enum CodingKeys: String, CodingKey {
        case architecture, weights, dataset, split, classes, distance, pooling, seed, results
        case poolSize = "pool_size"
        case embeddingGroups = "embedding_groups"
        case fineTunedGroups = "fine_tuned_groups"
        case fineTuneSteps = "fine_tune_steps"
        case fineTuneLearningRate = "fine_tune_learning_rate"
    }
}
