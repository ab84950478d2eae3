// VGG (Simonyan & Zisserman 2015) in torchvision's layout, with or without batch norm, split into
// named groups that unfreeze from the top.
//
// Inside each group, children are named by their torchvision path (`features.7`, `classifier.3`),
// so a Thaw name is `GROUP.` + the torchvision name: `block2.features.7.weight` is torchvision's
// `features.7.weight`. Groups: `block1` … `block5` (the features up to and including each max
// pool), `classifier` (avgpool to 7×7, flatten, classifier.0 … classifier.5: the two 4096-wide
// linears with ReLU and dropout) and `head` (classifier.6, the new head).

import ThawKernels

/// VGG with torchvision's parameter names.
public enum VGG {
    /// The configurations torchvision provides (the paper's A, B, D, E).
    public enum Configuration: String, Sendable, CaseIterable {
        /// Configuration A: 8 convolutions.
        case vgg11
        /// Configuration B: 10 convolutions.
        case vgg13
        /// Configuration D: 13 convolutions; 138,357,544 parameters with 1000 classes (138,365,992 with batch norm).
        case vgg16
        /// Configuration E: 16 convolutions.
        case vgg19

        /// Output channels of the convolutions in each of the five blocks (each block ends in a max pool).
        public var blocks: [[Int]] {
            switch self {
            case .vgg11: return [[64], [128], [256, 256], [512, 512], [512, 512]]
            case .vgg13: return [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]]
            case .vgg16: return [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
            case .vgg19: return [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]]
            }
        }
    }

    /// The groups for `classes` outputs.
    /// - Parameters:
    ///   - configuration: The depth (torchvision's `vgg16` is `.vgg16`).
    ///   - batchNorm: Whether a batch norm follows every convolution (torchvision's `vgg16_bn`).
    ///   - classes: Width of the new head, classifier.6.
    ///   - dropout: The probability of both classifier dropouts, classifier.2 and classifier.5 (torchvision: 0.5).
    ///   - seed: The first dropout's initial seed; the second uses `seed + 1`.
    public static func groups(_ configuration: Configuration, batchNorm: Bool, classes: Int, dropout: Float = 0.5,
                              seed: UInt64 = 0) -> [LayerGroup] {
        var groups: [LayerGroup] = []
        var channels = 3
        var feature = 0
        for (index, block) in configuration.blocks.enumerated() {
            var layers: [(name: String, layer: any Layer)] = []
            func add(_ layer: any Layer) {
                layers.append((name: "features.\(feature)", layer: layer))
                feature += 1
            }
            for width in block {
                add(Conv2d(channels, width, kernelSize: 3, padding: 1))
                if batchNorm { add(BatchNorm2d(width)) }
                add(ReLU())
                channels = width
            }
            add(MaxPool2d(kernelSize: 2, stride: 2))
            groups.append(LayerGroup("block\(index + 1)", layers))
        }
        groups.append(LayerGroup("classifier", [
            (name: "avgpool", layer: AdaptiveAveragePool2d(outputSize: 7)),
            (name: "flatten", layer: Flatten()),
            (name: "classifier.0", layer: Linear(channels * 7 * 7, 4096)),
            (name: "classifier.1", layer: ReLU()),
            (name: "classifier.2", layer: Dropout(probability: dropout, seed: seed)),
            (name: "classifier.3", layer: Linear(4096, 4096)),
            (name: "classifier.4", layer: ReLU()),
            (name: "classifier.5", layer: Dropout(probability: dropout, seed: seed &+ 1)),
        ]))
        groups.append(LayerGroup("head", [(name: "classifier.6", layer: Linear(4096, classes))]))
        return groups
    }

    /// torchvision's name for a Thaw name: the name without its group prefix.
    public static func torchvisionName(_ thawName: String) -> String? {
        guard let dot = thawName.firstIndex(of: ".") else { return nil }
        return String(thawName[thawName.index(after: dot)...])
    }
}
