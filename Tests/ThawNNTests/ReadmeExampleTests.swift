// The library example from README.md, kept compiling and checked here.
import Testing
import ThawKernels
import ThawNN

@Suite struct ReadmeExampleTests {
    @Test func libraryExampleRunsAndTrainsOnlyTheHead() throws {
        let model = try Model(groups: [
            LayerGroup("features", [(name: "conv", layer: Conv2d(1, 8, kernelSize: 3, padding: 1)), (name: "relu", layer: ReLU())]),
            LayerGroup("head", [(name: "pool", layer: GlobalAveragePool()), (name: "fc", layer: Linear(8, 10))]),
        ], sampleShape: [1, 28, 28], seed: 1)
        try model.freeze(groups: ["features"])
        let logits = try model.forward(Tensor(shape: [4, 1, 28, 28]), training: true)
        #expect(logits.shape == [4, 10])
        let dLogits = Tensor(shape: logits.shape)
        dLogits.fill(0.1)
        model.backward(dLogits)
        #expect(model.trainableRange == model.store.groupRanges[1])
        #expect(model.store.gradients[model.store.groupRanges[0]].allSatisfy { $0 == 0 })
        #expect(model.store.gradients[model.store.groupRanges[1]].contains { $0 != 0 })
    }
}
