// GradientCheck: compares a layer's analytic backward pass with central finite differences.
//
// The scalar being differentiated is L = Σ_i y_i · r_i, where y is the layer's output and
// r a fixed random projection. Then dL/dy = r exactly, and backward(r) must give dL/dx and
// dL/dθ. Differences are taken in Double around Float forward passes.
import ThawKernels
import ThawNN

/// A layer bound to its own parameter store, so it can be run and checked in isolation.
public final class LayerHarness {
    /// The layer under test.
    public let layer: any Layer
    /// The store holding the layer's parameters, gradients and state.
    public let store: ParameterStore

    /// Lays out and initializes the layer's parameters from `seed`, then binds the layer.
    public init(_ layer: any Layer, seed: UInt64 = 1) {
        self.layer = layer
        store = ParameterStore(groups: [(name: "layer", parameters: layer.parameterSpecs, state: layer.stateSpecs)])
        store.initialize(specs: layer.parameterSpecs, stateSpecs: layer.stateSpecs, seed: seed)
        layer.bind(parameters: store.parameterViews(store.parameterEntries[...]), state: store.stateViews(store.stateEntries[...]))
    }

    /// Overwrites one parameter (by its name local to the layer) with `values`.
    public func setParameter(_ name: String, _ values: [Float]) {
        guard let entry = store.entry(named: name) else { preconditionFailure("no parameter \(name); have \(store.parameterEntries.map(\.name))") }
        precondition(values.count == entry.count, "\(name) needs \(entry.count) values, got \(values.count)")
        for (i, v) in values.enumerated() { store.parameters[entry.offset + i] = v }
    }

    /// Overwrites one state tensor (by its local name) with `values`.
    public func setState(_ name: String, _ values: [Float]) {
        guard let entry = store.stateEntry(named: name) else { preconditionFailure("no state \(name)") }
        precondition(values.count == entry.count)
        for (i, v) in values.enumerated() { store.state[entry.offset + i] = v }
    }
}

/// The result of one gradient check: the worst relative error for the input and each parameter.
public struct GradientCheckReport: CustomStringConvertible {
    /// Worst error over the input gradient (nil when the input gradient was not checked).
    public var inputError: Double?
    /// Worst error per parameter name.
    public var parameterErrors: [String: Double]

    /// The worst error over everything checked.
    public var worst: Double { max(inputError ?? 0, parameterErrors.values.max() ?? 0) }

    /// One line per checked tensor.
    public var description: String {
        var lines = inputError.map { ["input: \($0)"] } ?? []
        lines += parameterErrors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        return lines.joined(separator: "\n")
    }
}

/// Finite-difference gradient checking for layers.
public enum GradientCheck {
    /// Checks input and parameter gradients of a layer on a random input.
    ///
    /// The error for one tensor is `max |analytic − numeric| / max(scale, max |numeric|)`, which is
    /// robust for entries near zero.
    ///
    /// - Parameters:
    ///   - harness: The bound layer.
    ///   - input: The input to differentiate at (not modified on return).
    ///   - epsilon: Finite-difference step.
    ///   - checkInput: Whether to check the input gradient.
    ///   - maxEntriesPerTensor: How many entries of each tensor to probe (spread evenly), for speed.
    ///   - seed: Seed for the output projection.
    ///   - beforeForward: Called before every forward pass (for example to reset a dropout seed).
    public static func run(
        _ harness: LayerHarness, input: Tensor, epsilon: Float = 1e-2, checkInput: Bool = true,
        maxEntriesPerTensor: Int = 64, seed: UInt64 = 7, beforeForward: () -> Void = {}
    ) -> GradientCheckReport {
        let layer = harness.layer
        let store = harness.store
        beforeForward()
        let y = layer.forward(input, mode: .training)
        var generator = SplitMix64(seed: seed)
        let projection = Tensor(shape: y.shape)
        for i in 0..<projection.count { projection.data[i] = generator.nextUniform() * 2 - 1 }

        func loss() -> Double {
            beforeForward()
            let out = layer.forward(input, mode: .training)
            var sum = 0.0
            for i in 0..<out.count { sum += Double(out.data[i]) * Double(projection.data[i]) }
            return sum
        }

        // Analytic gradients.
        store.zeroGradients(in: 0..<store.parameterCount)
        _ = loss()
        let analyticInput = layer.backward(projection, computeInputGradient: checkInput)?.values
        let analyticParameters = Array(store.gradients)

        func probe(_ pointer: UnsafeMutablePointer<Float>, count: Int, analytic: (Int) -> Float) -> Double {
            let stride = max(1, count / maxEntriesPerTensor)
            var worstDiff = 0.0
            var scale = 1e-3
            var i = 0
            while i < count {
                let saved = pointer[i]
                pointer[i] = saved + epsilon
                let plus = loss()
                pointer[i] = saved - epsilon
                let minus = loss()
                pointer[i] = saved
                let numeric = (plus - minus) / (2 * Double(epsilon))
                worstDiff = max(worstDiff, abs(numeric - Double(analytic(i))))
                scale = max(scale, abs(numeric))
                i += stride
            }
            return worstDiff / scale
        }

        var report = GradientCheckReport(inputError: nil, parameterErrors: [:])
        if checkInput, let analyticInput {
            report.inputError = probe(input.data, count: input.count) { analyticInput[$0] }
        }
        for entry in store.parameterEntries {
            report.parameterErrors[entry.name] = probe(store.parameters.baseAddress! + entry.offset, count: entry.count) {
                analyticParameters[entry.offset + $0]
            }
        }
        return report
    }

    /// A tensor of the given shape with seeded uniform values in [-1, 1).
    public static func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
        let t = Tensor(shape: shape)
        var generator = SplitMix64(seed: seed)
        for i in 0..<t.count { t.data[i] = generator.nextUniform() * 2 - 1 }
        return t
    }
}
