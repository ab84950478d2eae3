// ConvolutionBenchmark: oneDNN's convolution primitives against Thaw's own kernel paths (im2col +
// OpenBLAS, pointwise GEMM, direct depthwise) on every distinct convolution shape of a model,
// per pass, as the ratio oneDNN time ÷ Thaw time measured in the same run.
//
// Before timing, each shape's three passes are checked to agree (relative 1e-4); a mismatch throws.
// The two sides are timed alternately (Thaw, oneDNN, Thaw, …) so that a change in the shared host's
// load hits both, and each side's median is reported. Thaw's backward-data and backward-weights are
// its separate kernels; "backward" is the one-sweep `ConvolutionPath.backward` Conv2d runs against
// oneDNN's two backward primitives. Both sides accumulate their gradients, as the `.dnnl` kernel path
// does (oneDNN through a reorder with a sum post-op), into buffers not reset between repetitions
// (the values grow, the work does not change). Thaw's side is `builtInAlgorithm(for:)`, its own paths.
import Foundation
import ThawRun
import ThawTrainer
import ThawKernels
import ThawNN

/// One distinct convolution shape of a model and its measurements.
public struct ConvolutionBenchmarkRow: Sendable {
    /// The sizes.
    public var geometry: Convolution2DGeometry
    /// How many convolution layers of the model have these sizes.
    public var layers: Int
    /// Thaw's own path for these sizes (`Convolution2D.builtInAlgorithm(for:)`).
    public var algorithm: Convolution2D.Algorithm
    /// oneDNN's implementation names (forward, backward-data, backward-weights).
    public var implementations: [String]
    /// Median seconds per pass for Thaw, in `ConvolutionPass.allCases` order.
    public var thawSeconds: [Double]
    /// Median seconds per pass for oneDNN, in the same order.
    public var dnnlSeconds: [Double]
    /// Largest relative difference between the two sides' results over the three passes.
    public var relativeDifference: Double

    /// oneDNN time ÷ Thaw time for `pass` (below 1: oneDNN is faster).
    public func ratio(_ pass: ConvolutionPass) -> Double { dnnlSeconds[pass.index] / thawSeconds[pass.index] }
}

/// A timed convolution pass.
public enum ConvolutionPass: String, Sendable, CaseIterable {
    /// output = conv(input, weight).
    case forward
    /// The input gradient alone.
    case backwardData = "backward-data"
    /// The weight gradient alone.
    case backwardWeights = "backward-weights"
    /// Both gradients: Thaw's one-sweep `ConvolutionPath.backward`, oneDNN's two primitives.
    case backward

    /// Position in `allCases`.
    public var index: Int { ConvolutionPass.allCases.firstIndex(of: self) ?? 0 }
}

/// The two sides disagree on a shape: one of them computes the wrong thing.
public struct ConvolutionMismatch: Error, CustomStringConvertible {
    /// The sizes.
    public var geometry: Convolution2DGeometry
    /// Which pass disagrees.
    public var pass: ConvolutionPass
    /// The relative difference found.
    public var relativeDifference: Double

    /// A one-line explanation.
    public var description: String {
        "oneDNN and Thaw disagree on \(pass.rawValue) for \(geometry): relative difference \(relativeDifference) > 1e-4"
    }
}

/// Measures oneDNN against Thaw on a model's convolution shapes.
public enum ConvolutionBenchmark {
    /// The tolerance of the agreement check.
    public static let tolerance = 1e-4

    /// Every distinct convolution geometry of `model` at batch `batch`, with how many layers share it, in model order.
    /// - Throws: `ShapeError` if the model rejects its own sample shape.
    public static func shapes(of model: Model, batch: Int) throws -> [(geometry: Convolution2DGeometry, layers: Int)] {
        var found: [(geometry: Convolution2DGeometry, layers: Int)] = []
        var shape = [batch] + model.sampleShape
        for group in model.groups {
            shape = try collect(group.body, inputShape: shape, into: &found)
        }
        return found
    }

