// Batch norm folded into the convolution before it in inference mode: the same outputs as running
// the two layers apart, on MobileNetV2 (depthwise, pointwise, strided) and ResNet-18/50 shapes
// with non-trivial running statistics; training mode never folds; the parameters stay untouched;
// the fold API pairs every convolution of MobileNetV2 with its batch norm, and unfolds them.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct BatchNormFoldingTests {
    /// A model whose batch-norm weights, biases and running statistics are far from their defaults.
    static func perturbed(_ groups: [LayerGroup], sampleShape: [Int]) throws -> Model {
        let model = try Model(groups: groups, sampleShape: sampleShape, seed: 5)
        var generator = SplitMix64(seed: 17)
        func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * Float(generator.next() >> 40) / Float(1 << 24) }
        for entry in model.store.stateEntries {
            for i in entry.range {
                model.store.state[i] = entry.name.hasSuffix("running_var") ? uniform(0.2, 3) : uniform(-0.8, 0.8)
            }
        }
        for entry in model.store.parameterEntries where entry.shape.count == 1 {
            for i in entry.range { model.store.parameters[i] = uniform(0.5, 1.5) * (entry.name.hasSuffix("bias") ? 0.3 : 1) }
        }
        return model
    }

    static func outputs(_ model: Model, input: Tensor, folding: Bool, training: Bool = false) -> [Float] {
        if folding { model.foldBatchNormsForInference() } else { model.unfoldBatchNorms() }
        let output = training ? model.forward(input, fromGroup: 0, training: true) : model.forward(input, fromGroup: 0, training: false)
        return Array(UnsafeBufferPointer(start: output.data, count: output.count))
    }

    static func input(_ shape: [Int]) -> Tensor {
        var generator = SplitMix64(seed: 3)
        let tensor = Tensor(shape: shape)
        for i in 0..<tensor.count { tensor.data[i] = Float(generator.next() >> 40) / Float(1 << 24) * 2 - 1 }
        return tensor
    }

    @Test(arguments: ["mobilenet_v2", "resnet18", "resnet50"])
    func foldedInferenceMatchesUnfolded(architecture: String) throws {
        let groups = architecture == "mobilenet_v2" ? MobileNetV2.groups(classes: 10)
            : ResNet.groups(architecture == "resnet18" ? .resnet18 : .resnet50, classes: 10)
        let model = try Self.perturbed(groups, sampleShape: [3, 32, 32])
        let parameters = Array(model.store.parameters), state = Array(model.store.state)
        let x = Self.input([2, 3, 32, 32])
        let folded = Self.outputs(model, input: x, folding: true)
        let unfolded = Self.outputs(model, input: x, folding: false)
        let error = relativeError(folded, unfolded)
        #expect(error < 1e-5, "\(architecture): folded vs unfolded inference differ by \(error)")
        #expect(folded != unfolded || error == 0, "the folded path must actually run")
        #expect(Array(model.store.parameters) == parameters && Array(model.store.state) == state, "folding must not touch the parameters")
    }

    @Test func trainingModeNeverFolds() throws {
        let model = try Self.perturbed(MobileNetV2.groups(classes: 10, dropout: 0), sampleShape: [3, 32, 32])
        let state = Array(model.store.state)
        let x = Self.input([4, 3, 32, 32])
        let folded = Self.outputs(model, input: x, folding: true, training: true)
        model.store.state.update(fromContentsOf: state)   // training updated the running statistics
        let unfolded = Self.outputs(model, input: x, folding: false, training: true)
        #expect(folded == unfolded)
    }

    /// Every convolution of MobileNetV2 is followed by its batch norm, and inference folds each pair;
    /// `unfoldBatchNorms` leaves none folded and `foldBatchNormsForInference` pairs them all again.
    @Test func foldPairsEveryConvolutionWithItsBatchNorm() throws {
        let model = try Model(groups: MobileNetV2.groups(classes: 10), sampleShape: [3, 32, 32])
        func folded() -> Int { model.allLayers.compactMap { $0 as? Sequential }.reduce(0) { $0 + $1.foldedBatchNormCount } }
        let convolutions = model.allLayers.filter { $0 is Conv2d }.count
        #expect(convolutions == 52 && folded() == convolutions)
        model.unfoldBatchNorms()
        #expect(folded() == 0)
        model.foldBatchNormsForInference()
        #expect(folded() == convolutions)
    }
}
