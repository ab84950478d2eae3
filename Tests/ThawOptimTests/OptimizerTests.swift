// Tests for Optimizer: PyTorch parity (SGD variants, AdamW), per-group state initialization
// when a group is thawed, frozen ranges left untouched, and checkpoint hooks.
import Foundation
import Testing
import ThawTesting
import ThawNN
@testable import ThawOptim

@Suite struct OptimizerTests {
    /// Float32 parity with torch.optim, relative to each tensor's scale.
    static let tolerance = 1e-6
    static let steps = 6

    /// Runs one fixture case on the test store and checks parameters after every step and the final state.
    /// - Parameter thawAt: When > 0, only the head trains before this step and the body is thawed at it.
    /// - Parameter prepare: Runs on the fresh optimizer before the fixture steps (to leave stale state behind).
    func checkAgainstPyTorch(_ name: String, rule: UpdateRule, weightDecay: Double, thawAt: Int = 0,
                             prepare: (Optimizer, ParameterStore) -> Void = { _, _ in }) throws {
        let fixture = try FixtureFile(named: "optim")
        let store = makeStore()
        let optimizer = try Optimizer(rule: rule, weightDecay: weightDecay, store: store)
        prepare(optimizer, store)
        let stem: [Float] = [1, -0.0, .nan, .leastNonzeroMagnitude, 3]
        store.setParameters(group: TestGroup.stem, stem)
        for group in [TestGroup.body, TestGroup.head] {
            store.setParameters(group: group, try fixture.floats("init.\(TestGroup.names[group])"))
        }
        let rates = (body: try fixture.floats("lr.body"), head: try fixture.floats("lr.head"))
        optimizer.initializeState(forNewlyTrainableGroups: thawAt > 0 ? 2..<3 : 1..<3, store: store)
        for k in 0..<Self.steps {
            if thawAt > 0 && k == thawAt {
                optimizer.initializeState(forNewlyTrainableGroups: [TestGroup.body], store: store)
            }
            store.setGradients(group: TestGroup.stem, [.nan, .infinity, 1, 2, 3])
            for group in [TestGroup.body, TestGroup.head] {
                store.setGradients(group: group, try fixture.floats("grad.step\(k).\(TestGroup.names[group])"))
            }
            let trainable = thawAt > k ? 2..<3 : 1..<3
            optimizer.step(store: store, groups: trainable, learningRates: [0, rates.body[k], rates.head[k]])
            for group in [TestGroup.body, TestGroup.head] {
                let key = "\(name).step\(k).\(TestGroup.names[group])"
                let error = relativeError(store.parameters(group: group), try fixture.floats(key))
                #expect(error <= Self.tolerance, "\(key): relative error \(error)")
            }
        }
        #expect(bits(store.parameters(group: TestGroup.stem)) == bits(stem), "frozen stem changed")
        for (stateName, buffer) in optimizer.stateBuffers {
            for group in [TestGroup.body, TestGroup.head] {
                let key = "\(name).state.\(TestGroup.names[group]).\(stateName)"
                let error = relativeError(slice(buffer, store.groupRanges[group]), try fixture.floats(key))
                #expect(error <= Self.tolerance, "\(key): relative error \(error)")
            }
        }
    }

    @Test func plainSGDMatchesPyTorch() throws {
        try checkAgainstPyTorch("sgd_plain", rule: .sgd(momentum: 0, nesterov: false), weightDecay: 0.01)
    }

    @Test func momentumSGDMatchesPyTorch() throws {
        try checkAgainstPyTorch("sgd_momentum", rule: .sgd(momentum: 0.9, nesterov: false), weightDecay: 0.01)
    }

    @Test func nesterovSGDMatchesPyTorch() throws {
        try checkAgainstPyTorch("sgd_nesterov", rule: .sgd(momentum: 0.9, nesterov: true), weightDecay: 0.01)
    }

    @Test func dampenedSGDMatchesPyTorch() throws {
        try checkAgainstPyTorch("sgd_dampening", rule: .sgd(momentum: 0.9, nesterov: false, dampening: 0.5), weightDecay: 0)
    }

