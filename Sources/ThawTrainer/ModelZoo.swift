// ModelZoo: architecture names in the configuration → models.
import ThawNN

/// Builds the model a configuration names.
public enum ModelZoo {
    /// The architecture names `model.architecture` accepts, with a one-line description.
    public static let architectures: [(name: String, description: String)] = [
        ("small-cnn", "2 conv blocks + MLP head, trained from scratch (groups stem, block1, head)"),
        ("mlp", "2 hidden layers + linear head; no batch norm (groups hidden1, hidden2, head)"),
    ]

    /// Builds and initializes the model for `sampleShape` inputs.
    /// - Throws: ``TrainingError/unknown(key:value:choices:)`` for an unknown architecture, or a
    ///   ``ModelError`` when the input shape does not suit it.
    public static func build(_ section: ModelSection, sampleShape: [Int], seed: UInt64) throws -> Model {
        let groups: [LayerGroup]
        switch section.architecture {
        case "small-cnn":
            guard sampleShape.count == 3, sampleShape[1] % 4 == 0, sampleShape[2] % 4 == 0 else {
                throw TrainingError.dataMismatch("small-cnn needs [C, H, W] inputs with H and W divisible by 4; the data gives \(sampleShape)")
            }
            groups = SmallCNN.groups(channels: sampleShape[0], height: sampleShape[1], width: sampleShape[2],
                                     classes: section.classes, headDropout: section.headDropout, seed: seed)
        case "mlp":
            groups = MultilayerPerceptron.groups(inputSize: sampleShape.reduce(1, *), classes: section.classes)
        default:
            throw TrainingError.unknown(key: "model.architecture", value: section.architecture, choices: architectures.map(\.name))
        }
        let model = try Model(groups: groups, sampleShape: sampleShape, seed: seed)
        model.frozenBatchNormPolicy = section.frozenBatchNorm
        return model
    }
}
