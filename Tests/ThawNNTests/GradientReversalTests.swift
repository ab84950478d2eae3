// Tests for GradientReversal and DomainAdversarialHead: the DANN λ schedule, the reversed gradient
// against finite differences of the (identity) forward pass with the sign flipped, and the head's
// gradients against finite differences, branch by branch.
import Foundation
import Testing
import ThawKernels
import ThawNN
import ThawTesting

/// d(Σ y·r)/dx by central differences of `layer`'s forward pass, in Double.
private func numericInputGradient(_ layer: any Layer, input: Tensor, projection: [Float], epsilon: Float = 1e-3) -> [Double] {
    func loss() -> Double {
        let y = layer.forward(input, mode: .training)
        var sum = 0.0
        for i in 0..<y.count { sum += Double(y.data[i]) * Double(projection[i]) }
        return sum
    }
    var gradient = [Double](repeating: 0, count: input.count)
    for i in 0..<input.count {
        let saved = input.data[i]
        input.data[i] = saved + epsilon
        let plus = loss()
        input.data[i] = saved - epsilon
        let minus = loss()
        input.data[i] = saved
        gradient[i] = (plus - minus) / (2 * Double(epsilon))
    }
    return gradient
}

/// max |a − b| / max(1e-3, max |b|).
private func relativeDifference(_ a: [Double], _ b: [Double]) -> Double {
    let scale = max(1e-3, b.map(abs).max() ?? 0)
    return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

@Suite struct GradientReversalTests {
    @Test func scheduleFollowsTheDANNFormula() {
        let schedule = ReversalSchedule(gamma: 10, maximum: 1)
        #expect(schedule.coefficient(progress: 0) == 0)
        // 2 / (1 + e^−5) − 1 and 2 / (1 + e^−10) − 1, by hand.
        #expect(abs(schedule.coefficient(progress: 0.5) - 0.986614298) < 1e-8)
        #expect(abs(schedule.coefficient(progress: 1) - 0.999909204) < 1e-8)
        #expect(abs(ReversalSchedule(gamma: 10, maximum: 0.3).coefficient(progress: 0.1) - 0.3 * 0.462117157) < 1e-8)
        let values = stride(from: 0.0, through: 1.0, by: 0.05).map { schedule.coefficient(progress: $0) }
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 }, "λ must rise with progress: \(values)")
        #expect(schedule.coefficient(progress: 2) == schedule.coefficient(progress: 1), "progress is clamped to [0, 1]")
    }

    @Test func progressSetsTheCoefficient() {
        let layer = GradientReversal(schedule: ReversalSchedule(gamma: 10, maximum: 1))
        #expect(layer.coefficient == 0)
        layer.setTrainingProgress(0.5)
        #expect(abs(layer.coefficient - 0.98661) < 1e-5)
    }

    /// Forward is the identity; backward is −λ times the finite-difference gradient of that identity.
    @Test(arguments: [Float(0.35), 1, 2.5])
    func backwardIsTheFiniteDifferenceGradientReversed(lambda: Float) throws {
        let layer = GradientReversal()
        layer.setCoefficient(lambda)
        let input = GradientCheck.randomTensor([3, 4], seed: 11)
        let y = layer.forward(input, mode: .training)
        #expect(y.values == input.values)
        let projection = GradientCheck.randomTensor([3, 4], seed: 12)
        let numeric = numericInputGradient(layer, input: input, projection: projection.values)
        let analytic = try #require(layer.backward(projection, computeInputGradient: true)).values.map(Double.init)
        let reversed = numeric.map { -Double(lambda) * $0 }
        #expect(relativeDifference(analytic, reversed) < 1e-3, "analytic \(analytic) vs −λ·numeric \(reversed)")
        #expect(layer.backward(projection, computeInputGradient: false) == nil)
    }

    private func head(classes: Int = 3, features: Int = 6) -> DomainAdversarialHead {
        let label = Sequential([(name: "fc1", layer: Linear(features, 5)), (name: "relu", layer: ReLU()), (name: "fc2", layer: Linear(5, classes))])
        return DomainAdversarialHead(labelBranch: label, labelOutputs: classes, features: features, domainHidden: 4,
                                     schedule: ReversalSchedule())
    }

    @Test func headWritesLabelThenDomainColumns() throws {
        let layer = head()
        let harness = LayerHarness(layer, seed: 3)
        #expect(try layer.outputShape(for: [5, 6]) == [5, 5])
        #expect(harness.store.parameterEntries.map(\.name) == [
            "label.fc1.weight", "label.fc1.bias", "label.fc2.weight", "label.fc2.bias",
            "domain.fc1.weight", "domain.fc1.bias", "domain.fc2.weight", "domain.fc2.bias",
        ])
        let input = GradientCheck.randomTensor([5, 6], seed: 4)
        let output = layer.forward(input, mode: .inference).values
        let labels = layer.labelBranch.forward(input, mode: .inference).values
        let domains = layer.domainBranch.forward(input, mode: .inference).values
        for row in 0..<5 {
            #expect(Array(output[(row * 5)..<(row * 5 + 3)]) == Array(labels[(row * 3)..<(row * 3 + 3)]))
            #expect(Array(output[(row * 5 + 3)..<(row * 5 + 5)]) == Array(domains[(row * 2)..<(row * 2 + 2)]))
        }
        #expect(throws: ShapeError.self) { try layer.outputShape(for: [5, 7]) }
    }

    /// With λ = −1 the reversal is the identity, so the whole head is an ordinary function and every
    /// gradient (input and parameters of both branches) must match finite differences.
    @Test func headGradientsMatchFiniteDifferencesWithoutReversal() {
        let layer = head()
        layer.reversal.setCoefficient(-1)
        // A small step keeps the probes off the ReLU kinks (PyTorch-style tolerance otherwise).
        let report = GradientCheck.run(LayerHarness(layer, seed: 5), input: GradientCheck.randomTensor([4, 6], seed: 6), epsilon: 1e-3)
        #expect(report.worst < 1e-2, "\(report)")
    }

    /// With λ > 0 the parameters of both branches still get their ordinary gradients (the domain
    /// classifier learns to classify domains), and the input gradient is label part − λ · domain part.
    @Test func headReversesOnlyTheDomainGradientReachingTheFeatures() throws {
        let layer = head()
        let lambda: Float = 0.7
        layer.reversal.setCoefficient(lambda)
        let harness = LayerHarness(layer, seed: 5)
        let input = GradientCheck.randomTensor([4, 6], seed: 6)
        let parameters = GradientCheck.run(harness, input: input, epsilon: 1e-3, checkInput: false)
        #expect(parameters.worst < 1e-2, "\(parameters)")

        let projection = GradientCheck.randomTensor([4, 5], seed: 9).values
        let labelOnly = projection.enumerated().map { $0.offset % 5 < 3 ? $0.element : 0 }
        let domainOnly = projection.enumerated().map { $0.offset % 5 >= 3 ? $0.element : 0 }
        let numericLabel = numericInputGradient(layer, input: input, projection: labelOnly)
        let numericDomain = numericInputGradient(layer, input: input, projection: domainOnly)
        _ = layer.forward(input, mode: .training)
        let analytic = try #require(layer.backward(Tensor(shape: [4, 5], values: projection), computeInputGradient: true)).values
        let expected = zip(numericLabel, numericDomain).map { $0 - Double(lambda) * $1 }
        #expect(relativeDifference(analytic.map(Double.init), expected) < 1e-2)
        // And it is not the unreversed gradient.
        let unreversed = zip(numericLabel, numericDomain).map { $0 + $1 }
        #expect(relativeDifference(analytic.map(Double.init), unreversed) > 0.05)
    }

    @Test func headSkipsInputGradientWhenNotAsked() {
        let layer = head()
        let harness = LayerHarness(layer, seed: 1)   // owns the parameters the layer is bound to: keep it alive
        withExtendedLifetime(harness) {
            let input = GradientCheck.randomTensor([2, 6], seed: 2)
            _ = layer.forward(input, mode: .training)
            #expect(layer.backward(GradientCheck.randomTensor([2, 5], seed: 3), computeInputGradient: false) == nil)
        }
    }
}
