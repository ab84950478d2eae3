// Parameters: the one flat parameter buffer and the one flat gradient buffer.
//
// Note: gradient layout. Parameters are laid out group by group, in model order
// (input side first, head last), and the gradient buffer has exactly the same layout.
// Trainable groups always form a suffix of the group order, so the trainable part of
// both buffers is the single contiguous range `trainableRange`. Freezing moves one
// boundary index; an all-reduce of that range covers exactly what trains.
//
// Non-trainable state that layers update themselves (batch-norm running statistics)
// lives in a separate flat `state` buffer, which is never all-reduced as a gradient.

import ThawKernels

/// How a parameter's initial values are drawn.
public enum ParameterInitializer: Sendable, Equatable {
    /// All zeros (biases, batch-norm shift).
    case zeros
    /// All ones (batch-norm scale, layer-norm scale).
    case ones
    /// Uniform in ±1/sqrt(fanIn), PyTorch's default for linear and convolution layers.
    case uniformFanIn(Int)
    /// Kaiming-normal for ReLU networks: normal with standard deviation sqrt(2 / fanIn).
    case kaimingNormal(fanIn: Int)
    /// Normal with the given standard deviation (embeddings, transformer weights).
    case normal(standardDeviation: Float)
}

/// The declaration of one named tensor a layer owns: its name, shape and initializer.
public struct ParameterSpec: Sendable, Equatable {
    /// The name local to the layer, such as `weight` or `running_mean`.
    public var name: String
    /// The tensor's shape.
    public var shape: [Int]
    /// How to draw its initial values.
    public var initializer: ParameterInitializer

    /// Creates a parameter declaration.
    public init(_ name: String, shape: [Int], initializer: ParameterInitializer) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
    }

    /// The number of elements, or nil when an extent is negative or the product does not fit in an Int
    /// (shapes built from a configuration or a file can be anything).
    public var elementCount: Int? { CheckedSize.product(shape) }

    /// The number of elements; 0 for a shape without a valid ``elementCount``, which
    /// ``ParameterStore/layoutSize(groups:)`` reports and ``Model`` refuses before laying anything out.
    public var count: Int { elementCount ?? 0 }
}

/// A layer's window onto one parameter: its values and, at the same offset, its gradient.
public struct ParameterView {
    /// The parameter values inside the store's flat parameter buffer.
    public let value: UnsafeMutablePointer<Float>
    /// The gradient inside the store's flat gradient buffer (same layout as `value`).
    public let gradient: UnsafeMutablePointer<Float>
    /// The number of elements.
    public let count: Int
    /// Whether the parameter can never train (a base weight under adapters, see "Note: parameter
    /// groups"): layers then compute no gradient for it, only what the layers below need.
    public var isFixed = false
}

/// A layer's window onto one tensor of non-trainable state, such as a running mean.
public struct StateView {
    /// The values inside the store's flat state buffer.
    public let value: UnsafeMutablePointer<Float>
    /// The number of elements.
    public let count: Int
}

/// Where one named tensor lives in a flat buffer.
public struct ParameterEntry: Sendable, Equatable {
    /// The full name: `group.layer.path.parameter`.
    public let name: String
    /// The tensor's shape.
    public let shape: [Int]
    /// The name of the layer group it belongs to.
    public let group: String
    /// The first element's index in the flat buffer.
    public let offset: Int
    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// The element range in the flat buffer.
    public var range: Range<Int> { offset..<(offset + count) }
}

/// A parameter declaration whose element count, or the buffer's total, does not fit in an Int.
public struct LayoutSizeError: Error, CustomStringConvertible, Equatable {
    /// The declaration's full name.
    public var name: String
    /// Its shape.
    public var shape: [Int]

    /// One line naming the declaration.
    public var description: String {
        "\(name) with shape \(shape) has a negative extent or more elements than an Int holds (with the tensors before it)"
    }
}

