// Model: an ordered list of named layer groups over one parameter store, with
// freeze/unfreeze and a backward pass that stops at the lowest trainable group.
//
// Note: trainable suffix. Parameter groups are ordered input side first, head last, and the
// trainable groups are always a suffix of that order (progressive unfreezing thaws from the top).
// `firstTrainableGroup` is the boundary: everything below it is frozen, and the layer groups below
// the lowest one owning a trainable parameter group (`firstTrainableLayer`) run forward only and
// keep nothing for backward. Ordinarily parameter groups and layer groups are the same; under
// adapters they differ (ParameterGroups.swift, "Note: parameter groups").
import ThawKernels

/// A layer that derives per-batch state from the model's raw input (the padding mask from token ids).
///
/// When a forward pass starts above such a layer (the frozen-prefix cache feeds cached features to
/// the first trainable group), ``Model/observeRawInput(_:belowGroup:)`` lets it see the batch anyway.
public protocol RawInputObserver: AnyObject {
    /// Derives this batch's state from the raw model input, as the layer's own forward pass would.
    func observe(rawInput: Tensor)
}

/// What a frozen group's batch-norm layers do during training.
public enum FrozenBatchNormPolicy: String, Sendable, Codable, CaseIterable {
    /// Frozen groups run in inference mode: batch norm uses (and keeps) its running statistics.
    /// This is the default, and it makes a frozen group a fixed function of its input.
    case runningStatistics = "running_statistics"
    /// Frozen groups normalize with batch statistics and update their running statistics,
    /// as a frozen PyTorch module left in train mode does. Their parameters still do not train.
    case batchStatistics = "batch_statistics"
}

/// A named group of layers: the unit of freezing and of per-group learning rates.
public final class LayerGroup {
    /// The group's name, such as `stem`, `block3` or `head`.
    public let name: String
    /// The group's layers.
    public let body: Sequential

    /// Creates a group from named layers.
    public init(_ name: String, _ namedLayers: [(name: String, layer: any Layer)]) {
        self.name = name
        self.body = Sequential(namedLayers)
    }

    /// Creates a group whose layers are named by position.
    public init(_ name: String, _ layers: [any Layer]) {
        self.name = name
        self.body = Sequential(layers)
    }
}

/// An error from building a model or changing its trainable set.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    /// A group name that the model does not have.
    case unknownGroup(String, known: [String])
    /// A group that can never train (the base weights under adapters) was asked to.
    case fixedGroup(String)
    /// Two groups with the same name.
    case duplicateGroup(String)
    /// The requested trainable set would not be a suffix of the group order.
    case nonContiguousTrainableGroups(requested: [String], order: [String])
    /// The model's layers reject its declared input shape.
    case shape(ShapeError)
    /// A parameter whose element count (or the buffer's total) does not fit in an Int.
    case tooLarge(LayoutSizeError)

    /// A one-line explanation that names the group.
    public var description: String {
        switch self {
        case .unknownGroup(let name, let known):
            return "unknown layer group '\(name)'; the model's groups are \(known.joined(separator: ", "))"
        case .duplicateGroup(let name):
            return "layer group '\(name)' appears twice"
        case .fixedGroup(let name):
            return "group '\(name)' holds the base weights under model.adapters and never trains"
        case .nonContiguousTrainableGroups(let requested, let order):
            return "trainable groups [\(requested.joined(separator: ", "))] are not a top slice of [\(order.joined(separator: ", "))]: "
                + "Thaw unfreezes from the head down so the trainable parameters stay one contiguous range"
        case .shape(let error):
            return "shape mismatch: \(error)"
        case .tooLarge(let error):
            return "parameter too large: \(error)"
        }
    }
}

