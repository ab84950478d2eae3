// thaw predict: classify images with a fine-tuned checkpoint or with pretrained weights as they are.
import ArgumentParser
import Foundation
import ThawData
import ThawKernels
import ThawNN
import ThawTrainer

/// `thaw predict --input IMAGES.npy (--config FILE [--checkpoint PATH|latest] | --weights FILE --architecture A --classes K)`.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images (an NPY array) with a checkpoint, or with pretrained weights as they are.",
        discussion: """
            Images: uint8 [N, H, W, C] (or [H, W, C]), as numpy and PIL give them, or float [N, C, H, W] in [0, 1]. \
            They go through torchvision's evaluation transform: --resize the shorter side, --crop the centre, --normalization. \
            Defaults suit ImageNet backbones (256, 224, imagenet); for a fine-tuned run pass the sizes it trained at.
            """)

    @Option(help: "The images, as an NPY file.") var input: String
    @Option(help: "The run's configuration (with --checkpoint).") var config: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value")) var overrides: [String] = []
    @Option(help: ArgumentHelp("With --config: the checkpoint, or `latest` in the run's checkpoints/ directory.", valueName: "path|latest"))
    var checkpoint = "latest"
    @Option(help: "Pretrained weights (safetensors or .pth) under the architecture's standard names, used as they are.") var weights: String?
    @Option(help: "With --weights: the architecture (see `thaw models`).") var architecture: String?
    @Option(help: "With --weights: the number of classes of its head (1000 for ImageNet).") var classes = 1000
    @Option(help: "Resize the shorter side to this many pixels (0 = keep).") var resize = 256
    @Option(help: "Crop the centre to this square (0 = no crop).") var crop = 224
    @Option(help: "Pixel normalization: imagenet or none.") var normalization = "imagenet"
    @Option(help: "How many classes to show per image.") var top = 5
    @Option(help: "A file of class names, one per line, in class order.") var labels: String?
    @Flag(help: "Print JSON: one object per image with its top classes and probabilities.") var json = false

    func run() throws {
        guard top > 0 else { throw ValidationError("--top must be at least 1") }
        guard ["imagenet", "none"].contains(normalization) else { throw ValidationError("--normalization must be imagenet or none") }
        let array = try NPYReader.read(input)
        let images = try ImagePreprocessing.images(from: array, file: input)
        let prepared = ImagePreprocessing.evaluationTransform(images.values, shape: images.shape, resize: resize, crop: crop,
                                                              normalization: normalization == "imagenet" ? .imageNet : nil)
        let sampleShape = Array(prepared.shape.dropFirst())
        let model = try loadModel(sampleShape: sampleShape)
        var names: [String]?
        if let labels {
            guard let text = try? String(contentsOfFile: labels, encoding: .utf8) else { throw ValidationError("\(labels): cannot read it") }
            names = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        }

        let count = prepared.shape[0], sampleSize = sampleShape.reduce(1, *)
        var results: [[String: Any]] = []
        let batch = Tensor(shape: [1] + sampleShape)
        for n in 0..<count {
            prepared.values.withUnsafeBufferPointer { batch.data.update(from: $0.baseAddress! + n * sampleSize, count: sampleSize) }
            let logits = try model.forward(batch, training: false)
            let width = logits.shape.last ?? 1
            let row = UnsafeBufferPointer(start: logits.data, count: width)
            let largest = row.max() ?? 0
            let exponentials = row.map { exp(Double($0 - largest)) }
            let total = exponentials.reduce(0, +)
            let ranked = (0..<width).sorted { exponentials[$0] > exponentials[$1] }.prefix(top)
            let entries = ranked.map { k -> [String: Any] in
                var entry: [String: Any] = ["class": k, "probability": exponentials[k] / total]
                if let names, k < names.count { entry["label"] = names[k] }
                return entry
            }
            results.append(["image": n, "top": entries])
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        for result in results {
            print("image \(result["image"] as? Int ?? 0):")
            for entry in result["top"] as? [[String: Any]] ?? [] {
                let label = entry["label"] as? String ?? ""
                print(String(format: "  %5d  %6.2f%%  ", entry["class"] as? Int ?? 0, (entry["probability"] as? Double ?? 0) * 100) + label)
            }
        }
    }

    /// The model from a run's checkpoint, or from pretrained weights used as they are.
    private func loadModel(sampleShape: [Int]) throws -> Model {
        if let weights {
            guard let architecture else { throw ValidationError("--weights needs --architecture") }
            var section = ModelSection()
            section.architecture = architecture
            section.classes = classes
            let model = try ModelZoo.build(section, sampleShape: sampleShape, seed: 1)
            let report = try ModelZoo.loadPretrained(weights, into: model, architecture: architecture, strict: false)
            let mismatched = report.shapeMismatched + report.replaced
            guard report.missing.isEmpty, mismatched.isEmpty else {
                throw ValidationError("\(weights) does not hold the whole \(architecture) with \(classes) classes: "
                                      + (report.missing.isEmpty ? "" : "missing \(report.missing.prefix(5).joined(separator: ", ")); ")
                                      + (mismatched.isEmpty ? "" : "shaped for another head: \(mismatched.prefix(5).joined(separator: ", "))")
                                      + " (a fine-tuned model: use --config and --checkpoint)")
            }
            return model
        }
        guard let config else { throw ValidationError("give --config (with --checkpoint) or --weights with --architecture") }
        let training: TrainingConfig
        do { training = try TrainingConfig.load(path: config, overrides: overrides) } catch { throw ValidationError(error.description) }
        return try Checkpoint.restoredModel(training, checkpoint: checkpoint, sampleShape: sampleShape).model
    }
}
