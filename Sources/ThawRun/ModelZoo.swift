// ModelZoo: architecture names in the configuration → models.
import Foundation
import ThawTrainer
import ThawPlan
import ThawData
import ThawKernels
import ThawNN

/// Builds the model a configuration names.
public enum ModelZoo {
    /// The architecture names `model.architecture` accepts, with a one-line description and a
    /// typical input shape (used by `thaw models` and the benchmarks when none is given).
    public static let architectures: [(name: String, description: String, sampleShape: [Int])] = [
        ("small-cnn", "2 conv blocks + MLP head, trained from scratch (groups stem, block1, head)", [1, 28, 28]),
        ("mlp", "2 hidden layers + linear head; no batch norm or dropout, so model.head_dropout must be 0 (groups hidden1, hidden2, head)",
         [1, 28, 28]),
        ("mobilenet_v2", "MobileNetV2, torchvision layout (groups stem, block1..block7, head); ImageNet weights via scripts/fetch-backbone",
         [3, 64, 64]),
        ("resnet18", "ResNet-18, torchvision layout (groups stem, layer1..layer4, head)", [3, 64, 64]),
        ("resnet50", "ResNet-50 (v1.5), torchvision layout (groups stem, layer1..layer4, head)", [3, 64, 64]),
        ("vgg16", "VGG-16, torchvision layout (groups block1..block5, classifier, head); head_dropout sets both classifier dropouts",
         [3, 32, 32]),
        ("vgg16_bn", "VGG-16 with batch norm, torchvision layout (groups block1..block5, classifier, head); head_dropout as vgg16",
         [3, 32, 32]),
        ("bert", "BERT-family text encoder, Hugging Face layout, sized by model.bert_config (groups embeddings, layer0..layerL-1, head); "
         + "input [T] token ids; all-MiniLM-L6-v2 via scripts/fetch-backbone minilm (shown with its sizes)", [128]),
    ]

    /// Builds an architecture by name with default settings, for tools that need only its shape.
    /// `bert`, which needs a `config.json` otherwise, takes all-MiniLM-L6-v2's sizes.
    /// - Parameter sampleShape: The input shape; nil takes the architecture's typical one.
    public static func build(architecture: String, sampleShape: [Int]? = nil, seed: UInt64 = 1) throws -> Model {
        var section = ModelSection()
        section.architecture = architecture
        let shape = sampleShape ?? architectures.first { $0.name == architecture }?.sampleShape ?? [1, 28, 28]
        return try build(section, sampleShape: shape, seed: seed, bertConfiguration: architecture == "bert" ? .miniLML6 : nil)
    }

    /// Maps Thaw's tensor names to the architecture's standard (PyTorch) names; nil for a tensor the
    /// standard layout lacks. The small built-in networks have no other layout, so their names stay.
    public static func externalName(architecture: String) -> (String) -> String? {
        switch architecture {
        case "mobilenet_v2": return MobileNetV2.torchvisionName
        case "resnet18", "resnet50": return ResNet.torchvisionName
        case "vgg16", "vgg16_bn": return VGG.torchvisionName
        case "bert": return BERT.huggingFaceName
        default: return { $0 }
        }
    }

