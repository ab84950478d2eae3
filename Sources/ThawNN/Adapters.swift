// Adapters: finding layers by path in layer groups, attaching LoRA updates to the linear layers a
// selection names, and the typed errors of doing so.
//
// A layer's path is its parameters' prefix: group name, then each nested name (`layer3.encoder.
// layer.3.attention.query` for the parameters `layer3.encoder.layer.3.attention.query.weight` …).
// Attaching happens before a Model lays the groups out, because adapters add parameters.
import ThawKernels

/// A problem attaching adapters, naming the layer (or the selection that found none).
public struct AdapterError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public enum Reason: Sendable, Equatable {
        /// A rank outside 1...width, the smaller of the layer's input and output features.
        case rank(Int, width: Int)
        /// The layer already carries an adapter.
        case alreadyAdapted
        /// A convolution other than 1×1, stride 1, unpadded and ungrouped.
        case notPointwise
        /// No layer of the model matches the target; `available` lists what targets do match.
        case noLayer(target: String, available: [String])
    }

    /// The layer's path (or the architecture, for ``Reason/noLayer(target:available:)``).
    public var layer: String
    /// What went wrong.
    public var reason: Reason

    /// Creates an error.
    public init(layer: String, reason: Reason) {
        self.layer = layer
        self.reason = reason
    }

    /// One line naming the layer.
    public var description: String {
        switch reason {
        case .rank(let rank, let width):
            return "\(layer): adapter rank \(rank) is outside 1...\(width) (the layer's smaller width)"
        case .alreadyAdapted:
            return "\(layer): already carries an adapter"
        case .notPointwise:
            return "\(layer): LoRA adapts only 1×1, stride-1, unpadded, ungrouped convolutions"
        case .noLayer(let target, let available):
            return "\(layer) has no layer for adapter target '\(target)'"
                + (available.isEmpty ? "; it has no layers adapters can attach to" : "; its targets are \(available.joined(separator: ", "))")
        }
    }
}

extension LayerGroup {
    /// Every layer of the group under its path (the prefix of its parameters' names), depth first.
    public var namedLayers: [(path: String, layer: any Layer)] {
        var result: [(path: String, layer: any Layer)] = []
        func visit(_ layer: any Layer, _ path: String) {
            result.append((path, layer))
            for child in layer.namedChildren {
                visit(child.layer, child.name.isEmpty ? path : "\(path).\(child.name)")
            }
        }
        visit(body, name)
        return result
    }
}

/// LoRA's settings for every layer it adapts.
public struct LowRankSettings: Sendable, Equatable {
    /// The rank r.
    public var rank: Int
    /// alpha; updates are scaled by alpha / rank.
    public var alpha: Float
    /// Dropout on each adapter's input.
    public var dropout: Float

    /// Creates settings.
    public init(rank: Int, alpha: Float, dropout: Float) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
    }
}

/// Attaching LoRA updates to the linear layers of layer groups.
public enum LowRankAdapters {
    /// Whether a full parameter name is an adapter's (`….lora_A.weight`, `….lora_B.weight`).
    public static func isAdapterParameter(_ name: String) -> Bool {
        name.hasSuffix(".lora_A.weight") || name.hasSuffix(".lora_B.weight")
    }

    /// Whether LoRA can adapt `layer`: a ``Linear``, or a pointwise ``Conv2d``.
    public static func isAdaptable(_ layer: any Layer) -> Bool {
        layer is Linear || (layer as? Conv2d)?.isPointwise == true
    }

    /// Attaches an update to every adaptable layer (``isAdaptable(_:)``) outside the last group (the head, which trains whole)
    /// that `selects` (given its path and the layer), and returns the adapted paths.
    /// - Parameter seed: Seeds the adapters' dropout generators (the trainer reseeds them every step).
    /// - Throws: ``AdapterError`` naming the layer, for a rank the layer cannot take.
    @discardableResult
    public static func attach(to groups: [LayerGroup], settings: LowRankSettings, seed: UInt64 = 0,
                              selects: (_ path: String, _ layer: any Layer) -> Bool) throws(AdapterError) -> [String] {
        var adapted: [String] = []
        for group in groups.dropLast() {
            for (path, layer) in group.namedLayers {
                guard isAdaptable(layer), selects(path, layer) else { continue }
                let layerSeed = SplitMix64.mix(seed, UInt64(adapted.count))
                do {
                    if let linear = layer as? Linear {
                        try linear.attachAdapter(rank: settings.rank, alpha: settings.alpha, dropout: settings.dropout, seed: layerSeed)
                    } else if let convolution = layer as? Conv2d {
                        try convolution.attachAdapter(rank: settings.rank, alpha: settings.alpha, dropout: settings.dropout, seed: layerSeed)
                    }
                } catch {
                    throw AdapterError(layer: path, reason: error.reason)
                }
                adapted.append(path)
            }
        }
        return adapted
    }
}
