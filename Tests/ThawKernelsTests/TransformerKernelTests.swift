// Tests for the transformer kernels on raw buffers: GELU values and derivative, LayerNorm
// normalization and input gradient, embedding id validation, attention on hand-checkable
// inputs (uniform attention, padding, dropout), and masked mean pooling.
import Testing
import ThawKernels
import ThawTesting

/// Central difference of a scalar function of one buffer entry, in Double.
private func numericDerivative(_ values: inout [Float], _ index: Int, epsilon: Float = 1e-3, _ f: ([Float]) -> Double) -> Double {
    let saved = values[index]
    values[index] = saved + epsilon
    let plus = f(values)
    values[index] = saved - epsilon
    let minus = f(values)
    values[index] = saved
    return (plus - minus) / (2 * Double(epsilon))
}

@Suite struct GELUKernelTests {
    @Test func derivativeMatchesFiniteDifferences() {
        var x: [Float] = [-4, -2, -1, -0.3, 0, 0.2, 0.7, 1.5, 3, 5]
        let ones = [Float](repeating: 1, count: x.count)
        var derivative = [Float](repeating: 0, count: x.count)
        GELUKernel.backward(dInput: &derivative, dOutput: ones, input: x, count: x.count)
        for i in x.indices {
            let numeric = numericDerivative(&x, i) { values in
                var y = [Float](repeating: 0, count: values.count)
                GELUKernel.forward(output: &y, input: values, count: values.count)
                return Double(y[i])
            }
            #expect(abs(numeric - Double(derivative[i])) < 1e-3, "x = \(x[i])")
        }
    }

    @Test func isNotTheTanhApproximation() {
        // Exact GELU(1.5) = 1.3997892 (PyTorch, float64); the tanh form gives 1.3995716.
        var y: Float = 0
        GELUKernel.forward(output: &y, input: [1.5], count: 1)
        #expect(abs(y - 1.399_789_2) < 1e-6)
    }
}

@Suite struct LayerNormKernelTests {
    @Test func inputGradientMatchesFiniteDifferences() {
        let (rows, width) = (2, 6)
        var x = GradientCheck.randomTensor([rows, width], seed: 81).values
        let weight = GradientCheck.randomTensor([width], seed: 82).values
        let bias = GradientCheck.randomTensor([width], seed: 83).values
        let upstream = GradientCheck.randomTensor([rows, width], seed: 84).values
        func loss(_ input: [Float]) -> Double {
            var y = [Float](repeating: 0, count: rows * width)
            LayerNormKernel.forward(output: &y, mean: nil, reciprocalStandardDeviation: nil, input: input,
                                    weight: weight, bias: bias, rows: rows, dimension: width, epsilon: 1e-12)
            return zip(y, upstream).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var y = [Float](repeating: 0, count: rows * width)
        var mean = [Float](repeating: 0, count: rows)
        var inverseStd = [Float](repeating: 0, count: rows)
        LayerNormKernel.forward(output: &y, mean: &mean, reciprocalStandardDeviation: &inverseStd, input: x,
                                weight: weight, bias: bias, rows: rows, dimension: width, epsilon: 1e-12)
        var dX = [Float](repeating: 0, count: rows * width)
        var dWeight = [Float](repeating: 0, count: width)
        var dBias = [Float](repeating: 0, count: width)
        LayerNormKernel.backward(dInput: &dX, dWeight: &dWeight, dBias: &dBias, dOutput: upstream, input: x, weight: weight,
                                 mean: mean, reciprocalStandardDeviation: inverseStd, rows: rows, dimension: width)
        for i in x.indices {
            #expect(abs(numericDerivative(&x, i, loss) - Double(dX[i])) < 2e-3, "entry \(i)")
        }
        // The bias gradient is the column sum of the upstream gradient.
        #expect(abs(dBias[0] - (upstream[0] + upstream[width])) < 1e-6)
    }
}

@Suite struct EmbeddingKernelTests {
    @Test func findsTheFirstInvalidId() {
        #expect(EmbeddingKernel.firstInvalidIndex(ids: [0, 4, 2], count: 3, vocabularySize: 5) == nil)
        #expect(EmbeddingKernel.firstInvalidIndex(ids: [0, 5, 9], count: 3, vocabularySize: 5) == 1)
        #expect(EmbeddingKernel.firstInvalidIndex(ids: [0, 1, -1], count: 3, vocabularySize: 5) == 2)
        #expect(EmbeddingKernel.firstInvalidIndex(ids: [0.5], count: 1, vocabularySize: 5) == 0)
        #expect(EmbeddingKernel.firstInvalidIndex(ids: [.nan], count: 1, vocabularySize: 5) == 0)
        #expect(EmbeddingKernel.firstInvalidIndex(ids: [.infinity], count: 1, vocabularySize: 5) == 0)
    }
}

@Suite struct AttentionKernelTests {
    /// Runs one sequence of 3 tokens, 1 head of size 2, with zero queries: attention is uniform over real keys.
    func uniformContext(mask: [Float]?) -> (context: [Float], probabilities: [Float]) {
        let query = [Float](repeating: 0, count: 6)
        let key = GradientCheck.randomTensor([3, 2], seed: 91).values
        let value: [Float] = [1, 10, 2, 20, 6, 60]
        var context = [Float](repeating: 0, count: 6)
        var probabilities = [Float](repeating: 0, count: 9)
        var scratch = [Float](repeating: 0, count: AttentionKernel.scratchCount(sequenceLength: 3))
        AttentionKernel.forward(context: &context, probabilities: &probabilities, scratch: &scratch,
                                query: query, key: key, value: value, keyMask: mask, dropoutMask: nil,
                                batch: 1, sequenceLength: 3, headCount: 1, headSize: 2)
        return (context, probabilities)
    }

