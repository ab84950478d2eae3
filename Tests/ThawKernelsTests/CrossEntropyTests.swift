// Tests for the fused softmax cross-entropy: finite differences, padding and smoothing.
import Testing
import ThawKernels
import ThawTesting

@Suite struct CrossEntropyTests {
    /// The normalized loss for given logits, computed by the kernel without gradient.
    func loss(_ logits: [Float], labels: [Int32], weights: [Float], classes: Int, smoothing: Float, normalizer: Float) -> Double {
        CrossEntropy.forwardBackward(logitsGradient: nil, logits: logits, labels: labels, weights: weights,
                                     rows: labels.count, classes: classes, labelSmoothing: smoothing, normalizer: normalizer).lossSum / Double(normalizer)
    }

    @Test(arguments: [Float(0), 0.1])
    func gradientMatchesFiniteDifferences(smoothing: Float) {
        let classes = 5
        var logits = GradientCheck.randomTensor([3, classes], seed: 11).values.map { $0 * 3 }
        let labels: [Int32] = [2, 0, 4]
        let weights: [Float] = [1, 1, 0]
        var gradient = [Float](repeating: 9, count: logits.count)
        _ = CrossEntropy.forwardBackward(logitsGradient: &gradient, logits: logits, labels: labels, weights: weights,
                                         rows: 3, classes: classes, labelSmoothing: smoothing, normalizer: 2)
        for i in logits.indices {
            let saved = logits[i]
            logits[i] = saved + 1e-2
            let plus = loss(logits, labels: labels, weights: weights, classes: classes, smoothing: smoothing, normalizer: 2)
            logits[i] = saved - 1e-2
            let minus = loss(logits, labels: labels, weights: weights, classes: classes, smoothing: smoothing, normalizer: 2)
            logits[i] = saved
            #expect(abs((plus - minus) / 2e-2 - Double(gradient[i])) < 1e-3, "entry \(i)")
        }
        // The padded row contributes exactly nothing.
        #expect(gradient[10..<15].allSatisfy { $0 == 0 })
    }

    @Test func paddingDoesNotCount() {
        let logits: [Float] = [2, 1, 0, 0, 5, 0]
        let result = CrossEntropy.forwardBackward(logitsGradient: nil, logits: logits, labels: [0, 2], weights: [1, 0],
                                                  rows: 2, classes: 3, normalizer: 1)
        #expect(result.weightSum == 1)
        #expect(result.correct == 1)
        let expected = -log(exp(2.0) / (exp(2.0) + exp(1.0) + exp(0.0)))
        #expect(abs(result.lossSum - expected) < 1e-6)
    }

    @Test func smoothingMatchesClosedForm() {
        // Uniform logits: loss is log K whatever the smoothing.
        let result = CrossEntropy.forwardBackward(logitsGradient: nil, logits: [0, 0, 0, 0], labels: [1], weights: [1],
                                                  rows: 1, classes: 4, labelSmoothing: 0.3, normalizer: 1)
        #expect(abs(result.lossSum - log(4.0)) < 1e-6)
    }
}

#if canImport(Glibc)
import Glibc
#endif
