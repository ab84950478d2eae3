// Tests for Model: group layout, freeze/unfreeze semantics, and that backward
// never touches anything below the lowest trainable group.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

/// A pass-through layer that counts its backward calls, to prove frozen groups are skipped.
final class CountingLayer: Layer {
    var backwardCalls = 0
    var forwardModes: [LayerMode] = []
    func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }
    func forward(_ input: Tensor, mode: LayerMode) -> Tensor {
        forwardModes.append(mode)
        return input
    }
    func backward(_ outputGradient: Tensor, computeInputGradient: Bool) -> Tensor? {
        backwardCalls += 1
        return computeInputGradient ? outputGradient : nil
    }
}

@Suite struct ModelTests {
    func makeModel(counters: [CountingLayer]) throws -> Model {
        try Model(groups: [
            LayerGroup("stem", [(name: "count", layer: counters[0]), (name: "conv", layer: Conv2d(1, 4, kernelSize: 3, padding: 1)),
                                (name: "bn", layer: BatchNorm2d(4)), (name: "relu", layer: ReLU())]),
            LayerGroup("block1", [(name: "count", layer: counters[1]), (name: "conv", layer: Conv2d(4, 4, kernelSize: 3, stride: 2, padding: 1)),
                                  (name: "relu", layer: ReLU())]),
            LayerGroup("head", [(name: "count", layer: counters[2]), (name: "pool", layer: GlobalAveragePool()),
                                (name: "fc", layer: Linear(4, 3))]),
        ], sampleShape: [1, 6, 6], seed: 3)
    }

    @Test func layoutIsGroupOrderedAndContiguous() throws {
        let model = try makeModel(counters: [CountingLayer(), CountingLayer(), CountingLayer()])
        let ranges = model.store.groupRanges
        #expect(ranges[0].lowerBound == 0)
        #expect(ranges[0].upperBound == ranges[1].lowerBound && ranges[1].upperBound == ranges[2].lowerBound)
        #expect(ranges[2].upperBound == model.store.parameterCount)
        #expect(model.store.parameterEntries.map(\.name).first == "stem.conv.weight")
        #expect(model.store.stateEntries.map(\.name) == ["stem.bn.running_mean", "stem.bn.running_var"])
        #expect(model.outputSampleShape == [3])
    }

    @Test func freezeAndUnfreezeAreIdempotentAndMoveOneBoundary() throws {
        let model = try makeModel(counters: [CountingLayer(), CountingLayer(), CountingLayer()])
        #expect(model.trainableGroups == ["stem", "block1", "head"])
        try model.freeze(groups: ["stem"])
        try model.freeze(groups: ["stem"])
        #expect(model.trainableGroups == ["block1", "head"])
        #expect(model.trainableRange == model.store.groupRanges[1].lowerBound..<model.store.parameterCount)
        try model.freeze(groups: ["block1"])
        #expect(model.trainableRange == model.store.groupRanges[2])
        try model.unfreeze(groups: ["block1"])
        try model.unfreeze(groups: ["block1"])
        #expect(model.frozenGroups == ["stem"])
        model.freezeAll()
        #expect(model.trainableRange.isEmpty)
    }

    @Test func unknownAndNonContiguousGroupsThrowAndChangeNothing() throws {
        let model = try makeModel(counters: [CountingLayer(), CountingLayer(), CountingLayer()])
        try model.freeze(groups: ["stem", "block1"])
        #expect(throws: ModelError.unknownGroup("blok1", known: ["stem", "block1", "head"])) {
            try model.unfreeze(groups: ["blok1"])
        }
        #expect(throws: ModelError.self) { try model.unfreeze(groups: ["stem"]) }   // would leave block1 frozen between
        try model.unfreeze(groups: ["block1"])
        #expect(throws: ModelError.self) { try model.freeze(groups: ["head"]) }   // would leave block1 trainable below a frozen head
        try model.freeze(groups: ["block1"])
        #expect(model.trainableGroups == ["head"])
    }

    @Test func backwardStopsAtTheBoundaryAndLeavesFrozenGradientsUntouched() throws {
        let counters = [CountingLayer(), CountingLayer(), CountingLayer()]
        let model = try makeModel(counters: counters)
        try model.freeze(groups: ["stem"])
        // Poison every gradient; only the trainable range may change.
        model.store.gradients.update(repeating: .nan)
        model.store.zeroGradients(in: model.trainableRange)
        let input = GradientCheck.randomTensor([2, 1, 6, 6], seed: 4)
        let output = try model.forward(input, training: true)
        let upstream = GradientCheck.randomTensor(output.shape, seed: 5)
        var finished: [Int] = []
        model.backward(upstream) { finished.append($0) }
        let frozen = model.store.groupRanges[0]
        #expect(model.store.gradients[frozen].allSatisfy { $0.isNaN })
        #expect(model.store.gradients[model.trainableRange].allSatisfy { $0.isFinite })
        #expect(model.store.gradients[model.trainableRange].contains { $0 != 0 })
        #expect(counters.map(\.backwardCalls) == [0, 1, 1])
        #expect(finished == [2, 1])
        // The frozen group ran in inference mode (running statistics), the others in training mode.
        #expect(counters[0].forwardModes == [.inference])
        #expect(counters[1].forwardModes == [.training])
    }

    @Test func batchStatisticsPolicyRunsFrozenGroupsInTrainingMode() throws {
        let counters = [CountingLayer(), CountingLayer(), CountingLayer()]
        let model = try makeModel(counters: counters)
        try model.freeze(groups: ["stem"])
        model.frozenBatchNormPolicy = .batchStatistics
        _ = try model.forward(GradientCheck.randomTensor([2, 1, 6, 6], seed: 4), training: true)
        #expect(counters[0].forwardModes == [.training])
        model.backward(GradientCheck.randomTensor([2, 3], seed: 5))
        #expect(counters[0].backwardCalls == 0)
    }

    @Test func wholeModelGradientMatchesFiniteDifferences() throws {
        let counters = [CountingLayer(), CountingLayer(), CountingLayer()]
        let model = try makeModel(counters: counters)
        let input = GradientCheck.randomTensor([2, 1, 6, 6], seed: 8)
        let projection = GradientCheck.randomTensor([2, 3], seed: 9)
        func loss() throws -> Double {
            let out = try model.forward(input, training: true)
            return zip(out.values, projection.values).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        model.store.zeroGradients(in: 0..<model.store.parameterCount)
        _ = try loss()
        model.backward(projection)
        let analytic = Array(model.store.gradients)
        for index in stride(from: 0, to: model.store.parameterCount, by: 7) {
            let saved = model.store.parameters[index]
            model.store.parameters[index] = saved + 1e-2
            let plus = try loss()
            model.store.parameters[index] = saved - 1e-2
            let minus = try loss()
            model.store.parameters[index] = saved
            let numeric = (plus - minus) / 2e-2
            #expect(abs(numeric - Double(analytic[index])) < 2e-2 * max(1, abs(numeric)), "parameter \(index)")
        }
    }

    @Test func rejectsWrongInputShape() throws {
        let model = try makeModel(counters: [CountingLayer(), CountingLayer(), CountingLayer()])
        #expect(throws: ShapeError.self) { try model.forward(Tensor(shape: [2, 3, 6, 6]), training: false) }
    }

    @Test func duplicateGroupNamesAreRejected() {
        #expect(throws: ModelError.duplicateGroup("a")) {
            try Model(groups: [LayerGroup("a", [Linear(2, 2)]), LayerGroup("a", [Linear(2, 2)])], sampleShape: [2])
        }
    }
}
