// MobileNetV2 in torchvision's layout, split into named groups that unfreeze from the top.
//
// Inside each group, children are named by their torchvision path (`features.4`, `classifier.1`),
// so a Thaw name is `GROUP.` + the torchvision name: `block3.features.4.conv.0.0.weight` is
// torchvision's `features.4.conv.0.0.weight`. Groups: `stem` (features.0), `block1` … `block7`
// (one per inverted-residual setting; block7 also holds the final 1×1 conv, features.18), `head`.

import ThawKernels

/// MobileNetV2 (Sandler et al. 2018) with torchvision's parameter names.
public enum MobileNetV2 {
    /// (expansion t, output channels c, repeats n, first stride s) per block, as in the paper.
    static let settings: [(t: Int, c: Int, n: Int, s: Int)] = [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ]

    /// Conv + batch norm + ReLU6, torchvision's Conv2dNormActivation (children `0`, `1`, `2`).
    static func convBNReLU6(_ input: Int, _ output: Int, kernel: Int, stride: Int = 1, groups: Int = 1) -> Sequential {
        Sequential([
            Conv2d(input, output, kernelSize: Size2D(kernel), stride: Size2D(stride), padding: Size2D((kernel - 1) / 2),
                   groups: groups, bias: false),
            BatchNorm2d(output),
            ReLU6(),
        ])
    }

    /// torchvision's InvertedResidual: expand (1×1), depthwise (3×3), project (1×1, linear).
    static func invertedResidual(_ input: Int, _ output: Int, stride: Int, expansion: Int) -> any Layer {
        let hidden = input * expansion
        var layers: [any Layer] = []
        if expansion != 1 { layers.append(convBNReLU6(input, hidden, kernel: 1)) }
        layers.append(convBNReLU6(hidden, hidden, kernel: 3, stride: stride, groups: hidden))
        layers.append(Conv2d(hidden, output, kernelSize: 1, bias: false))
        layers.append(BatchNorm2d(output))
        let body = Sequential(layers)
        if stride == 1 && input == output { return Residual(body: body, bodyName: "conv") }
        return Sequential([(name: "conv", layer: body)])
    }

    /// The groups for `classes` outputs; `dropout` before the classifier as in torchvision (0.2).
    public static func groups(classes: Int, dropout: Float = 0.2, seed: UInt64 = 0) -> [LayerGroup] {
        var groups = [LayerGroup("stem", [(name: "features.0", layer: convBNReLU6(3, 32, kernel: 3, stride: 2))])]
        var channels = 32
        var feature = 1
        for (index, setting) in settings.enumerated() {
            var layers: [(name: String, layer: any Layer)] = []
            for copy in 0..<setting.n {
                layers.append((name: "features.\(feature)",
                               layer: invertedResidual(channels, setting.c, stride: copy == 0 ? setting.s : 1, expansion: setting.t)))
                channels = setting.c
                feature += 1
            }
            if index == settings.count - 1 {
                layers.append((name: "features.\(feature)", layer: convBNReLU6(channels, 1280, kernel: 1)))
            }
            groups.append(LayerGroup("block\(index + 1)", layers))
        }
        groups.append(LayerGroup("head", [
            (name: "avgpool", layer: GlobalAveragePool()),
            (name: "classifier.0", layer: Dropout(probability: dropout, seed: seed)),
            (name: "classifier.1", layer: Linear(1280, classes)),
        ]))
        return groups
    }

    /// torchvision's name for a Thaw name: the name without its group prefix.
    public static func torchvisionName(_ thawName: String) -> String? {
        guard let dot = thawName.firstIndex(of: ".") else { return nil }
        return String(thawName[thawName.index(after: dot)...])
    }
}
