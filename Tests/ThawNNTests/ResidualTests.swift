// Tests for Residual: identity and projection shortcuts (gradients, values), the activation after
// the sum (ResNet's ReLU), torchvision-style parameter names, and shape errors.
import Testing
import ThawKernels
import ThawNN
import ThawTesting

@Suite struct ResidualTests {
    /// A BasicBlock body; the ReLU is optional because finite differences dislike its kink.
    func basicBody(_ inputChannels: Int, _ channels: Int, stride: Int, relu: Bool) -> Sequential {
        var layers: [(name: String, layer: any Layer)] = [
            ("conv1", Conv2d(inputChannels, channels, kernelSize: 3, stride: Size2D(stride), padding: 1, bias: false)),
            ("bn1", BatchNorm2d(channels)),
        ]
        if relu { layers.append(("relu", ReLU())) }
        layers += [("conv2", Conv2d(channels, channels, kernelSize: 3, padding: 1, bias: false)), ("bn2", BatchNorm2d(channels))]
        return Sequential(layers)
    }

    func downsample(_ inputChannels: Int, _ channels: Int, stride: Int) -> Sequential {
        Sequential([Conv2d(inputChannels, channels, kernelSize: 1, stride: Size2D(stride), bias: false), BatchNorm2d(channels)])
    }

