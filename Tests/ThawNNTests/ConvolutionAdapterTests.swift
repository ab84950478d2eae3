// LoRA on 1×1 convolutions and BitFit on a CNN: the channels-first update's gradients against
// finite differences, merging into the weight, the refusal of other convolutions, and a small CNN
// whose fixed convolution and batch-norm weights get no gradient (no resident pages) while the
// trained adapters, biases and head match finite differences of the model.
import Foundation
import Testing
import ThawKernels
import ThawNN
import ThawTesting

/// stem: 3×3 conv → BN → ReLU → 1×1 conv → BN; head: global average pooling → flatten → linear.
private func smallCNN(lora: Bool, seed: UInt64 = 4) throws -> Model {
    let groups = [
        LayerGroup("stem", [(name: "conv", layer: Conv2d(16, 64, kernelSize: 3, padding: 1)), (name: "bn", layer: BatchNorm2d(64)),
                            (name: "relu", layer: ReLU()), (name: "project", layer: Conv2d(64, 48, kernelSize: 1)),
                            (name: "project_bn", layer: BatchNorm2d(48))]),
        LayerGroup("head", [(name: "pool", layer: AdaptiveAveragePool2d(outputSize: 1)), (name: "flatten", layer: Flatten()),
                            (name: "classifier", layer: Linear(48, 3))]),
    ]
    if lora { try LowRankAdapters.attach(to: groups, settings: LowRankSettings(rank: 3, alpha: 6, dropout: 0)) { _, _ in true } }
    let placement: ParameterPlacement = lora ? .adapters(trains: LowRankAdapters.isAdapterParameter)
        : .adapters(trains: { $0.hasSuffix(".bias") })
    return try Model(groups: groups, sampleShape: [16, 4, 4], seed: seed, placement: placement)
}

@Suite struct ConvolutionAdapterTests {
    @Test(arguments: [Float(0), 0.25])
    func pointwiseLoRAGradientsMatchFiniteDifferences(dropout: Float) throws {
        let convolution = Conv2d(6, 5, kernelSize: 1)
        try convolution.attachAdapter(rank: 2, alpha: 4, dropout: dropout, seed: 7)
        let harness = LayerHarness(convolution)
        harness.setParameter("lora_B.weight", randomValues(10, seed: 13))
        #expect(harness.store.entry(named: "lora_A.weight")?.shape == [2, 6, 1, 1])
        #expect(harness.store.entry(named: "lora_B.weight")?.shape == [5, 2, 1, 1])
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 6, 3, 3], seed: 5)) {
            convolution.adapter?.dropout?.reseed(31)
        }
        #expect(Set(report.parameterErrors.keys) == ["weight", "bias", "lora_A.weight", "lora_B.weight"])
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func mergedPointwiseWeightGivesTheAdaptedForward() throws {
        let adapted = Conv2d(6, 5, kernelSize: 1)
        try adapted.attachAdapter(rank: 2, alpha: 4)
        let harness = LayerHarness(adapted)
        harness.setParameter("lora_B.weight", randomValues(10, seed: 14))
        let input = GradientCheck.randomTensor([2, 6, 3, 3], seed: 6)
        let expected = Array(adapted.forward(input, mode: .inference).buffer)
        let plain = Conv2d(6, 5, kernelSize: 1)
        let merged = LayerHarness(plain)
        let store = harness.store
        guard let weight = store.entry(named: "weight"), let bias = store.entry(named: "bias"),
              let down = store.entry(named: "lora_A.weight"), let up = store.entry(named: "lora_B.weight") else { throw ShapeError(layer: "test", shape: [], expected: "entries") }
        var folded = Array(store.parameters[weight.range])
        folded.withUnsafeMutableBufferPointer { w in
            LowRankAdapter.merge(into: w.baseAddress!, down: store.parameters.baseAddress! + down.offset, up: store.parameters.baseAddress! + up.offset,
                                 rank: 2, inputDimensions: 6, outputDimensions: 5, scale: 2)
        }
        merged.setParameter("weight", folded)
        merged.setParameter("bias", Array(store.parameters[bias.range]))
        let actual = Array(plain.forward(input, mode: .inference).buffer)
        for (a, e) in zip(actual, expected) { #expect(abs(a - e) <= 1e-5 * max(1, abs(e))) }
    }

    /// The adapter is attached after Sequential pairs the convolution with its batch norm: inference must still add it.
    @Test func inferenceWithFoldingKeepsTheAdapter() throws {
        let model = try smallCNN(lora: true)
        let up = try #require(model.store.entry(named: "stem.project.lora_B.weight"))
        for (i, value) in randomValues(up.count, seed: 16).enumerated() { model.store.parameters[up.offset + i] = value }
        let input = GradientCheck.randomTensor([2, 16, 4, 4], seed: 14)
        let folded = Array(try model.forward(input, training: false).buffer)
        model.unfoldBatchNorms()
        let unfolded = Array(try model.forward(input, training: false).buffer)
        for (a, e) in zip(folded, unfolded) { #expect(abs(a - e) <= 1e-5 * max(1, abs(e))) }
    }

    @Test func onlyPointwiseConvolutionsTakeAnAdapter() {
        for convolution in [Conv2d(4, 4, kernelSize: 3, padding: 1), Conv2d(4, 4, kernelSize: 1, stride: 2), Conv2d(4, 4, kernelSize: 1, groups: 4)] {
            #expect(throws: AdapterError.self) { try convolution.attachAdapter(rank: 2, alpha: 4) }
            #expect(!LowRankAdapters.isAdaptable(convolution))
        }
        #expect(throws: AdapterError(layer: "Conv2d(4 → 2, kernel 1×1)", reason: .rank(3, width: 2))) {
            try Conv2d(4, 2, kernelSize: 1).attachAdapter(rank: 3, alpha: 4)
        }
    }

    @Test(arguments: [true, false])
    func fixedConvolutionWeightsGetNoGradientAndTheTrainedOnesMatchFiniteDifferences(lora: Bool) throws {
        let model = try smallCNN(lora: lora)
        #expect(model.groupNames == ["backbone", "stem", "head"])
        let trained = model.store.parameterEntries.filter { $0.group == "stem" }.map(\.name)
        #expect(trained == (lora ? ["stem.project.lora_A.weight", "stem.project.lora_B.weight"]
                                 : ["stem.conv.bias", "stem.bn.bias", "stem.project.bias", "stem.project_bn.bias"]), "\(trained)")
        if lora {
            let up = try #require(model.store.entry(named: "stem.project.lora_B.weight"))
            for (i, value) in randomValues(up.count, seed: 15).enumerated() { model.store.parameters[up.offset + i] = value }
        }
        let input = GradientCheck.randomTensor([2, 16, 4, 4], seed: 12)
        let projection = GradientCheck.randomTensor([2, 3], seed: 13)
        model.store.zeroGradients(in: model.trainableRange)
        _ = try model.forward(input, training: true)
        model.backward(projection) { _ in }
        let fixed = model.store.groupRanges[0]
        #expect(residentPages(model.store.gradients, fullyInside: fixed) == 0)
        #expect(model.store.gradients[fixed].allSatisfy { $0 == 0 })
        try expectFiniteDifferences(model, group: "stem", input: input, projection: projection, samples: 6)
    }
}