    @Test func adamWMatchesPyTorch() throws {
        try checkAgainstPyTorch("adamw", rule: .adamW(beta1: 0.9, beta2: 0.999, epsilon: 1e-8), weightDecay: 0.01)
    }

    /// The body trains, is frozen, and is thawed again at step 3: its stale moments and step count
    /// must be reset, so it matches PyTorch's fresh `add_param_group` at step 3 exactly.
    @Test func rethawedGroupStartsFreshLikeAddParamGroup() throws {
        try checkAgainstPyTorch("adamw_thaw", rule: .adamW(), weightDecay: 0.01, thawAt: 3) { optimizer, store in
            optimizer.initializeState(forNewlyTrainableGroups: 1..<3, store: store)
            for _ in 0..<4 {
                for i in store.gradients.indices { store.gradients[i] = Float(i % 7) - 3 }
                optimizer.step(store: store, groups: 1..<3, learningRates: [0, 0.1, 0.1])
            }
        }
    }

    @Test func initializeStateZerosOnlyTheNewGroupAndRestartsItsCount() throws {
        let store = makeStore()
        let optimizer = try Optimizer(rule: .adamW(), weightDecay: 0.01, store: store)
        optimizer.initializeState(forNewlyTrainableGroups: 1..<3, store: store)
        for i in store.gradients.indices { store.gradients[i] = Float(i) * 0.1 + 0.5 }
        for _ in 0..<3 { optimizer.step(store: store, groups: 1..<3, learningRates: [0, 0.01, 0.01]) }
        #expect(optimizer.stepCounts == [0, 3, 3])

        // Freeze the body for one step: its state stops being live but is still in the buffer.
        optimizer.step(store: store, groups: 2..<3, learningRates: [0, 0.01, 0.01])
        #expect(optimizer.hasState == [false, false, true])
        #expect(optimizer.stepCounts == [0, 3, 4])
        let body = store.groupRanges[TestGroup.body], head = store.groupRanges[TestGroup.head]
        #expect(slice(optimizer.firstMoment, body).allSatisfy { $0 != 0 })
        let headMoments = (slice(optimizer.firstMoment, head), slice(optimizer.secondMoment, head))

        optimizer.initializeState(forNewlyTrainableGroups: [TestGroup.body], store: store)
        #expect(optimizer.hasState == [false, true, true])
        #expect(optimizer.stepCounts == [0, 0, 4])
        #expect(slice(optimizer.firstMoment, body).allSatisfy { $0 == 0 })
        #expect(slice(optimizer.secondMoment, body).allSatisfy { $0 == 0 })
        #expect(bits(slice(optimizer.firstMoment, head)) == bits(headMoments.0))
        #expect(bits(slice(optimizer.secondMoment, head)) == bits(headMoments.1))

        // First AdamW step after the thaw: bias correction makes the step lr·g/(|g| + ε') ≈ lr·sign(g).
        let before = store.parameters(group: TestGroup.body)
        optimizer.step(store: store, groups: 1..<3, learningRates: [0, 0.01, 0.01])
        let after = store.parameters(group: TestGroup.body)
        for (p0, p1) in zip(before, after) {
            let expected = p0 * (1 - 0.01 * 0.01) - 0.01
            #expect(abs(p1 - expected) <= 1e-6, "first step after thaw moved \(p0) to \(p1), expected \(expected)")
        }
    }