/// The flat parameter, gradient and state buffers of one model replica.
///
/// Build one from the groups' parameter declarations; layers receive views into it.
/// The store never reallocates, so views stay valid for its lifetime.
public final class ParameterStore {
    /// Every trainable-capable tensor, in layout order.
    public let parameterEntries: [ParameterEntry]
    /// Every state tensor (running statistics), in layout order.
    public let stateEntries: [ParameterEntry]
    /// The group names in layout order (input side first).
    public let groupNames: [String]
    /// The parameter range of each group, parallel to `groupNames`.
    public let groupRanges: [Range<Int>]
    /// The flat parameter buffer.
    public let parameters: UnsafeMutableBufferPointer<Float>
    /// The flat gradient buffer, laid out like `parameters`.
    public let gradients: UnsafeMutableBufferPointer<Float>
    /// The flat state buffer for non-trainable tensors.
    public let state: UnsafeMutableBufferPointer<Float>

    /// The element counts of the parameter and state buffers for these groups, computed from the
    /// shapes alone (nothing is allocated), or the first declaration whose size does not fit in an Int.
    /// - Parameter groups: As for ``init(groups:)``.
    /// - Returns: `.success` with both totals, or `.failure` with the offending declaration.
    public static func layoutSize(groups: [(name: String, parameters: [ParameterSpec], state: [ParameterSpec])])
        -> Result<(parameters: Int, state: Int), LayoutSizeError> {
        var parameters = 0
        var state = 0
        for group in groups {
            for spec in group.parameters {
                guard let count = spec.elementCount, let total = CheckedSize.sum(parameters, count) else {
                    return .failure(LayoutSizeError(name: spec.name, shape: spec.shape))
                }
                parameters = total
            }
            for spec in group.state {
                guard let count = spec.elementCount, let total = CheckedSize.sum(state, count) else {
                    return .failure(LayoutSizeError(name: spec.name, shape: spec.shape))
                }
                state = total
            }
        }
        return .success((parameters, state))
    }

    /// Lays out the buffers for groups of declarations, in order.
    ///
    /// Every declaration must have a valid size (``layoutSize(groups:)`` succeeds); ``Model`` checks
    /// that and throws before it gets here, so a failure here is a programmer error.
    /// - Parameter groups: For each group, its name, its parameter declarations with full names,
    ///   and its state declarations with full names.
    public init(groups: [(name: String, parameters: [ParameterSpec], state: [ParameterSpec])]) {
        if case .failure(let error) = Self.layoutSize(groups: groups) {
            preconditionFailure("ParameterStore: \(error); Model.init refuses such declarations")
        }
        var parameterEntries: [ParameterEntry] = []
        var stateEntries: [ParameterEntry] = []
        var ranges: [Range<Int>] = []
        var offset = 0
        var stateOffset = 0
        for group in groups {
            let start = offset
            for spec in group.parameters {
                parameterEntries.append(ParameterEntry(name: spec.name, shape: spec.shape, group: group.name, offset: offset))
                offset += spec.count
            }
            ranges.append(start..<offset)
            for spec in group.state {
                stateEntries.append(ParameterEntry(name: spec.name, shape: spec.shape, group: group.name, offset: stateOffset))
                stateOffset += spec.count
            }
        }
        self.parameterEntries = parameterEntries
        self.stateEntries = stateEntries
        self.groupNames = groups.map(\.name)
        self.groupRanges = ranges
        self.parameters = .allocate(capacity: offset)
        self.parameters.initialize(repeating: 0)
        // Only the trainable suffix is ever written, so frozen groups' gradient pages never become resident.
        self.gradients = ZeroedMemory.allocate(count: offset)
        self.state = .allocate(capacity: stateOffset)
        self.state.initialize(repeating: 0)
    }

    deinit {
        parameters.deallocate()
        ZeroedMemory.release(gradients)
        state.deallocate()
    }

    /// The total number of parameters.
    public var parameterCount: Int { parameters.count }

    /// Views for a run of consecutive parameter entries, for binding layers.
    public func parameterViews(_ entries: ArraySlice<ParameterEntry>) -> [ParameterView] {
        entries.map {
            ParameterView(value: parameters.baseAddress! + $0.offset, gradient: gradients.baseAddress! + $0.offset, count: $0.count)
        }
    }

    /// Views for a run of consecutive state entries.
    public func stateViews(_ entries: ArraySlice<ParameterEntry>) -> [StateView] {
        entries.map { StateView(value: state.baseAddress! + $0.offset, count: $0.count) }
    }

