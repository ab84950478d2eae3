// Tests for ReLU and ReLU6: values, gradients away from the kinks, skipped input gradients.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct ActivationTests {
    /// Values in [-1.5, 7.5] at least 0.1 away from the kinks at 0 and 6 (the step is 0.01).
    func kinkFreeInput(_ shape: [Int], seed: UInt64) -> Tensor {
        let t = GradientCheck.randomTensor(shape, seed: seed)
        for i in 0..<t.count {
            var v = t.data[i] * 4.5 + 3
            if abs(v) < 0.1 { v = v < 0 ? -0.1 : 0.1 }
            if abs(v - 6) < 0.1 { v = v < 6 ? 5.9 : 6.1 }
            t.data[i] = v
        }
        return t
    }

    @Test func reluValuesAndGradients() {
        let relu = ReLU()
        #expect(relu.forward(Tensor(shape: [1, 4], values: [-2, 0, 0.5, 9]), mode: .inference).values == [0, 0, 0.5, 9])
        let report = GradientCheck.run(LayerHarness(ReLU()), input: kinkFreeInput([2, 3, 4, 4], seed: 1), maxEntriesPerTensor: 96)
        #expect(report.worst < 1e-3, "\(report)")
    }

    @Test func relu6ValuesAndGradients() {
        let relu6 = ReLU6()
        #expect(relu6.forward(Tensor(shape: [1, 5], values: [-2, 0, 0.5, 6, 9]), mode: .inference).values == [0, 0, 0.5, 6, 6])
        let report = GradientCheck.run(LayerHarness(ReLU6()), input: kinkFreeInput([2, 3, 4, 4], seed: 2), maxEntriesPerTensor: 96)
        #expect(report.worst < 1e-3, "\(report)")
    }

    @Test func gradientIsZeroAtTheKinksLikePyTorch() throws {
        let x = Tensor(shape: [1, 4], values: [0, 6, 3, -1])
        let dy = Tensor(shape: [1, 4], values: [1, 1, 1, 1])
        let relu = ReLU()
        _ = relu.forward(x, mode: .training)
        #expect(try #require(relu.backward(dy, computeInputGradient: true)).values == [0, 1, 1, 0])
        let relu6 = ReLU6()
        _ = relu6.forward(x, mode: .training)
        #expect(try #require(relu6.backward(dy, computeInputGradient: true)).values == [0, 0, 1, 0])
        #expect(relu6.backward(dy, computeInputGradient: false) == nil)
    }
}