    /// The weights file for `model.pretrained`: the path itself, or `model.safetensors` inside a directory.
    public static func weightsFile(_ path: String) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return path }
        return (path as NSString).appendingPathComponent("model.safetensors")
    }

    /// Loads pretrained weights (safetensors or PyTorch `.pth`, or a directory holding `model.safetensors`)
    /// into `model` under the architecture's standard names, returning the report. Strict mode throws
    /// naming every problem.
    ///
    /// For `bert`, file names lose a wrapper prefix (`bert.`, `0.auto_model.`) before matching, and the
    /// pooler, pre-training heads and `embeddings.position_ids` are reported as ignored (see BERT.swift).
    public static func loadPretrained(_ path: String, into model: Model, architecture: String, strict: Bool) throws -> WeightLoadReport {
        let file = weightsFile(path)
        var raw: [String: (shape: [Int], values: [Float])] = [:]
        // The format is told by the file's structure, not its name (see TensorFileFormat).
        for (name, tensor) in try TensorFileFormat.readTensors(file) { raw[name] = (tensor.shape, tensor.values) }
        guard architecture == "bert" else {
            return try model.loadWeights(raw, file: file, externalName: externalName(architecture: architecture), strict: strict)
        }
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        for name in raw.keys.sorted() {
            // A name present both with and without a prefix keeps its prefixed copy apart (then unexpected).
            let canonical = BERT.canonicalName(fileName: name)
            let key = canonical != name && raw[canonical] != nil ? name : canonical
            tensors[key] = raw[name]
        }
        return try model.loadWeights(tensors, file: file, externalName: BERT.huggingFaceName, strict: strict,
                                     isUnusedByDesign: { BERT.isUnusedByDesign(BERT.canonicalName(fileName: $0)) })
    }

    /// The BERT configuration a model section names: `model.bert_config`, else `config.json` in the
    /// `model.pretrained` directory.
    /// - Throws: ``ConfigError`` when neither is given, ``BERTConfigurationError`` for a bad file.
    public static func bertConfiguration(_ section: ModelSection) throws -> BERTConfiguration {
        if !section.bertConfig.isEmpty { return try BERTConfiguration.load(path: section.bertConfig) }
        var isDirectory: ObjCBool = false
        if !section.pretrained.isEmpty, FileManager.default.fileExists(atPath: section.pretrained, isDirectory: &isDirectory), isDirectory.boolValue {
            return try BERTConfiguration.load(path: (section.pretrained as NSString).appendingPathComponent("config.json"))
        }
        throw ConfigError(file: "", key: "model.bert_config",
                          message: "architecture bert needs a Hugging Face config.json: set model.bert_config, or model.pretrained to a directory holding config.json and model.safetensors")
    }

    /// Checks every sample of `dataset` for what the model's forward pass cannot report: token ids of
    /// a `bert` model must be integers in its vocabulary. Other models accept any values.
    /// - Throws: ``TrainingError/dataMismatch(_:)`` naming the dataset, the sample, the id and its position.
    public static func validateInputs(_ dataset: any Dataset, for model: Model, name: String) throws {
        let checks = model.allLayers.compactMap { $0 as? PaddingMaskFromIds }
        guard !checks.isEmpty else { return }
        let sample = Tensor(shape: [1] + dataset.sampleShape)
        for index in 0..<dataset.count {
            dataset.copySample(index, into: sample.data)
            for check in checks {
                do { try check.validate(ids: sample) } catch {
                    throw TrainingError.dataMismatch("\(name), sample \(index), position \(error.position.last ?? 0): token id \(error.id) "
                                                     + "is not an integer in 0..<\(error.vocabularySize) (the model's vocab_size)")
                }
            }
        }
    }

    /// Builds and initializes the model for `sampleShape` inputs.
    /// - Throws: ``TrainingError/unknown(key:value:choices:)`` for an unknown architecture, or a
    ///   ``ModelError`` when the input shape does not suit it.
    public static func build(_ section: ModelSection, sampleShape: [Int], seed: UInt64) throws -> Model {
        try build(section, sampleShape: sampleShape, seed: seed, bertConfiguration: nil)
    }

    static func build(_ section: ModelSection, sampleShape: [Int], seed: UInt64, bertConfiguration given: BERTConfiguration?) throws -> Model {
        let groups = try groups(section, sampleShape: sampleShape, seed: seed, bertConfiguration: given)
        let model = try Model(groups: groups, sampleShape: sampleShape, seed: seed)
        model.frozenBatchNormPolicy = section.frozenBatchNorm
        return model
    }

    /// The architecture's layer groups for `sampleShape` inputs, without a parameter store: layers
    /// declare their parameters' shapes but allocate nothing until a ``Model`` binds them, so this is
    /// the shape-only path the memory estimate uses (MemoryEstimate.swift).
    /// - Throws: As ``build(_:sampleShape:seed:)``.
    static func groups(_ section: ModelSection, sampleShape: [Int], seed: UInt64, bertConfiguration given: BERTConfiguration?) throws -> [LayerGroup] {
        guard sampleShape.allSatisfy({ $0 >= 1 }), let inputSize = CheckedSize.product(sampleShape) else {
            throw TrainingError.dataMismatch("\(section.architecture) needs a sample shape of positive extents whose product fits in an Int; the data gives \(sampleShape)")
        }
        var groups: [LayerGroup]
        switch section.architecture {
        case "small-cnn":
            guard sampleShape.count == 3, sampleShape[1] % 4 == 0, sampleShape[2] % 4 == 0,
                  CheckedSize.product([64, sampleShape[1] / 4, sampleShape[2] / 4, 128]) != nil else {
                throw TrainingError.dataMismatch("small-cnn needs [C, H, W] inputs with H and W divisible by 4; the data gives \(sampleShape)")
            }
            groups = SmallCNN.groups(channels: sampleShape[0], height: sampleShape[1], width: sampleShape[2],
                                     classes: section.classes, headDropout: section.headDropout, seed: seed)
        case "mlp":
            groups = MultilayerPerceptron.groups(inputSize: inputSize, classes: section.classes)
        case "mobilenet_v2":
            guard sampleShape.count == 3, sampleShape[0] == 3, sampleShape[1] >= 32, sampleShape[2] >= 32 else {
                throw TrainingError.dataMismatch("mobilenet_v2 needs [3, H, W] inputs with H, W ≥ 32; the data gives \(sampleShape)")
            }
            groups = MobileNetV2.groups(classes: section.classes, dropout: section.headDropout, seed: seed)
        case "resnet18", "resnet50":
            // Five stride-2 stages: at 32×32 the last stage is 1×1, and smaller inputs leave nothing to pool.
            guard sampleShape.count == 3, sampleShape[0] == 3, sampleShape[1] >= 32, sampleShape[2] >= 32 else {
                throw TrainingError.dataMismatch("\(section.architecture) needs [3, H, W] inputs with H, W ≥ 32; the data gives \(sampleShape)")
            }
            let variant: ResNet.Variant = section.architecture == "resnet18" ? .resnet18 : .resnet50
            groups = ResNet.groups(variant, classes: section.classes, dropout: section.headDropout, seed: seed)
        case "vgg16", "vgg16_bn":
            // Five 2×2 max pools need H, W ≥ 32; the adaptive pool then brings any size to 7×7.
            guard sampleShape.count == 3, sampleShape[0] == 3, sampleShape[1] >= 32, sampleShape[2] >= 32 else {
                throw TrainingError.dataMismatch("\(section.architecture) needs [3, H, W] inputs with H, W ≥ 32; the data gives \(sampleShape)")
            }
            groups = VGG.groups(.vgg16, batchNorm: section.architecture == "vgg16_bn", classes: section.classes,
                                dropout: section.headDropout, seed: seed)
        case "bert":
            let configuration = try given ?? bertConfiguration(section)
            guard sampleShape.count == 1, (1...configuration.maximumPositions).contains(sampleShape[0]) else {
                throw TrainingError.dataMismatch("bert needs [T] token-id inputs with 1 ≤ T ≤ \(configuration.maximumPositions) "
                                                 + "(max_position_embeddings); the data gives \(sampleShape)")
            }
            groups = BERT.groups(configuration: configuration, classes: section.classes, pooling: section.pooling,
                                 headHidden: section.headHidden > 0 ? section.headHidden : nil, dropout: section.headDropout, seed: seed)
        default:
            throw TrainingError.unknown(key: "model.architecture", value: section.architecture, choices: architectures.map(\.name))
        }
        if let adaptation = section.domainAdaptation {
            groups = try domainAdversarial(groups, adaptation: adaptation, classes: section.classes, sampleShape: sampleShape)
        }
        return groups
    }

    /// The same groups with the head wrapped in a ``DomainAdversarialHead``: the head becomes its label
    /// branch (parameters `head.adversarial.label.*`) and a domain classifier reads the head's input
    /// (`head.adversarial.domain.*`). The group stays the unit of freezing, so unfreezing plans apply unchanged.
    static func domainAdversarial(_ groups: [LayerGroup], adaptation: DomainAdaptationSection, classes: Int,
                                  sampleShape: [Int]) throws -> [LayerGroup] {
        guard let head = groups.last else { return groups }
        var shape = [1] + sampleShape
        for group in groups.dropLast() {
            do { shape = try group.body.outputShape(for: shape) } catch { throw ModelError.shape(error) }
        }
        guard let features = CheckedSize.product(shape.dropFirst()) else {
            throw TrainingError.dataMismatch("the head's input \(shape) has more features than an Int holds")
        }
        let adversarial = DomainAdversarialHead(
            labelBranch: head.body, labelOutputs: classes, features: features,
            domainHidden: adaptation.domainHidden, schedule: ReversalSchedule(gamma: adaptation.lambdaGamma, maximum: adaptation.lambdaMax))
        return groups.dropLast() + [LayerGroup(head.name, [(name: "adversarial", layer: adversarial)])]
    }
}
