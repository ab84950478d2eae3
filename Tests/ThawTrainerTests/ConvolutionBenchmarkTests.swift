// Tests for `thaw bench conv`: the distinct convolution shapes it finds in MobileNetV2 and ResNet-18,
// one shape measured in-process (agreement checked, ratios finite), and the command end to end on a
// small input. No timing assertions.
import Foundation
import Testing
import ThawKernels
import ThawTesting
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

@Suite struct ConvolutionBenchmarkTests {
    /// MobileNetV2 has 52 convolutions (stem, 17 inverted residuals, final 1×1), ResNet-18 has 20
    /// (stem, 16 in blocks, 3 downsamples); shared shapes are counted once with their layer count.
    @Test func findsEveryConvolutionShape() throws {
        let mobileNet = try ConvolutionBenchmark.shapes(of: try ModelZoo.build(architecture: "mobilenet_v2", sampleShape: [3, 64, 64]), batch: 32)
        #expect(mobileNet.reduce(0) { $0 + $1.layers } == 52)
        #expect(mobileNet.count == 30)
        #expect(mobileNet.first?.geometry == Convolution2DGeometry(batch: 32, inputChannels: 3, inputHeight: 64, inputWidth: 64,
                                                                   outputChannels: 32, kernel: 3, stride: 2, padding: 1))
        #expect(mobileNet.contains { $0.geometry.isDepthwise && $0.geometry.inputChannels == 384 && $0.layers == 4 })
        let resNet = try ConvolutionBenchmark.shapes(of: try ModelZoo.build(architecture: "resnet18", sampleShape: [3, 64, 64]), batch: 32)
        #expect(resNet.reduce(0) { $0 + $1.layers } == 20)
        #expect(resNet.count == 11)
        #expect(resNet.filter { $0.geometry.kernel == 1 }.map(\.layers) == [1, 1, 1])
        #expect(resNet.first?.geometry.kernel == 7)
    }

    @Test(arguments: DnnlConvolution.Layout.allCases)
    func measuresOneShape(layout: DnnlConvolution.Layout) throws {
        let g = Convolution2DGeometry(batch: 2, inputChannels: 16, inputHeight: 6, inputWidth: 6, outputChannels: 16,
                                      kernel: 3, stride: 2, padding: 1, groups: 16)
        let row = try ConvolutionBenchmark.measure(g, layers: 2, layout: layout, threads: 1, repetitions: 1)
        #expect(row.algorithm == .depthwise)
        #expect(row.relativeDifference <= ConvolutionBenchmark.tolerance)
        #expect(row.thawSeconds.count == ConvolutionPass.allCases.count && row.dnnlSeconds.count == ConvolutionPass.allCases.count)
        #expect(ConvolutionPass.allCases.allSatisfy { row.ratio($0).isFinite && row.ratio($0) > 0 })
        #expect(ConvolutionBenchmark.modelRatio([row], .forward) == row.ratio(.forward))
    }

    @Test func commandRuns() throws {
        let thaw = try #require(thawExecutablePath(), "no thaw executable next to the test binary")
        let result = try spawnProcessGroup([thaw, "bench", "conv", "--model", "resnet18:3,32,32", "--batch", "2",
                                            "--repetitions", "1"], hangGuardSeconds: 120)
        #expect(result.exitCode == 0, "\(result.output)")
        #expect(result.output.components(separatedBy: "whole model (Σ").count == 3, "one summary per layout:\n\(result.output)")
        #expect(result.output.components(separatedBy: "oneDNN only where").count == 2, "the chosen-path summary, blocked only")
        #expect(result.output.contains("jit"), "oneDNN's implementation names are printed")
        let bad = try spawnProcessGroup([thaw, "bench", "conv", "--layout", "sideways"], hangGuardSeconds: 60)
        #expect(bad.exitCode != 0 && bad.output.contains("--layout"))
    }
}
