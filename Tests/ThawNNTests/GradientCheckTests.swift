// Tests of the oracle itself: the finite-difference check must flag a wrong backward.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

/// Scales by 2 in forward but claims a gradient of 3: a deliberately wrong layer.
final class WrongScale: Layer {
    let output = Tensor(shape: [0])
    let inputGradient = Tensor(shape: [0])
    func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }
    func forward(_ input: Tensor, mode: LayerMode) -> Tensor {
        output.resize(to: input.shape)
        for i in 0..<input.count { output.data[i] = 2 * input.data[i] }
        return output
    }
    func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        inputGradient.resize(to: dY.shape)
        for i in 0..<dY.count { inputGradient.data[i] = 3 * dY.data[i] }
        return inputGradient
    }
}

@Suite struct GradientCheckTests {
    @Test func flagsAWrongBackward() {
        let report = GradientCheck.run(LayerHarness(WrongScale()), input: GradientCheck.randomTensor([2, 3], seed: 1))
        #expect((report.inputError ?? 0) > 0.3)
    }
}