    @Test func frozenRangesAreUntouchedBitForBit() throws {
        for rule in [UpdateRule.adamW(), .sgd(momentum: 0.9, nesterov: true), .sgd(momentum: 0, nesterov: false)] {
            let store = makeStore()
            let optimizer = try Optimizer(rule: rule, weightDecay: 0.1, store: store)
            let frozen = 0..<store.groupRanges[TestGroup.body].upperBound
            for i in store.parameters.indices {
                store.parameters[i] = Float(bitPattern: 0x3F80_0000 &+ UInt32(i) &* 977)
                store.gradients[i] = frozen.contains(i) && i % 5 == 0 ? .nan : Float(i) - 9
            }
            store.parameters[0] = -0.0
            store.parameters[1] = Float(bitPattern: 0x7FC0_1234)  // NaN with a payload
            let parameters = bits(Array(store.parameters[frozen]))
            let gradients = bits(Array(store.gradients))
            optimizer.initializeState(forNewlyTrainableGroups: [TestGroup.head], store: store)
            for _ in 0..<3 {
                optimizer.step(store: store, groups: 2..<3, learningRates: [1, 1, 0.01])
            }
            #expect(bits(Array(store.parameters[frozen])) == parameters, "\(rule) changed frozen parameters")
            #expect(bits(Array(store.gradients)) == gradients, "\(rule) wrote to the gradient buffer")
            for (name, buffer) in optimizer.stateBuffers {
                #expect(slice(buffer, frozen).allSatisfy { $0.bitPattern == 0 }, "\(rule) wrote \(name) of a frozen group")
            }
            #expect(store.parameters(group: TestGroup.head).allSatisfy { $0.isFinite })
            #expect(optimizer.stepCounts == [0, 0, 3])
        }
    }

    @Test func steppingAGroupWithoutStateTraps() async {
        await #expect(processExitsWith: .failure) {
            let store = makeStore()
            let optimizer = try Optimizer(rule: .adamW(), store: store)
            optimizer.initializeState(forNewlyTrainableGroups: [2], store: store)
            optimizer.step(store: store, groups: 1..<3, learningRates: [0, 0.1, 0.1])
        }
    }

    @Test func rejectsInvalidHyperparameters() {
        #expect(throws: OptimizerError.self) { try Optimizer(rule: .sgd(momentum: 0, nesterov: true), parameterCount: 4, groupCount: 1) }
        #expect(throws: OptimizerError.self) {
            try Optimizer(rule: .sgd(momentum: 0.9, nesterov: true, dampening: 0.1), parameterCount: 4, groupCount: 1)
        }
        #expect(throws: OptimizerError.self) { try Optimizer(rule: .adamW(beta1: 1), parameterCount: 4, groupCount: 1) }
        #expect(throws: OptimizerError.self) { try Optimizer(rule: .adamW(), weightDecay: -1, parameterCount: 4, groupCount: 1) }
    }

    @Test func stateBuffersAndCountsRoundTripForCheckpoints() throws {
        let store = makeStore()
        let original = try Optimizer(rule: .adamW(), weightDecay: 0.01, store: store)
        original.initializeState(forNewlyTrainableGroups: 1..<3, store: store)
        for i in store.gradients.indices { store.gradients[i] = sin(Float(i)) }
        for _ in 0..<2 { original.step(store: store, groups: 1..<3, learningRates: [0, 0.01, 0.02]) }
        #expect(original.stateBuffers.map(\.name) == ["exp_avg", "exp_avg_sq"])

        // Save, restore into a fresh optimizer over a copy of the parameters, and take one more step on both.
        let copy = makeStore()
        for i in store.parameters.indices { copy.parameters[i] = store.parameters[i]; copy.gradients[i] = store.gradients[i] }
        let restored = try Optimizer(rule: .adamW(), weightDecay: 0.01, store: copy)
        for (source, target) in zip(original.stateBuffers, restored.stateBuffers) {
            #expect(source.name == target.name)
            _ = target.values.update(fromContentsOf: source.values)
        }
        try restored.restoreGroupState(stepCounts: original.stepCounts, hasState: original.hasState)
        original.step(store: store, groups: 1..<3, learningRates: [0, 0.01, 0.02])
        restored.step(store: copy, groups: 1..<3, learningRates: [0, 0.01, 0.02])
        #expect(bits(Array(copy.parameters)) == bits(Array(store.parameters)))

        #expect(throws: OptimizerError.stateSizeMismatch(what: "step_counts", expected: 3, got: 2)) {
            try restored.restoreGroupState(stepCounts: [1, 2], hasState: [true, true, true])
        }
        #expect(throws: OptimizerError.negativeStepCount(group: 1, value: -1)) {
            try restored.restoreGroupState(stepCounts: [0, -1, 2], hasState: [false, true, true])
        }
        let sgd = try Optimizer(rule: .sgd(momentum: 0, nesterov: false), store: store)
        #expect(sgd.stateBuffers.isEmpty)
    }
}
