// Architecture: what Thaw knows about each architecture `model.architecture` can name, in one
// value: how to build its groups for an input shape, what its input must be, its standard (PyTorch
// or Hugging Face) tensor names, and how a pretrained file's names are read. ModelZoo, the memory
// estimate, `thaw models`, export and predict all ask the descriptor instead of comparing names.
import Foundation
import ThawData
import ThawKernels
import ThawNN
import ThawTrainer

/// How an architecture reads pretrained weight files.
public enum WeightNaming: Sendable {
    /// The file uses the architecture's standard names (torchvision), or Thaw's own.
    case standard
    /// A Hugging Face BERT file: a wrapper prefix (`bert.`, `0.auto_model.`) is dropped before
    /// matching, and the pooler and pre-training heads are reported as unused by design.
    case huggingFaceBERT
}

/// One architecture `model.architecture` names.
public struct Architecture: Sendable {
    /// The name in the configuration.
    public let name: String
    /// One line for `thaw models`.
    public let summary: String
    /// A typical input shape (for `thaw models` and the benchmarks when none is given).
    public let typicalSampleShape: [Int]
    /// Whether `model.head_dropout` means something for it.
    public let hasDropoutHead: Bool
    /// Whether its input is token ids (it needs a BERT `config.json` and a text dataset).
    public let readsTokenIds: Bool
    /// How its pretrained files are named.
    public let weightNaming: WeightNaming
    /// Thaw's tensor name → the standard layout's name (nil for a tensor that layout lacks).
    public let externalName: @Sendable (String) -> String?
    /// The layer groups for `sampleShape` inputs (no parameter store yet).
    let makeGroups: @Sendable (_ section: ModelSection, _ sampleShape: [Int], _ seed: UInt64, _ bert: BERTConfiguration?) throws -> [LayerGroup]

    /// The architecture called `name`, if Thaw has one.
    public static func named(_ name: String) -> Architecture? { all.first { $0.name == name } }

    /// Every architecture, in the order `thaw models` lists them.
    public static let all: [Architecture] = [
        Architecture(name: "small-cnn", summary: "2 conv blocks + MLP head, trained from scratch (groups stem, block1, head)",
                     typicalSampleShape: [1, 28, 28], hasDropoutHead: true, readsTokenIds: false, weightNaming: .standard,
                     externalName: { $0 }) { section, shape, seed, _ in
            guard shape.count == 3, shape[1] % 4 == 0, shape[2] % 4 == 0, CheckedSize.product([64, shape[1] / 4, shape[2] / 4, 128]) != nil else {
                throw ModelZooError.input(architecture: "small-cnn", expected: "[C, H, W] inputs with H and W divisible by 4", got: shape)
            }
            return SmallCNN.groups(channels: shape[0], height: shape[1], width: shape[2], classes: section.classes,
                                   headDropout: section.headDropout, seed: seed)
        },
        Architecture(name: "mlp", summary: "2 hidden layers + linear head; no batch norm or dropout, so model.head_dropout must be 0 "
                     + "(groups hidden1, hidden2, head)", typicalSampleShape: [1, 28, 28], hasDropoutHead: false, readsTokenIds: false,
                     weightNaming: .standard, externalName: { $0 }) { section, shape, _, _ in
            MultilayerPerceptron.groups(inputSize: CheckedSize.product(shape) ?? 0, classes: section.classes)
        },
        Architecture(name: "mobilenet_v2", summary: "MobileNetV2, torchvision layout (groups stem, block1..block7, head); ImageNet weights via "
                     + "scripts/fetch-backbone", typicalSampleShape: [3, 64, 64], hasDropoutHead: true, readsTokenIds: false,
                     weightNaming: .standard, externalName: MobileNetV2.torchvisionName) { section, shape, seed, _ in
            try requireImage(shape, "mobilenet_v2")
            return MobileNetV2.groups(classes: section.classes, dropout: section.headDropout, seed: seed)
        },
        resnet(.resnet18, "resnet18", "ResNet-18, torchvision layout (groups stem, layer1..layer4, head)"),
        resnet(.resnet50, "resnet50", "ResNet-50 (v1.5), torchvision layout (groups stem, layer1..layer4, head)"),
        vgg(batchNorm: false, "vgg16", "VGG-16, torchvision layout (groups block1..block5, classifier, head); head_dropout sets both classifier dropouts"),
        vgg(batchNorm: true, "vgg16_bn", "VGG-16 with batch norm, torchvision layout (groups block1..block5, classifier, head); head_dropout as vgg16"),
        Architecture(name: "bert", summary: "BERT-family text encoder, Hugging Face layout, sized by model.bert_config (groups embeddings, "
                     + "layer0..layerL-1, head); input [T] token ids; all-MiniLM-L6-v2 via scripts/fetch-backbone minilm (shown with its sizes)",
                     typicalSampleShape: [128], hasDropoutHead: true, readsTokenIds: true, weightNaming: .huggingFaceBERT,
                     externalName: BERT.huggingFaceName) { section, shape, seed, given in
            let configuration = try given ?? ModelZoo.bertConfiguration(section)
            guard shape.count == 1, (1...configuration.maximumPositions).contains(shape[0]) else {
                throw ModelZooError.input(architecture: "bert", expected: "[T] token-id inputs with 1 ≤ T ≤ \(configuration.maximumPositions) "
                                          + "(max_position_embeddings)", got: shape)
            }
            return BERT.groups(configuration: configuration, classes: section.classes, pooling: section.pooling,
                               headHidden: section.headHidden > 0 ? section.headHidden : nil, dropout: section.headDropout, seed: seed)
        },
    ]

