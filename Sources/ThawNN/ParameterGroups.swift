// ParameterGroups: how a model's parameters are laid out in groups, the units of freezing, of
// per-group learning rates and of the exchange's buckets.
//
// Note: parameter groups. Ordinarily each layer group's parameters form one parameter group of the
// same name, in layer order, and the two notions coincide. With adapters (LoRA, BitFit) the
// parameters that train (the adapters, the biases) form one group per layer group, laid out after a
// single fixed group, `backbone`, that holds every other parameter; the head keeps all of its own.
// The trainable parameters are then still one suffix, "the adapters of the top k layer groups and
// the head", so freezing still moves one boundary and the exchange still sends one range, while the
// base weights below it never get a gradient, optimizer state or a byte on the wire. Backward runs
// the layer groups down to the lowest one owning a trainable parameter group.
import ThawKernels

/// How a model's parameters are placed in parameter groups.
public enum ParameterPlacement {
    /// Each layer group's parameters form a parameter group of the same name (ordinary fine-tuning).
    case byLayerGroup
    /// The parameters `trains` selects (by full name) form one parameter group per layer group, after one
    /// fixed group, `backbone`, of every other parameter; the last layer group (the head) trains whole.
    case adapters(trains: (String) -> Bool)
}

/// One parameter group: a contiguous range of the flat buffers.
public struct ParameterGroup: Sendable, Equatable {
    /// The group's name (its layer group's name, or `backbone`).
    public let name: String
    /// The layer group whose layers own the group's parameters (nil for `backbone`, which spans many).
    public let layerGroup: Int?
    /// Whether the group can never train (the base weights under adapters).
    public let isFixed: Bool
}

/// The name of the fixed group of base weights under adapters.
public let backboneGroupName = "backbone"

/// The parameter groups of some layer groups under a placement, with each group's specs in layout order.
struct ParameterLayout {
    /// The groups, in layout order.
    var groups: [ParameterGroup] = []
    /// Each group's prefixed parameter and state specs, parallel to `groups`.
    var specs: [(name: String, parameters: [ParameterSpec], state: [ParameterSpec])] = []

    /// Lays out `layerGroups` under `placement`.
    init(_ layerGroups: [LayerGroup], placement: ParameterPlacement) {
        let prefixed = layerGroups.map { group in
            (name: group.name,
             parameters: group.body.parameterSpecs.map { ParameterSpec("\(group.name).\($0.name)", shape: $0.shape, initializer: $0.initializer) },
             state: group.body.stateSpecs.map { ParameterSpec("\(group.name).\($0.name)", shape: $0.shape, initializer: $0.initializer) })
        }
        switch placement {
        case .byLayerGroup:
            groups = layerGroups.indices.map { ParameterGroup(name: layerGroups[$0].name, layerGroup: $0, isFixed: false) }
            specs = prefixed
        case .adapters(let trains):
            let head = layerGroups.count - 1
            var backbone: [ParameterSpec] = [], backboneState: [ParameterSpec] = []
            var trained: [(index: Int, specs: [ParameterSpec])] = []
            for (index, group) in prefixed.enumerated() {
                backboneState += group.state
                if index == head { continue }
                backbone += group.parameters.filter { !trains($0.name) }
                let own = group.parameters.filter { trains($0.name) }
                if !own.isEmpty { trained.append((index, own)) }
            }
            groups = [ParameterGroup(name: backboneGroupName, layerGroup: nil, isFixed: true)]
            specs = [(backboneGroupName, backbone, backboneState)]
            for group in trained {
                groups.append(ParameterGroup(name: prefixed[group.index].name, layerGroup: group.index, isFixed: false))
                specs.append((prefixed[group.index].name, group.specs, []))
            }
            if head >= 0 {
                groups.append(ParameterGroup(name: prefixed[head].name, layerGroup: head, isFixed: false))
                specs.append((prefixed[head].name, prefixed[head].parameters, []))
            }
        }
    }
}

extension Model {
    /// The number of parameters in the named parameter groups (a name the model lacks counts nothing).
    public func parameterCount(ofGroups names: [String]) -> Int {
        parameterGroups.indices.filter { names.contains(parameterGroups[$0].name) }.reduce(0) { $0 + store.groupRanges[$1].count }
    }

    /// The most parameters that can ever train: every group but the fixed backbone.
    public var plannableParameterCount: Int { parameterCount(ofGroups: plannableGroupNames) }
}