    @Test func identityShortcutGradients() {
        let block = Residual(body: basicBody(3, 3, stride: 1, relu: false))
        let report = GradientCheck.run(LayerHarness(block), input: GradientCheck.randomTensor([2, 3, 4, 4], seed: 21), epsilon: 3e-3, maxEntriesPerTensor: 48)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func projectionShortcutGradients() {
        let block = Residual(body: basicBody(2, 4, stride: 2, relu: false), shortcut: downsample(2, 4, stride: 2))
        let report = GradientCheck.run(LayerHarness(block), input: GradientCheck.randomTensor([2, 2, 5, 5], seed: 22), epsilon: 3e-3, maxEntriesPerTensor: 48)
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func outputIsBodyPlusShortcut() throws {
        let body = Sequential([("scale", Conv2d(2, 2, kernelSize: 1, bias: false))])
        let block = Residual(body: body)
        let harness = LayerHarness(block)
        harness.setParameter("scale.weight", [2, 0, 0, 3])
        let x = Tensor(shape: [1, 2, 1, 2], values: [1, 2, 3, 4])
        #expect(block.forward(x, mode: .training).values == [3, 6, 12, 16])
        let dx = try #require(block.backward(Tensor(shape: [1, 2, 1, 2], values: [1, 1, 1, 1]), computeInputGradient: true))
        #expect(dx.values == [3, 3, 4, 4])
        _ = block.forward(x, mode: .training)
        #expect(block.backward(Tensor(shape: [1, 2, 1, 2], values: [1, 1, 1, 1]), computeInputGradient: false) == nil)
    }

    @Test func activationAfterTheSumGradients() {
        // A ReLU after the sum, with and without a strided projection shortcut. The seeds give no
        // sum within the finite-difference step of ReLU's kink.
        let identity = Residual(body: basicBody(3, 3, stride: 1, relu: false), activation: ReLU())
        let report = GradientCheck.run(LayerHarness(identity), input: GradientCheck.randomTensor([2, 3, 4, 4], seed: 23), epsilon: 1e-3, maxEntriesPerTensor: 48)
        #expect(report.worst < 1e-2, "\(report)")
        let projection = Residual(body: basicBody(2, 4, stride: 2, relu: false), shortcut: downsample(2, 4, stride: 2), activation: ReLU())
        let projected = GradientCheck.run(LayerHarness(projection), input: GradientCheck.randomTensor([2, 2, 5, 5], seed: 24), epsilon: 1e-3, maxEntriesPerTensor: 48)
        #expect(projected.worst < 1e-2, "\(projected)")
    }

    @Test func activationAppliesToTheSum() throws {
        // y = relu(body(x) + x) with body = diag(2, −3): [1, 2 | 3, 4] → relu([3, 6 | −6, −8]).
        let block = Residual(body: Sequential([("scale", Conv2d(2, 2, kernelSize: 1, bias: false))]), activation: ReLU())
        let harness = LayerHarness(block)
        harness.setParameter("scale.weight", [2, 0, 0, -3])
        let x = Tensor(shape: [1, 2, 1, 2], values: [1, 2, 3, 4])
        #expect(block.forward(x, mode: .training).values == [3, 6, 0, 0])
        // Only the first channel passes the ReLU: dX = (1 + 2)·dY there, 0 in the second.
        let dx = try #require(block.backward(Tensor(shape: [1, 2, 1, 2], values: [1, 1, 1, 1]), computeInputGradient: true))
        #expect(dx.values == [3, 3, 0, 0])
        #expect(harness.store.gradient(of: "scale.weight") == [3, 7, 0, 0])
        #expect(block.children.count == 2)
        #expect(block.parameterSpecs.map(\.name) == ["scale.weight"])
        #expect(try block.outputShape(for: [1, 2, 3, 3]) == [1, 2, 3, 3])
    }

    @Test func namesMapToTorchvisionBasicBlock() throws {
        let block = Residual(body: basicBody(4, 8, stride: 2, relu: true), shortcut: downsample(4, 8, stride: 2))
        #expect(block.parameterSpecs.map(\.name) == [
            "conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias",
            "downsample.0.weight", "downsample.1.weight", "downsample.1.bias",
        ])
        #expect(block.stateSpecs.map(\.name) == [
            "bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var",
            "downsample.1.running_mean", "downsample.1.running_var",
        ])
        #expect(block.children.count == 2)

        // Inside a model group, names read like torchvision's state_dict keys.
        let model = try Model(groups: [LayerGroup("layer2", [("0", block)])], sampleShape: [4, 8, 8])
        #expect(model.store.entry(named: "layer2.0.downsample.0.weight")?.shape == [8, 4, 1, 1])
        #expect(model.store.stateEntry(named: "layer2.0.bn2.running_var") != nil)
        #expect(model.outputSampleShape == [8, 4, 4])

        // MobileNetV2's InvertedResidual keeps its body under `conv`.
        let inverted = Residual(body: Sequential([("0", Conv2d(4, 4, kernelSize: 1)), ("1", BatchNorm2d(4))]), bodyName: "conv")
        #expect(inverted.parameterSpecs.map(\.name) == ["conv.0.weight", "conv.0.bias", "conv.1.weight", "conv.1.bias"])
    }

    @Test func bindingSplitsViewsBetweenPaths() {
        let block = Residual(body: basicBody(2, 4, stride: 2, relu: true), shortcut: downsample(2, 4, stride: 2))
        let harness = LayerHarness(block)
        harness.setState("downsample.1.running_mean", [1, 2, 3, 4])
        _ = block.forward(GradientCheck.randomTensor([2, 2, 4, 4], seed: 3), mode: .inference)
        // The shortcut's batch norm read its own running mean: its output reflects the shift.
        let store = harness.store
        #expect(store.stateEntry(named: "downsample.1.running_mean").map { Array(store.state[$0.range]) } == [1, 2, 3, 4])
        #expect(store.stateEntry(named: "bn1.running_mean").map { Array(store.state[$0.range]) } == [0, 0, 0, 0])
        _ = block.forward(GradientCheck.randomTensor([2, 2, 4, 4], seed: 3), mode: .training)
        #expect(store.stateEntry(named: "bn1.running_mean").map { Array(store.state[$0.range]) } != [0, 0, 0, 0])
    }

    @Test func rejectsMismatchedPaths() {
        let block = Residual(body: basicBody(2, 4, stride: 2, relu: true))
        #expect(throws: ShapeError.self) { try block.outputShape(for: [1, 2, 8, 8]) }
        let named = Residual(body: basicBody(2, 4, stride: 1, relu: true), shortcut: downsample(3, 4, stride: 1))
        do {
            _ = try named.outputShape(for: [1, 2, 8, 8])
            Issue.record("expected a shape error")
        } catch {
            #expect(error.layer.hasPrefix("downsample.0."))
        }
    }
}
