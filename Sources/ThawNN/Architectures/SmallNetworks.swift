// SmallNetworks: the small models trained from scratch on 28×28 inputs (Fashion-MNIST),
// split into named groups like the large backbones so freezing works the same way.

/// A small convolutional network for `[C, H, W]` inputs with H and W divisible by 4.
///
/// Groups: `stem` (conv 32, batch norm, ReLU, max pool), `block1` (conv 64, batch norm, ReLU,
/// max pool) and `head` (flatten, dropout, linear 128, ReLU, linear to the classes).
public enum SmallCNN {
    /// The groups for `channels × height × width` inputs and `classes` outputs.
    public static func groups(channels: Int, height: Int, width: Int, classes: Int, headDropout: Float = 0, seed: UInt64 = 0) -> [LayerGroup] {
        [
            LayerGroup("stem", [
                (name: "conv", layer: Conv2d(channels, 32, kernelSize: 3, padding: 1, bias: false)),
                (name: "bn", layer: BatchNorm2d(32)),
                (name: "relu", layer: ReLU()),
                (name: "pool", layer: MaxPool2d(kernelSize: 2)),
            ]),
            LayerGroup("block1", [
                (name: "conv", layer: Conv2d(32, 64, kernelSize: 3, padding: 1, bias: false)),
                (name: "bn", layer: BatchNorm2d(64)),
                (name: "relu", layer: ReLU()),
                (name: "pool", layer: MaxPool2d(kernelSize: 2)),
            ]),
            LayerGroup("head", [
                (name: "flatten", layer: Flatten()),
                (name: "dropout", layer: Dropout(probability: headDropout, seed: seed)),
                (name: "fc1", layer: Linear(64 * (height / 4) * (width / 4), 128)),
                (name: "relu", layer: ReLU()),
                (name: "fc2", layer: Linear(128, classes)),
            ]),
        ]
    }
}

/// A multilayer perceptron with two hidden layers; no batch norm or dropout, so data-parallel
/// runs match a single process exactly. Groups: `hidden1`, `hidden2`, `head`.
public enum MultilayerPerceptron {
    /// The groups for inputs of `inputSize` features (any shape; it is flattened).
    public static func groups(inputSize: Int, hidden: Int = 256, classes: Int) -> [LayerGroup] {
        [
            LayerGroup("hidden1", [(name: "flatten", layer: Flatten()), (name: "fc", layer: Linear(inputSize, hidden)), (name: "relu", layer: ReLU())]),
            LayerGroup("hidden2", [(name: "fc", layer: Linear(hidden, hidden / 2)), (name: "relu", layer: ReLU())]),
            LayerGroup("head", [(name: "fc", layer: Linear(hidden / 2, classes))]),
        ]
    }
}
