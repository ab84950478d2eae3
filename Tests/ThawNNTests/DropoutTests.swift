// Tests for Dropout: inverted scaling, inference identity, reproducible masks, gradients.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct DropoutTests {
    @Test func dropsAboutPAndScalesTheRest() {
        let dropout = Dropout(probability: 0.3, seed: 42)
        let x = Tensor(shape: [10, 1000])
        x.fill(2)
        let y = dropout.forward(x, mode: .training).values
        let dropped = y.filter { $0 == 0 }.count
        #expect(abs(Double(dropped) / Double(y.count) - 0.3) < 0.02)
        #expect(y.allSatisfy { $0 == 0 || abs($0 - 2 / 0.7) < 1e-6 })
    }

    @Test func inferenceIsTheIdentity() {
        let dropout = Dropout(probability: 0.9)
        let x = GradientCheck.randomTensor([3, 7], seed: 1)
        #expect(dropout.forward(x, mode: .inference).values == x.values)
    }

    @Test func reseedReproducesMasks() {
        let dropout = Dropout(probability: 0.5)
        let x = GradientCheck.randomTensor([4, 50], seed: 2)
        dropout.reseed(SplitMix64.mix(7, 1, 100))
        let first = dropout.forward(x, mode: .training).values
        let next = dropout.forward(x, mode: .training).values
        dropout.reseed(SplitMix64.mix(7, 1, 100))
        let again = dropout.forward(x, mode: .training).values
        dropout.reseed(SplitMix64.mix(7, 2, 100))
        let otherRank = dropout.forward(x, mode: .training).values
        #expect(first == again)
        #expect(first != next)
        #expect(first != otherRank)
    }

    @Test func extremesAndGradient() throws {
        let x = GradientCheck.randomTensor([2, 8], seed: 3)
        #expect(Dropout(probability: 0).forward(x, mode: .training).values == x.values)
        #expect(Dropout(probability: 1).forward(x, mode: .training).values.allSatisfy { $0 == 0 })

        let dropout = Dropout(probability: 0.4)
        let report = GradientCheck.run(LayerHarness(dropout), input: GradientCheck.randomTensor([3, 4, 5], seed: 4),
                                       beforeForward: { dropout.reseed(99) })
        #expect(report.worst < 1e-3, "\(report)")
        // The gradient is exactly the mask: zero where dropped, 1/(1-p) where kept.
        dropout.reseed(5)
        let y = dropout.forward(x, mode: .training)
        let ones = Tensor(shape: x.shape)
        ones.fill(1)
        let dx = try #require(dropout.backward(ones, computeInputGradient: true))
        for i in 0..<x.count { #expect(abs(dx.data[i] - (y.data[i] == 0 ? 0 : 1 / 0.6)) < 1e-6) }
    }
}