    @Test func zeroQueriesAverageTheRealValues() {
        let all = uniformContext(mask: nil)
        #expect(relativeError(all.context, [3, 30, 3, 30, 3, 30]) < 1e-6)
        let padded = uniformContext(mask: [1, 1, 0])
        #expect(relativeError(padded.context, [1.5, 15, 1.5, 15, 1.5, 15]) < 1e-6)
        #expect(padded.probabilities[2] == 0 && padded.probabilities[5] == 0 && padded.probabilities[8] == 0)
    }

    @Test func allPaddingRowStaysFinite() {
        let result = uniformContext(mask: [0, 0, 0])
        #expect(result.context.allSatisfy { $0.isFinite })
        #expect(relativeError(result.context, [3, 30, 3, 30, 3, 30]) < 1e-6)
    }

    @Test func dropoutMaskScalesProbabilities() {
        // Two tokens, zero queries: P = ½ everywhere; keep only key 1, scaled by 2.
        var context = [Float](repeating: 0, count: 2)
        var scratch = [Float](repeating: 0, count: AttentionKernel.scratchCount(sequenceLength: 2))
        AttentionKernel.forward(context: &context, probabilities: nil, scratch: &scratch,
                                query: [0, 0], key: [0.3, -0.7], value: [4, 8], keyMask: nil, dropoutMask: [0, 2, 0, 2],
                                batch: 1, sequenceLength: 2, headCount: 1, headSize: 1)
        #expect(context == [8, 8])
    }
}

@Suite struct SequencePoolingKernelTests {
    @Test func meanIgnoresPaddingAndBackwardSpreadsEvenly() {
        var pooled = [Float](repeating: 0, count: 2)
        SequencePoolingKernel.meanForward(output: &pooled, input: [2, 4, 100, 1, 3, 5], mask: [1, 1, 0, 1, 1, 1],
                                          batch: 2, sequenceLength: 3, dimension: 1)
        #expect(pooled == [3, 3])
        var dX = [Float](repeating: 9, count: 6)
        SequencePoolingKernel.meanBackward(dInput: &dX, dOutput: [2, 3], mask: [1, 1, 0, 1, 1, 1],
                                           batch: 2, sequenceLength: 3, dimension: 1)
        #expect(dX == [1, 1, 0, 1, 1, 1])
    }
}