    /// Adds the convolutions inside `layer` to `found` and returns the layer's output shape.
    static func collect(_ layer: any Layer, inputShape: [Int],
                        into found: inout [(geometry: Convolution2DGeometry, layers: Int)]) throws -> [Int] {
        if let conv = layer as? Conv2d {
            let g = conv.geometry(for: inputShape)
            if let index = found.firstIndex(where: { $0.geometry == g }) { found[index].layers += 1 } else { found.append((g, 1)) }
        } else if let sequential = layer as? Sequential {
            var shape = inputShape
            for child in sequential.children { shape = try collect(child, inputShape: shape, into: &found) }
            return shape
        } else if let residual = layer as? Residual {
            if let shortcut = residual.shortcut { _ = try collect(shortcut, inputShape: inputShape, into: &found) }
            _ = try collect(residual.body, inputShape: inputShape, into: &found)
        }
        return try layer.outputShape(for: inputShape)
    }

    /// Checks and times one geometry (no bias, as in MobileNetV2 and ResNet).
    /// - Parameters:
    ///   - geometry: The sizes.
    ///   - layers: How many layers share them (carried into the row).
    ///   - layout: oneDNN's layout (plain NCHW, or its own with reorders in every call).
    ///   - threads: oneDNN's OpenMP threads (set OpenBLAS's with `Gemm.setThreadCount`).
    ///   - repetitions: Timed repetitions per side and pass; medians are reported.
    /// - Throws: `ConvolutionMismatch` when the results differ by more than `tolerance`; `DnnlError`.
    public static func measure(_ geometry: Convolution2DGeometry, layers: Int, layout: DnnlConvolution.Layout,
                               threads: Int, repetitions: Int) throws -> ConvolutionBenchmarkRow {
        let g = geometry
        let dnnl = try DnnlConvolution(geometry: g, bias: false, layout: layout, threads: threads, accumulate: true)
        let path = ConvolutionPaths(bias: false).builtInPath(for: g)
        let buffers = Buffers(g)
        defer { buffers.deallocate() }
        let b = buffers

        let thaw: [() -> Void] = [
            { path.forward(output: b.output, input: b.input, weight: b.weight, bias: nil) },
            { path.backwardData(dInput: b.dInput, dOutput: b.dOutput, weight: b.weight) },
            { path.backwardWeights(dWeight: b.dWeight, dBias: nil, dOutput: b.dOutput, input: b.input) },
            { path.backward(dInput: b.dInput, dWeight: b.dWeight, dBias: nil, dOutput: b.dOutput, input: b.input, weight: b.weight) },
        ]
        let other: [() -> Void] = [
            { dnnl.forward(output: b.otherOutput, input: b.input, weight: b.weight, bias: nil) },
            { dnnl.backwardData(dInput: b.otherDInput, dOutput: b.dOutput, weight: b.weight) },
            { dnnl.backwardWeights(dWeight: b.otherDWeight, dBias: nil, dOutput: b.dOutput, input: b.input) },
            {
                dnnl.backwardWeights(dWeight: b.otherDWeight, dBias: nil, dOutput: b.dOutput, input: b.input)
                dnnl.backwardData(dInput: b.otherDInput, dOutput: b.dOutput, weight: b.weight)
            },
        ]

        // Agreement first: both accumulate, so the gradients start from zero.
        for (buffer, count) in [(b.dInput, g.inputCount), (b.otherDInput, g.inputCount), (b.dWeight, g.weightCount), (b.otherDWeight, g.weightCount)] {
            buffer.update(repeating: 0, count: count)
        }
        var worst = 0.0
        for pass in [ConvolutionPass.forward, .backwardData, .backwardWeights] {
            thaw[pass.index]()
            other[pass.index]()
            let (mine, theirs, count) = switch pass {
            case .forward: (b.output, b.otherOutput, g.outputCount)
            case .backwardData: (b.dInput, b.otherDInput, g.inputCount)
            default: (b.dWeight, b.otherDWeight, g.weightCount)
            }
            let difference = relativeDifference(theirs, mine, count: count)
            guard difference <= tolerance else { throw ConvolutionMismatch(geometry: g, pass: pass, relativeDifference: difference) }
            worst = max(worst, difference)
        }

        var thawSeconds: [Double] = []
        var dnnlSeconds: [Double] = []
        for pass in ConvolutionPass.allCases {
            let (mine, theirs) = alternatingMedians(repetitions, thaw[pass.index], other[pass.index])
            thawSeconds.append(mine)
            dnnlSeconds.append(theirs)
        }
        return ConvolutionBenchmarkRow(
            geometry: g, layers: layers, algorithm: path.algorithm,
            implementations: [dnnl.implementations.forward, dnnl.implementations.backwardData, dnnl.implementations.backwardWeights],
            thawSeconds: thawSeconds, dnnlSeconds: dnnlSeconds, relativeDifference: worst)
    }