/// A network as ordered, named layer groups sharing one flat ``ParameterStore``.
public final class Model {
    /// The groups, input side first.
    public let groups: [LayerGroup]
    /// The flat parameter, gradient and state buffers.
    public let store: ParameterStore
    /// The shape of one sample (without the batch dimension).
    public let sampleShape: [Int]
    /// The shape of one sample's output (without the batch dimension).
    public let outputSampleShape: [Int]
    /// What frozen groups' batch norm does during training.
    public var frozenBatchNormPolicy: FrozenBatchNormPolicy = .runningStatistics
    /// Told about every layer group's forward and backward pass (a trace); nil, the default, costs nothing.
    public var groupTimer: (any GroupPassTimer)?
    /// The parameter groups, in layout order: the units of freezing and of per-group learning rates.
    public let parameterGroups: [ParameterGroup]
    /// Index of the lowest trainable parameter group; `parameterGroups.count` when every group is frozen.
    public private(set) var firstTrainableGroup: Int
    /// For each layer group, its parameter groups, highest first (what backward has finished after it).
    private let parameterGroupsOfLayer: [[Int]]

    /// Builds a model, lays out its parameters and binds every layer to the store.
    ///
    /// All groups start trainable. Parameters are initialized from `seed`.
    /// - Parameters:
    ///   - groups: The layer groups, input side first.
    ///   - sampleShape: One input sample's shape, such as `[1, 28, 28]`.
    ///   - seed: Seed for parameter initialization.
    ///   - placement: How parameters form parameter groups (by layer group, or adapters after a fixed backbone).
    public init(groups: [LayerGroup], sampleShape: [Int], seed: UInt64 = 0, placement: ParameterPlacement = .byLayerGroup) throws(ModelError) {
        var seen = Set<String>()
        for group in groups where !seen.insert(group.name).inserted { throw .duplicateGroup(group.name) }
        var shape = [1] + sampleShape
        for group in groups {
            do { shape = try group.body.outputShape(for: shape) } catch {
                throw .shape(ShapeError(layer: "\(group.name).\(error.layer)", shape: error.shape, expected: error.expected))
            }
        }
        self.groups = groups
        self.sampleShape = sampleShape
        self.outputSampleShape = Array(shape.dropFirst())
        let layout = ParameterLayout(groups, placement: placement)
        if case .failure(let error) = ParameterStore.layoutSize(groups: layout.specs) { throw .tooLarge(error) }
        let store = ParameterStore(groups: layout.specs)
        self.store = store
        self.parameterGroups = layout.groups
        store.initialize(specs: layout.specs.flatMap(\.parameters), stateSpecs: layout.specs.flatMap(\.state), seed: seed)
        parameterGroupsOfLayer = groups.indices.map { layer in layout.groups.indices.filter { layout.groups[$0].layerGroup == layer }.reversed() }
        self.firstTrainableGroup = layout.groups.firstIndex { !$0.isFixed } ?? layout.groups.count
        // Each layer gets its views in the order of its own specs, wherever the layout put them.
        let fixed = Set(layout.groups.filter(\.isFixed).map(\.name))
        let parameterIndex = Dictionary(store.parameterEntries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let stateIndex = Dictionary(store.stateEntries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for group in groups {
            let parameters = group.body.parameterSpecs.compactMap { parameterIndex["\(group.name).\($0.name)"] }.map { entry in
                var view = store.parameterViews([entry][...])[0]
                view.isFixed = fixed.contains(entry.group)
                return view
            }
            let state = store.stateViews(group.body.stateSpecs.compactMap { stateIndex["\(group.name).\($0.name)"] }[...])
            group.body.bind(parameters: parameters, state: state)
        }
    }

    /// The parameter group names, in layout order (the layer group names, unless adapters are placed).
    public var groupNames: [String] { parameterGroups.map(\.name) }

    /// The names of the parameter groups that can train (all but the fixed backbone): what plans name.
    public var plannableGroupNames: [String] { parameterGroups.filter { !$0.isFixed }.map(\.name) }

    /// The lowest layer group that owns a trainable parameter group (`groups.count` when none trains):
    /// backward stops there, and the frozen-prefix cache holds the layer groups below it.
    public var firstTrainableLayer: Int {
        parameterGroups[firstTrainableGroup...].compactMap(\.layerGroup).min() ?? groups.count
    }

    /// The names of the trainable groups, in group order.
    public var trainableGroups: [String] { Array(groupNames[firstTrainableGroup...]) }

    /// The names of the frozen groups, in group order.
    public var frozenGroups: [String] { Array(groupNames[..<firstTrainableGroup]) }

    /// The contiguous range of the flat buffers that trains.
    public var trainableRange: Range<Int> {
        let start = firstTrainableGroup < parameterGroups.count ? store.groupRanges[firstTrainableGroup].lowerBound : store.parameterCount
        return start..<store.parameterCount
    }

    /// The number of trainable parameters.
    public var trainableParameterCount: Int { trainableRange.count }

    /// Makes exactly `names` trainable. They must be the top parameter groups of the model (a suffix).
    ///
    /// Idempotent. Throws, changing nothing, on an unknown name, a fixed group or a set that is not a top slice.
    public func setTrainableGroups(_ names: [String]) throws(ModelError) {
        let wanted = Set(names)
        for name in names where !groupNames.contains(name) { throw .unknownGroup(name, known: groupNames) }
        if let fixed = parameterGroups.first(where: { $0.isFixed && wanted.contains($0.name) }) { throw .fixedGroup(fixed.name) }
        let boundary = parameterGroups.count - wanted.count
        guard groupNames[boundary...].allSatisfy(wanted.contains) else {
            throw .nonContiguousTrainableGroups(requested: groupNames.filter(wanted.contains), order: groupNames)
        }
        firstTrainableGroup = boundary
    }

    /// Freezes the named groups. Idempotent; unknown names throw.
    public func freeze(groups names: [String]) throws(ModelError) {
        for name in names where !groupNames.contains(name) { throw .unknownGroup(name, known: groupNames) }
        try setTrainableGroups(trainableGroups.filter { !names.contains($0) })
    }

    /// Unfreezes the named groups. Idempotent; unknown names throw.
    public func unfreeze(groups names: [String]) throws(ModelError) {
        for name in names where !groupNames.contains(name) { throw .unknownGroup(name, known: groupNames) }
        try setTrainableGroups(groupNames.filter { trainableGroups.contains($0) || names.contains($0) })
    }

    /// Freezes every group.
    public func freezeAll() { firstTrainableGroup = parameterGroups.count }

    /// Runs the forward pass.
    ///
    /// In training, trainable groups run in `.training` mode; frozen groups run in `.inference`
    /// mode, or in `.training` mode under the `.batchStatistics` policy. Out of training every group
    /// runs in `.inference` mode.
    /// - Parameters:
    ///   - input: A batch shaped `[N] + sampleShape`.
    ///   - training: Whether this pass will be followed by `backward`.
    /// - Returns: The output of the last group, owned by its last layer.
    public func forward(_ input: Tensor, training: Bool) throws(ShapeError) -> Tensor {
        guard input.shape.count == sampleShape.count + 1, Array(input.shape.dropFirst()) == sampleShape else {
            throw ShapeError(layer: "model input", shape: input.shape, expected: "[N] + \(sampleShape)")
        }
        return forward(input, fromGroup: 0, training: training)
    }

    /// Runs the forward pass from group `start` on an input that is already that group's input.
    ///
    /// Used by the frozen-prefix cache: the output of the frozen groups is computed once.
    public func forward(_ input: Tensor, fromGroup start: Int, training: Bool) -> Tensor {
        var x = input
        for index in start..<groups.count {
            x = timed(.forward, group: index) { groups[index].body.forward(x, mode: mode(ofGroup: index, training: training)) }
        }
        return x
    }

    /// Runs the groups in `range` on an input that is already the first one's input; with `training`
    /// false every group runs in inference mode. Used to compute the frozen prefix once for the cache.
    public func forward(_ input: Tensor, groups range: Range<Int>, training: Bool) -> Tensor {
        var x = input
        for index in range {
            x = timed(.forward, group: index) { groups[index].body.forward(x, mode: mode(ofGroup: index, training: training)) }
        }
        return x
    }

    /// Whether groups below `start` hold layers that derive per-batch state from the raw input.
    public func needsRawInput(belowGroup start: Int) -> Bool {
        rawInputObservers[..<min(start, groups.count)].contains { !$0.isEmpty }
    }

    /// Lets the layers below group `start` that derive per-batch state from the raw input (the BERT
    /// padding mask) see this batch, before a forward pass that starts at group `start`.
    public func observeRawInput(_ rawInput: Tensor, belowGroup start: Int) {
        for group in rawInputObservers[..<min(start, groups.count)] {
            for observer in group { observer.observe(rawInput: rawInput) }
        }
    }

    /// Each group's layers that derive per-batch state from the raw input, found once (groups never change).
    private lazy var rawInputObservers: [[any RawInputObserver]] = groups.map { group in
        var found: [any RawInputObserver] = []
        func visit(_ layer: any Layer) {
            if let observer = layer as? RawInputObserver { found.append(observer) }
            layer.children.forEach(visit)
        }
        visit(group.body)
        return found
    }

    /// The mode group `index` runs in.
    public func mode(ofGroup index: Int, training: Bool) -> LayerMode {
        guard training else { return .inference }
        if index >= firstTrainableLayer { return .training }
        return frozenBatchNormPolicy == .batchStatistics ? .training : .inference
    }

    /// Backpropagates `outputGradient` through the layer groups from the head down to the lowest
    /// one owning a trainable parameter group, accumulating into the gradient buffer: nothing below
    /// it runs, and that group does not compute its input gradient.
    ///
    /// - Parameter afterGroup: Called with each trainable parameter group's index as soon as its
    ///   gradients are final (used to start bucketed all-reduces early).
    public func backward(_ outputGradient: Tensor, afterGroup: (Int) throws -> Void) rethrows {
        let trainable = firstTrainableGroup
        try backward(outputGradient, groups: firstTrainableLayer..<groups.count) { layer in
            for group in parameterGroupsOfLayer[layer] where group >= trainable { try afterGroup(group) }
        }
    }

    /// Backpropagates `outputGradient` (the gradient of the last group of `range`'s output) through the
    /// layer groups of `range`, from the top down, accumulating into the gradient buffer; the lowest
    /// group of the range does not compute its input gradient. Episodic fine-tuning runs it on groups
    /// below the head. `afterGroup` is called with each layer group's index as it finishes.
    public func backward(_ outputGradient: Tensor, groups range: Range<Int>, afterGroup: (Int) throws -> Void) rethrows {
        var d = outputGradient
        for index in range.reversed() {
            let next = timed(.backward, group: index) { groups[index].body.backward(d, computeInputGradient: index > range.lowerBound) }
            try afterGroup(index)
            guard let next else { break }
            d = next
        }
    }

    /// Backpropagates through the trainable groups without a per-group callback.
    public func backward(_ outputGradient: Tensor) {
        backward(outputGradient, afterGroup: { _ in })
    }

    /// Names, shapes and groups of every parameter and state tensor, one per line.
    /// Ranks hash this to check that they hold the same architecture.
    public var layoutDescription: String {
        (store.parameterEntries.map { "p \($0.group) \($0.name) \($0.shape)" }
            + store.stateEntries.map { "s \($0.group) \($0.name) \($0.shape)" }).joined(separator: "\n")
    }

    /// Makes inference fold every batch norm into the convolution right before it, as the model's
    /// sequentials do from the start (`Sequential.foldBatchNormsForInference`). Idempotent.
    public func foldBatchNormsForInference() { allLayers.forEach { $0.foldBatchNormsForInference() } }

    /// Makes inference run every batch norm on its own (to compare with the folded path). Idempotent.
    public func unfoldBatchNorms() { allLayers.forEach { $0.unfoldBatchNorms() } }

    /// Every layer in the model, depth first.
    public var allLayers: [any Layer] {
        var result: [any Layer] = []
        func visit(_ layer: any Layer) {
            result.append(layer)
            layer.children.forEach(visit)
        }
        groups.forEach { visit($0.body) }
        return result
    }
}