    /// A copy of the parameters in `range` and of every state value, to put back later.
    public func snapshot(of range: Range<Int>? = nil) -> Snapshot {
        let range = range ?? 0..<parameterCount
        return Snapshot(range: range, parameters: Array(parameters[range]), state: Array(state))
    }

    /// Puts a snapshot's parameters and state back.
    public func restore(_ snapshot: Snapshot) {
        restore(parameters: snapshot)
        restore(state: snapshot)
    }

    /// Puts only a snapshot's parameters back.
    public func restore(parameters snapshot: Snapshot) {
        snapshot.parameters.withUnsafeBufferPointer { saved in
            if let from = saved.baseAddress, let to = parameters.baseAddress { (to + snapshot.range.lowerBound).update(from: from, count: saved.count) }
        }
    }

    /// Puts only a snapshot's state (batch-norm running statistics) back.
    public func restore(state snapshot: Snapshot) {
        snapshot.state.withUnsafeBufferPointer { saved in
            if let from = saved.baseAddress, let to = state.baseAddress { to.update(from: from, count: min(saved.count, state.count)) }
        }
    }

    /// Values copied out of a store.
    public struct Snapshot: Sendable {
        /// The parameter range copied.
        public let range: Range<Int>
        /// The parameters of `range`.
        public let parameters: [Float]
        /// Every state value.
        public let state: [Float]
    }

    /// The parameter entry with the given full name, if any.
    public func entry(named name: String) -> ParameterEntry? {
        parameterEntries.first { $0.name == name }
    }

    /// The state entry with the given full name, if any.
    public func stateEntry(named name: String) -> ParameterEntry? {
        stateEntries.first { $0.name == name }
    }

    /// A copy of one named parameter's values.
    public func values(of name: String) -> [Float]? {
        guard let e = entry(named: name) else { return nil }
        return Array(parameters[e.range])
    }

    /// A copy of one named parameter's gradient.
    public func gradient(of name: String) -> [Float]? {
        guard let e = entry(named: name) else { return nil }
        return Array(gradients[e.range])
    }

    /// Sets every gradient in `range` to zero (one memset, as in llm.c).
    public func zeroGradients(in range: Range<Int>) {
        guard !range.isEmpty else { return }
        (gradients.baseAddress! + range.lowerBound).update(repeating: 0, count: range.count)
    }

    /// Fills every parameter and state tensor with its initializer's values, reproducibly from `seed`.
    ///
    /// Each tensor draws from its own generator seeded by `seed` and its index, so the values do not
    /// depend on which other tensors exist.
    public func initialize(specs: [ParameterSpec], stateSpecs: [ParameterSpec], seed: UInt64) {
        precondition(specs.count == parameterEntries.count && stateSpecs.count == stateEntries.count)
        for (index, (spec, entry)) in zip(specs, parameterEntries).enumerated() {
            var generator = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
            fill(UnsafeMutableBufferPointer(rebasing: parameters[entry.range]), with: spec.initializer, generator: &generator)
        }
        for (index, (spec, entry)) in zip(stateSpecs, stateEntries).enumerated() {
            var generator = SplitMix64(seed: seed ^ (UInt64(index) &+ 0xA5A5_A5A5))
            fill(UnsafeMutableBufferPointer(rebasing: state[entry.range]), with: spec.initializer, generator: &generator)
        }
    }

    private func fill(_ buffer: UnsafeMutableBufferPointer<Float>, with initializer: ParameterInitializer, generator: inout SplitMix64) {
        switch initializer {
        case .zeros:
            buffer.update(repeating: 0)
        case .ones:
            buffer.update(repeating: 1)
        case .uniformFanIn(let fanIn):
            let bound = 1 / Float(max(fanIn, 1)).squareRoot()
            for i in buffer.indices { buffer[i] = generator.nextUniform() * 2 * bound - bound }
        case .kaimingNormal(let fanIn):
            let std = (2 / Float(max(fanIn, 1))).squareRoot()
            for i in buffer.indices { buffer[i] = generator.nextNormal() * std }
        case .normal(let std):
            for i in buffer.indices { buffer[i] = generator.nextNormal() * std }
        }
    }
}
