// ResNet (He et al. 2016) in torchvision's layout, split into named groups that unfreeze from the top.
//
// Inside each group, children are named by their torchvision path (`conv1`, `layer2.0`, `fc`), so a
// Thaw name is `GROUP.` + the torchvision name: `layer2.layer2.0.downsample.0.weight` is torchvision's
// `layer2.0.downsample.0.weight`. Groups: `stem` (conv1, bn1, relu, maxpool), `layer1` … `layer4`
// (one per stage), `head` (avgpool, an optional dropout torchvision lacks, fc with the new classes).
// Bottleneck blocks stride on the 3×3 conv (torchvision's "ResNet v1.5").

import ThawKernels

/// ResNet with torchvision's parameter names.
public enum ResNet {
    /// The depths torchvision provides, with their block type and blocks per stage.
    public enum Variant: String, Sendable, CaseIterable {
        /// BasicBlock, [2, 2, 2, 2]: 11,689,512 parameters with 1000 classes.
        case resnet18
        /// BasicBlock, [3, 4, 6, 3].
        case resnet34
        /// Bottleneck, [3, 4, 6, 3]: 25,557,032 parameters with 1000 classes.
        case resnet50
        /// Bottleneck, [3, 4, 23, 3].
        case resnet101
        /// Bottleneck, [3, 8, 36, 3].
        case resnet152

        /// Blocks in each of the four stages.
        public var blocksPerStage: [Int] {
            switch self {
            case .resnet18: return [2, 2, 2, 2]
            case .resnet34, .resnet50: return [3, 4, 6, 3]
            case .resnet101: return [3, 4, 23, 3]
            case .resnet152: return [3, 8, 36, 3]
            }
        }

        /// Whether the blocks are Bottlenecks (1×1, 3×3, 1×1 with 4× expansion) rather than BasicBlocks.
        public var usesBottleneck: Bool { self != .resnet18 && self != .resnet34 }

        /// Output channels of a block per stage width (`planes`): 4 for Bottleneck, 1 for BasicBlock.
        public var expansion: Int { usesBottleneck ? 4 : 1 }
    }

    /// A 3×3 or 1×1 convolution without bias, padded to keep the size at stride 1.
    static func conv(_ input: Int, _ output: Int, kernel: Int, stride: Int = 1) -> Conv2d {
        Conv2d(input, output, kernelSize: Size2D(kernel), stride: Size2D(stride), padding: Size2D(kernel / 2), bias: false)
    }

    /// torchvision's BasicBlock: conv1 (3×3, stride), bn1, relu, conv2 (3×3), bn2; ReLU after the sum.
    static func basicBlock(_ input: Int, planes: Int, stride: Int) -> Residual {
        let body = Sequential([
            (name: "conv1", layer: conv(input, planes, kernel: 3, stride: stride)),
            (name: "bn1", layer: BatchNorm2d(planes)),
            (name: "relu", layer: ReLU()),
            (name: "conv2", layer: conv(planes, planes, kernel: 3)),
            (name: "bn2", layer: BatchNorm2d(planes)),
        ])
        return Residual(body: body, shortcut: downsample(input, planes, stride: stride), activation: ReLU())
    }

    /// torchvision's Bottleneck (v1.5): conv1 (1×1), bn1, relu, conv2 (3×3, stride), bn2, relu,
    /// conv3 (1×1 to 4·planes), bn3; ReLU after the sum.
    static func bottleneck(_ input: Int, planes: Int, stride: Int) -> Residual {
        let output = planes * 4
        let body = Sequential([
            (name: "conv1", layer: conv(input, planes, kernel: 1)),
            (name: "bn1", layer: BatchNorm2d(planes)),
            (name: "relu", layer: ReLU()),
            (name: "conv2", layer: conv(planes, planes, kernel: 3, stride: stride)),
            (name: "bn2", layer: BatchNorm2d(planes)),
            (name: "relu", layer: ReLU()),
            (name: "conv3", layer: conv(planes, output, kernel: 1)),
            (name: "bn3", layer: BatchNorm2d(output)),
        ])
        return Residual(body: body, shortcut: downsample(input, output, stride: stride), activation: ReLU())
    }

    /// torchvision's `downsample` (strided 1×1 conv and batch norm), only where the shape changes.
    static func downsample(_ input: Int, _ output: Int, stride: Int) -> Sequential? {
        guard stride != 1 || input != output else { return nil }
        return Sequential([conv(input, output, kernel: 1, stride: stride), BatchNorm2d(output)])
    }

    /// The groups of `variant` for `classes` outputs.
    /// - Parameters:
    ///   - variant: The depth.
    ///   - classes: Width of the new `fc`.
    ///   - dropout: Dropout before `fc` (torchvision has none; 0 leaves the layer out).
    ///   - seed: The dropout's initial seed.
    public static func groups(_ variant: Variant, classes: Int, dropout: Float = 0, seed: UInt64 = 0) -> [LayerGroup] {
        var groups = [LayerGroup("stem", [
            (name: "conv1", layer: Conv2d(3, 64, kernelSize: 7, stride: 2, padding: 3, bias: false)),
            (name: "bn1", layer: BatchNorm2d(64)),
            (name: "relu", layer: ReLU()),
            (name: "maxpool", layer: MaxPool2d(kernelSize: 3, stride: 2, padding: 1)),
        ])]
        var channels = 64
        for (stage, blocks) in variant.blocksPerStage.enumerated() {
            let planes = 64 << stage
            var layers: [(name: String, layer: any Layer)] = []
            for index in 0..<blocks {
                let stride = index == 0 && stage > 0 ? 2 : 1
                let block = variant.usesBottleneck
                    ? bottleneck(channels, planes: planes, stride: stride) : basicBlock(channels, planes: planes, stride: stride)
                layers.append((name: "layer\(stage + 1).\(index)", layer: block))
                channels = planes * variant.expansion
            }
            groups.append(LayerGroup("layer\(stage + 1)", layers))
        }
        var head: [(name: String, layer: any Layer)] = [(name: "avgpool", layer: GlobalAveragePool())]
        if dropout > 0 { head.append((name: "dropout", layer: Dropout(probability: dropout, seed: seed))) }
        head.append((name: "fc", layer: Linear(channels, classes)))
        groups.append(LayerGroup("head", head))
        return groups
    }

    /// torchvision's name for a Thaw name: the name without its group prefix.
    public static func torchvisionName(_ thawName: String) -> String? {
        guard let dot = thawName.firstIndex(of: ".") else { return nil }
        return String(thawName[thawName.index(after: dot)...])
    }
}
