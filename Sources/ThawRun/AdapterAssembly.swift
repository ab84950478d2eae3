// AdapterAssembly: `model.adapters` applied to an architecture's layer groups: LoRA updates
// attached to the targeted linear layers, and the parameter placement that makes only the adapters
// (or, for BitFit, the biases and LayerNorms) and the head train. Errors name the key and the layer.
import ThawKernels
import ThawNN
import ThawPlan

/// Applies the adapter section to layer groups before a ``Model`` lays them out.
enum AdapterAssembly {
    /// Attaches the LoRA updates `section` names (nothing for BitFit or no section).
    /// - Throws: ``ConfigError`` at `model.adapters.targets` for a target the architecture lacks
    ///   (listing the targets it has), or at `model.adapters.rank` naming a layer too narrow for the rank.
    static func attach(_ section: AdapterSection?, to groups: [LayerGroup], architecture: String, seed: UInt64) throws(ConfigError) {
        guard case .lowRank(let lora) = section?.method else { return }
        let candidates = groups.dropLast().flatMap(\.namedLayers).filter { LowRankAdapters.isAdaptable($0.layer) }
        func found(_ target: AdapterTarget) -> Bool { candidates.contains { target.selects($0.path, $0.layer) } }
        let available = AdapterTarget.allCases.filter { $0 != .all && found($0) }
        for target in lora.targets where !found(target) {
            throw ConfigError(file: "", key: "model.adapters.targets",
                              message: AdapterError(layer: "architecture \(architecture)",
                                                    reason: .noLayer(target: target.rawValue, available: available.map(\.rawValue))).description)
        }
        do {
            try LowRankAdapters.attach(to: groups, settings: lora.settings, seed: SplitMix64.mix(seed, 0xADA9)) { path, layer in
                lora.targets.contains { $0.selects(path, layer) }
            }
        } catch {
            throw ConfigError(file: "", key: "model.adapters.rank", message: error.description)
        }
    }

    /// Where the parameters go: by layer group without adapters; otherwise the adapters (LoRA) or the
    /// biases and LayerNorm parameters (BitFit) of each group train, after one fixed `backbone` group.
    static func placement(_ section: AdapterSection?, groups: [LayerGroup]) -> ParameterPlacement {
        switch section?.method {
        case nil: return .byLayerGroup
        case .lowRank: return .adapters(trains: LowRankAdapters.isAdapterParameter)
        case .bias:
            let layerNorms = Set(groups.flatMap(\.namedLayers).filter { $0.layer is LayerNorm }.flatMap { ["\($0.path).weight", "\($0.path).bias"] })
            return .adapters(trains: { $0.hasSuffix(".bias") || layerNorms.contains($0) })
        }
    }
}
