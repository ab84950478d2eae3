// thaw predict: apply a fine-tuned checkpoint, or pretrained weights as they are, to new data:
// images or token ids in an NPY file, texts one per line, or a split of the configured dataset.
// Writes the logits as NPY and the top classes as JSON.
import ArgumentParser
import Foundation
import ThawPlan
import ThawData
import ThawKernels
import ThawNN
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw predict (--input FILE.npy | --texts FILE | --split NAME) (--config FILE [--checkpoint PATH|latest] | --weights FILE --architecture A --classes K)`.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Apply a checkpoint, or pretrained weights as they are, to images, token ids, texts or a dataset split.",
        discussion: """
            Inputs (one of):
              --input FILE.npy   images: uint8 [N, H, W, C] (as numpy and PIL give them) or float [N, C, H, W] in [0, 1], \
            which go through torchvision's evaluation transform (--resize the shorter side, --crop the centre, --normalization); \
            with --preprocessed, the model's input as it is ([N] + its sample shape, float); for a text model, token ids [N, T] \
            (int32, int64 or integral floats; 0 is padding).
              --texts FILE       a text model's inputs, one text per line, tokenized with the configuration's data.vocabulary and data.max_length.
              --split NAME       test, validation or train of the configured dataset, preprocessed as in training; the JSON then \
            carries each sample's label and the accuracy is printed.
            Outputs: --logits FILE.npy (float32 [N, K]), --output FILE.json (the top classes), or the top classes on stdout.
            """)

    @Option(help: "Images, the model's input (--preprocessed) or token ids, as an NPY file.") var input: String?
    @Option(help: "A text file, one text per line (text models).") var texts: String?
    @Option(help: "A split of the configured dataset: test, validation or train.") var split: SplitName?
    @Flag(help: "With --input: the array is already the model's input; no resize, crop or normalization.") var preprocessed = false
    @Option(help: "The run's configuration (with --checkpoint).") var config: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value")) var overrides: [String] = []
    @Option(help: ArgumentHelp("With --config: the checkpoint, or `latest` in the run's checkpoints/ directory.", valueName: "path|latest"))
    var checkpoint = "latest"
    @Option(help: "Pretrained weights (safetensors or .pth, or a directory holding model.safetensors) under the architecture's standard names, used as they are.")
    var weights: String?
    @Option(help: "With --weights: the architecture (see `thaw models`).") var architecture: String?
    @Option(help: "With --weights: the number of classes of its head (1000 for ImageNet).") var classes = 1000
    @Option(help: "Resize the shorter side of images to this many pixels (0 = keep).") var resize = 256
    @Option(help: "Crop the centre of images to this square (0 = no crop).") var crop = 224
    @Option(help: "Pixel normalization of images: imagenet or none.") var normalization = "imagenet"
    @Option(help: "Samples per forward pass.") var batch = 64
    @Option(help: "How many classes to report per sample.") var top = 5
    @Option(help: "A file of class names, one per line, in class order.") var labels: String?
    @Option(help: "Write the logits here as a float32 NPY array [N, K].") var logits: String?
    @Option(help: "Write the top classes here as JSON (one object per sample).") var output: String?
    @Flag(help: "Print the top classes as JSON instead of a table.") var json = false

    /// What the samples are, and their labels when they come from a dataset split.
    private struct Inputs {
        var dataset: any Dataset
        var labels: [Int32]?
        var classNames: [String]?
    }

    func run() throws {
        guard top > 0 else { throw ValidationError("--top must be at least 1") }
        guard batch > 0 else { throw ValidationError("--batch must be at least 1") }
        guard ["imagenet", "none"].contains(normalization) else { throw ValidationError("--normalization must be imagenet or none") }
        guard [input != nil, texts != nil, split != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --input FILE.npy, --texts FILE and --split NAME")
        }
        guard (config == nil) != (weights == nil) else {
            throw ValidationError("give --config (with --checkpoint) or --weights with --architecture, not both or neither")
        }
        let training: TrainingConfig? = try config.map { path in
            do { return try TrainingConfig.load(path: path, overrides: overrides) } catch let error as ConfigError { throw RuntimeFailure.configuration(error, file: path) }
        }
        if weights != nil, architecture == nil { throw ValidationError("--weights needs --architecture") }
        let architectureName = training?.model.architecture ?? architecture ?? ""
        let inputs = try loadInputs(training: training, isText: Architecture.named(architectureName)?.readsTokenIds ?? false)
        let model = try loadModel(training: training, sampleShape: inputs.dataset.sampleShape)
        try ModelZoo.validateInputs(inputs.dataset, for: model, name: input ?? texts ?? "the \(split?.rawValue ?? "") split")

        // Only the objective's label columns are classes (a domain-adversarial model adds 2 domain logits).
        let labelColumns = training.map { TrainingObjectives.make($0).labelColumns }
        let predictions = try Predictions.evaluate(model: model, dataset: inputs.dataset, batchSize: batch, labelColumns: labelColumns)
        if let logits {
            try NPYWriter.write(predictions.logits, shape: [predictions.count, predictions.classCount], to: logits)
        }
        let names = try labels.map(readClassNames) ?? inputs.classNames
        let results = (0..<predictions.count).map { row -> [String: Any] in
            var result: [String: Any] = ["sample": row, "top": predictions.top(top, row: row).map { ranked -> [String: Any] in
                var entry: [String: Any] = ["class": ranked.index, "probability": ranked.probability]
                if let names, ranked.index < names.count { entry["label"] = names[ranked.index] }
                return entry
            }]
            if let labels = inputs.labels { result["label"] = Int(labels[row]) }
            return result
        }
        if let output {
            let data = try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys])
            do { try data.write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
                throw RuntimeFailure("\(output): cannot write the top classes: \(error.localizedDescription)")
            }
        }
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys]), as: UTF8.self))
        } else {
            printTable(results, predictions: predictions, labels: inputs.labels)
        }
    }

    /// Prints each sample's top classes (the first ten when there are many), the accuracy when the
    /// labels are known, and where the files went.
    private func printTable(_ results: [[String: Any]], predictions: Predictions, labels: [Int32]?) {
        let shown = results.count <= 50 ? results : Array(results.prefix(10))
        for result in shown {
            let label = (result["label"] as? Int).map { " (label \($0))" } ?? ""
            print("sample \(result["sample"] as? Int ?? 0)\(label):")
            for entry in result["top"] as? [[String: Any]] ?? [] {
                let name = entry["label"] as? String ?? ""
                print(String(format: "  %5d  %6.2f%%  ", entry["class"] as? Int ?? 0, (entry["probability"] as? Double ?? 0) * 100) + name)
            }
        }
        if shown.count < results.count {
            print("… \(results.count - shown.count) more samples" + (output == nil ? " (write them all with --output FILE.json)" : ""))
        }
        if let labels {
            let correct = zip(predictions.predictedClasses, labels).filter { $0 == Int($1) }.count
            print(String(format: "accuracy: %.2f%% (%d of %d)", 100 * Double(correct) / Double(max(labels.count, 1)), correct, labels.count))
        }
        if let logits { print("logits [\(predictions.count), \(predictions.classCount)] → \(logits)") }
        if let output { print("top classes → \(output)") }
    }

    /// The samples to predict on, from whichever input was given.
    private func loadInputs(training: TrainingConfig?, isText: Bool) throws -> Inputs {
        if let split {
            guard let training else { throw ValidationError("--split needs --config: the dataset comes from the configuration") }
            let data = try DatasetCatalog.load(training.data)
            let dataset = try data.named(split)
            let names: [String]? = switch training.data.dataset {
            case .fashionMNIST: FashionMNIST.classNames
            case .rottenTomatoes: RottenTomatoes.classNames
            default: nil
            }
            return Inputs(dataset: dataset, labels: (0..<dataset.count).map(dataset.label), classNames: names)
        }
        if let texts {
            guard isText else { throw ValidationError("--texts is for text models (architecture bert)") }
            let vocabulary = try vocabularyFile(training: training)
            let tokenizer = try WordPieceTokenizer(vocabularyFile: vocabulary)
            guard let text = try? String(contentsOfFile: texts, encoding: .utf8) else { throw RuntimeFailure("\(texts): cannot read it as UTF-8 text") }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            guard !lines.isEmpty else { throw RuntimeFailure("\(texts): holds no text (one text per line)") }
            let maximumLength = training?.data.source.text?.maxLength ?? TextEncoding().maxLength
            let encoded = tokenizer.encode(lines, maximumLength: maximumLength)
            return Inputs(dataset: InMemoryDataset(features: encoded.ids.map(Float.init), labels: Array(repeating: 0, count: lines.count),
                                                   sampleShape: [maximumLength], classCount: 1))
        }
        guard let input else { throw ValidationError("give --input, --texts or --split") }
        let array = try NPYReader.read(input)
        let values: [Float], shape: [Int]
        if isText {
            // Token ids: [N, T] (or [T] for one sequence), integral values; the vocabulary check comes after the model is built.
            shape = array.shape.count == 1 ? [1] + array.shape : array.shape
            guard shape.count == 2, shape[0] > 0, shape[1] > 0 else {
                throw RuntimeFailure("\(input): token ids must be [N, T] (or [T]); got shape \(array.shape)")
            }
            values = array.floatValues()
        } else if preprocessed {
            guard array.dataType == .float32, array.shape.count >= 2, array.shape.allSatisfy({ $0 > 0 }) else {
                throw RuntimeFailure("\(input): --preprocessed needs float32 [N] + the model's sample shape; got \(array.dataType) \(array.shape)")
            }
            (values, shape) = (array.floatValues(), array.shape)
        } else {
            let images = try ImagePreprocessing.images(from: array, file: input)
            (values, shape) = ImagePreprocessing.evaluationTransform(images.values, shape: images.shape, resize: resize, crop: crop,
                                                                     normalization: normalization == "imagenet" ? .imageNet : nil)
        }
        return Inputs(dataset: InMemoryDataset(features: values, labels: Array(repeating: 0, count: shape[0]),
                                               sampleShape: Array(shape.dropFirst()), classCount: 1))
    }

    /// The WordPiece vocabulary for --texts: the configuration's data.vocabulary, else vocab.txt beside --weights.
    private func vocabularyFile(training: TrainingConfig?) throws -> String {
        if let vocabulary = training?.data.source.text?.vocabulary, !vocabulary.isEmpty { return vocabulary }
        if let weights {
            let directory = (ModelZoo.weightsFile(weights) as NSString).deletingLastPathComponent
            let candidate = (directory as NSString).appendingPathComponent("vocab.txt")
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        throw RuntimeFailure("--texts needs a WordPiece vocabulary: set data.vocabulary in the configuration, or keep vocab.txt beside the weights")
    }

    /// Class names from a file, one per line.
    private func readClassNames(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw RuntimeFailure("\(path): cannot read it") }
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// The model from a run's checkpoint, or from pretrained weights used as they are.
    private func loadModel(training: TrainingConfig?, sampleShape: [Int]) throws -> Model {
        if let training {
            return try Checkpoint.restoredModel(training, checkpoint: checkpoint, sampleShape: sampleShape).model
        }
        guard let weights, let architecture else { throw ValidationError("--weights needs --architecture") }
        var section = ModelSection()
        section.architecture = architecture
        section.classes = classes
        if Architecture.named(architecture)?.readsTokenIds == true { section.pretrained = weights }   // its config.json sits beside the weights
        let model = try ModelZoo.build(section, sampleShape: sampleShape, seed: 1)
        let report = try ModelZoo.loadPretrained(weights, into: model, architecture: architecture, strict: false)
        let mismatched = report.shapeMismatched + report.replaced
        guard report.missing.isEmpty, mismatched.isEmpty else {
            throw RuntimeFailure("\(weights) does not hold the whole \(architecture) with \(classes) classes: "
                                  + (report.missing.isEmpty ? "" : "missing \(report.missing.prefix(5).joined(separator: ", ")); ")
                                  + (mismatched.isEmpty ? "" : "shaped for another head: \(mismatched.prefix(5).joined(separator: ", "))")
                                  + " (a fine-tuned model: use --config and --checkpoint)")
        }
        return model
    }
}