    private static func resnet(_ variant: ResNet.Variant, _ name: String, _ summary: String) -> Architecture {
        Architecture(name: name, summary: summary, typicalSampleShape: [3, 64, 64], hasDropoutHead: true, readsTokenIds: false,
                     weightNaming: .standard, externalName: ResNet.torchvisionName) { section, shape, seed, _ in
            // Five stride-2 stages: at 32×32 the last stage is 1×1, and smaller inputs leave nothing to pool.
            try requireImage(shape, name)
            return ResNet.groups(variant, classes: section.classes, dropout: section.headDropout, seed: seed)
        }
    }

    private static func vgg(batchNorm: Bool, _ name: String, _ summary: String) -> Architecture {
        Architecture(name: name, summary: summary, typicalSampleShape: [3, 32, 32], hasDropoutHead: true, readsTokenIds: false,
                     weightNaming: .standard, externalName: VGG.torchvisionName) { section, shape, seed, _ in
            // Five 2×2 max pools need H, W ≥ 32; the adaptive pool then brings any size to 7×7.
            try requireImage(shape, name)
            return VGG.groups(.vgg16, batchNorm: batchNorm, classes: section.classes, dropout: section.headDropout, seed: seed)
        }
    }

    private static func requireImage(_ shape: [Int], _ name: String) throws {
        guard shape.count == 3, shape[0] == 3, shape[1] >= 32, shape[2] >= 32 else {
            throw ModelZooError.input(architecture: name, expected: "[3, H, W] inputs with H, W ≥ 32", got: shape)
        }
    }
}

/// A model that cannot be built from what it was given.
public enum ModelZooError: Error, CustomStringConvertible, Equatable {
    /// The input shape does not suit the architecture.
    case input(architecture: String, expected: String, got: [Int])
    /// A sample of a dataset holds a token id outside the model's vocabulary.
    case tokenId(dataset: String, sample: Int, position: Int, id: Float, vocabularySize: Int)

    /// What is wrong, naming the architecture or the dataset and sample.
    public var description: String {
        switch self {
        case .input(let architecture, let expected, let got):
            return "\(architecture) needs \(expected); the data gives \(got) (data.image_size, data.normalization, data.max_length)"
        case .tokenId(let dataset, let sample, let position, let id, let vocabularySize):
            return "\(dataset), sample \(sample), position \(position): token id \(id) is not an integer in 0..<\(vocabularySize) (the model's vocab_size)"
        }
    }
}