    /// Σ layers · oneDNN time ÷ Σ layers · Thaw time for `pass` over `rows`: the whole model's ratio.
    public static func modelRatio(_ rows: [ConvolutionBenchmarkRow], _ pass: ConvolutionPass) -> Double {
        let dnnl = rows.reduce(0.0) { $0 + Double($1.layers) * $1.dnnlSeconds[pass.index] }
        let thaw = rows.reduce(0.0) { $0 + Double($1.layers) * $1.thawSeconds[pass.index] }
        return dnnl / thaw
    }

    /// The whole model's time with oneDNN only for the rows where `oneDNNWhere` is true, ÷ Thaw's time.
    public static func modelRatio(_ rows: [ConvolutionBenchmarkRow], _ pass: ConvolutionPass, oneDNNWhere chosen: [Bool]) -> Double {
        let mixed = zip(rows, chosen).reduce(0.0) { $0 + Double($1.0.layers) * ($1.1 ? $1.0.dnnlSeconds : $1.0.thawSeconds)[pass.index] }
        let thaw = rows.reduce(0.0) { $0 + Double($1.layers) * $1.thawSeconds[pass.index] }
        return mixed / thaw
    }

    /// Medians of `first` and `second` timed in turn `repetitions` times each, after one warm-up run of each.
    static func alternatingMedians(_ repetitions: Int, _ first: () -> Void, _ second: () -> Void) -> (Double, Double) {
        first()
        second()
        var firstTimes: [Double] = []
        var secondTimes: [Double] = []
        for _ in 0..<max(1, repetitions) {
            firstTimes.append(seconds(first))
            secondTimes.append(seconds(second))
        }
        return (median(firstTimes), median(secondTimes))
    }

    static func seconds(_ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// max |a − b| ÷ max(max |b|, 1e-6), as `ThawTesting.relativeError`.
    static func relativeDifference(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Double {
        var difference = 0.0
        var scale = 1e-6
        for i in 0..<count {
            difference = max(difference, abs(Double(a[i]) - Double(b[i])))
            scale = max(scale, abs(Double(b[i])))
        }
        return difference / scale
    }

    /// Seeded operands and separate outputs for each side.
    final class Buffers {
        let input, weight, dOutput, output, dInput, dWeight, otherOutput, otherDInput, otherDWeight: UnsafeMutablePointer<Float>

        init(_ g: Convolution2DGeometry) {
            func filled(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
                let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, count))
                var generator = SplitMix64(seed: seed)
                for i in 0..<count { buffer[i] = generator.nextUniform() * 2 - 1 }
                return buffer
            }
            input = filled(g.inputCount, seed: 1)
            weight = filled(g.weightCount, seed: 2)
            dOutput = filled(g.outputCount, seed: 3)
            output = filled(g.outputCount, seed: 4)
            otherOutput = filled(g.outputCount, seed: 5)
            dInput = filled(g.inputCount, seed: 6)
            otherDInput = filled(g.inputCount, seed: 7)
            dWeight = filled(g.weightCount, seed: 8)
            otherDWeight = filled(g.weightCount, seed: 9)
        }

        func deallocate() {
            for buffer in [input, weight, dOutput, output, dInput, dWeight, otherOutput, otherDInput, otherDWeight] {
                buffer.deallocate()
            }
        }
    }
}
