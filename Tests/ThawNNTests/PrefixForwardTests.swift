// Running the frozen prefix on its own (inference mode) and then the trainable groups from the
// boundary gives exactly the training forward of the whole model, for every boundary of the
// pretrained-style backbones: what the frozen-prefix cache relies on.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct PrefixForwardTests {
    @Test(arguments: ["mobilenet_v2", "resnet18"])
    func prefixThenSuffixEqualsTheWholeTrainingForward(architecture: String) throws {
        let groups = { architecture == "mobilenet_v2" ? MobileNetV2.groups(classes: 10, dropout: 0) : ResNet.groups(.resnet18, classes: 10) }
        let model = try BatchNormFoldingTests.perturbed(groups(), sampleShape: [3, 32, 32])
        let x = BatchNormFoldingTests.input([4, 3, 32, 32])
        for boundary in 1..<model.groups.count {
            try model.setTrainableGroups(Array(model.groupNames[boundary...]))
            let state = Array(model.store.state)
            let whole = model.forward(x, fromGroup: 0, training: true)
            let expected = Array(UnsafeBufferPointer(start: whole.data, count: whole.count))
            let seed = Tensor(shape: whole.shape, values: (0..<whole.count).map { Float($0 % 7) - 3 })
            model.store.zeroGradients(in: 0..<model.store.parameterCount)
            model.backward(seed)
            let expectedGradients = Array(model.store.gradients)
            model.store.state.update(fromContentsOf: state)
            let features = model.forward(x, groups: 0..<boundary, training: false)
            let copy = Tensor(shape: features.shape, values: Array(UnsafeBufferPointer(start: features.data, count: features.count)))
            let split = model.forward(copy, fromGroup: boundary, training: true)
            let actual = Array(UnsafeBufferPointer(start: split.data, count: split.count))
            model.store.zeroGradients(in: 0..<model.store.parameterCount)
            model.backward(seed)
            let gradientError = relativeError(Array(model.store.gradients), expectedGradients)
            #expect(gradientError < 1e-5, "\(architecture), boundary \(model.groupNames[boundary]): gradients \(gradientError)")
            model.store.state.update(fromContentsOf: state)
            #expect(relativeError(actual, expected) < 1e-5, "\(architecture), boundary \(model.groupNames[boundary]): \(relativeError(actual, expected))")
        }
    }
}
