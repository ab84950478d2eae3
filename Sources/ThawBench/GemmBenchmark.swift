// GemmBenchmark: each convolution and linear layer's forward+backward throughput as a
// ratio to raw cblas_sgemm running the same matrix shapes, measured in the same run.
//
// A layer's useful work is the GEMMs its math needs (for a convolution through im2col,
// per sample and group: forward W·cols, input gradient Wᵀ·dY, weight gradient dY·colsᵀ).
// The raw baseline runs exactly those sgemm calls, with the same shapes AND transpose flags,
// on small preallocated buffers, so the ratio shows what im2col, bias, layout, bookkeeping and
// memory traffic cost on top of OpenBLAS. The raw buffers stay in cache; the layer streams its
// batch-sized tensors. For a wide layer with a tiny K (the small CNN's stem: K = 9 and a 6.4 MB
// output at batch 64) that traffic dominates, and its ratio moves with how much L3 the host
// leaves free (on a shared machine: from run to run).
//
// Why the convolution GEMMs stay per sample: batching them across the batch (columns laid out
// [K, N·P], one GEMM per pass) and keeping the forward's columns for backward-weights were both
// measured slower on the small CNN (one thread): the per-sample column matrix (≤ 225 KB there)
// stays in L2 between im2col and its GEMM, while batch-wide columns (14 MB for block1) stream
// through L3 and OpenBLAS runs the wide GEMMs no faster. Re-unfolding one image from its input
// costs less than reading its kept columns back. The backward does both GEMMs of an image in one
// sweep (`ConvolutionPath.backward`), so each image's output gradient is read from memory once.
import Foundation
import ThawRun
import ThawTrainer
import ThawKernels
import ThawNN

/// One row of the GEMM benchmark.
public struct GemmBenchmarkRow: Sendable {
    /// The layer's path in the model, such as `block1.conv`.
    public var layer: String
    /// The GEMM calls (transposes, m, n, k) and how many times each runs per forward+backward.
    public var shapes: [GemmCall]
    /// Floating-point operations of those GEMMs.
    public var flops: Double
    /// Median seconds of the layer's forward+backward.
    public var layerSeconds: Double
    /// Median seconds of the raw sgemm calls.
    public var rawSeconds: Double
    /// Layer GFLOP/s.
    public var layerGigaflops: Double { flops / layerSeconds / 1e9 }
    /// Raw sgemm GFLOP/s on the same shapes.
    public var rawGigaflops: Double { flops / rawSeconds / 1e9 }
    /// Layer throughput ÷ raw throughput (goal ≥ 0.7).
    public var ratio: Double { rawSeconds / layerSeconds }
}

/// One kind of GEMM call a layer makes: `C[m×n] += op(A)[m×k] · op(B)[k×n]`, `count` times.
public struct GemmCall: Sendable {
    /// Whether A is transposed.
    public var transposeA: Transpose
    /// Whether B is transposed.
    public var transposeB: Transpose
    /// Rows of C.
    public var m: Int
    /// Columns of C.
    public var n: Int
    /// The shared dimension.
    public var k: Int
    /// How many times it runs.
    public var count: Int
}

/// Measures every GEMM-backed layer of a model.
public enum GemmBenchmark {
    /// Runs the benchmark.
    /// - Parameters:
    ///   - model: The model; its parameters are used as they are.
    ///   - batch: The batch size.
    ///   - repetitions: Timed repetitions per measurement; the median is reported.
    public static func run(model: Model, batch: Int, repetitions: Int) throws -> [GemmBenchmarkRow] {
        var rows: [GemmBenchmarkRow] = []
        var shape = [batch] + model.sampleShape
        for group in model.groups {
            for child in group.body.namedLayers {
                let inputShape = shape
                shape = try child.layer.outputShape(for: shape)
                guard let shapes = gemmShapes(child.layer, inputShape: inputShape) else { continue }
                let input = Tensor(shape: inputShape)
                var generator = SplitMix64(seed: 1)
                for i in 0..<input.count { input.data[i] = generator.nextUniform() }
                let upstream = Tensor(shape: shape)
                upstream.fill(0.01)
                let layerTime = median(repetitions) {
                    _ = child.layer.forward(input, mode: .training)
                    _ = child.layer.backward(upstream, computeInputGradient: true)
                }
                let rawTime = rawGemmTime(shapes, repetitions: repetitions)
                let flops = shapes.reduce(0.0) { $0 + 2 * Double($1.m) * Double($1.n) * Double($1.k) * Double($1.count) }
                rows.append(GemmBenchmarkRow(layer: "\(group.name).\(child.name)", shapes: shapes, flops: flops,
                                             layerSeconds: layerTime, rawSeconds: rawTime))
            }
        }
        return rows
    }

    /// The GEMMs a layer's forward+backward needs, or nil for layers that do not use GEMM.
    static func gemmShapes(_ layer: any Layer, inputShape: [Int]) -> [GemmCall]? {
        if let linear = layer as? Linear {
            // Linear: y = x·Wᵀ, dX = dY·W, dW = dYᵀ·x.
            let rows = inputShape.dropLast().reduce(1, *)
            let (i, o) = (linear.inputDimensions, linear.outputDimensions)
            return [GemmCall(transposeA: .none, transposeB: .transposed, m: rows, n: o, k: i, count: 1),
                    GemmCall(transposeA: .none, transposeB: .none, m: rows, n: i, k: o, count: 1),
                    GemmCall(transposeA: .transposed, transposeB: .none, m: o, n: i, k: rows, count: 1)]
        }
        if let conv = layer as? Conv2d {
            let g = conv.geometry(for: inputShape)
            let path = conv.algorithm(for: g)
            guard path == .im2col || path == .pointwise else { return nil }
            // im2col: y = W·cols, dCols = Wᵀ·dY, dW = dY·colsᵀ; pointwise: the same with cols = x.
            let m = g.outputChannelsPerGroup
            let n = g.outputHeight * g.outputWidth
            let k = g.inputChannelsPerGroup * g.kernel.height * g.kernel.width
            let count = g.batch * g.groups
            return [GemmCall(transposeA: .none, transposeB: .none, m: m, n: n, k: k, count: count),
                    GemmCall(transposeA: .transposed, transposeB: .none, m: k, n: n, k: m, count: count),
                    GemmCall(transposeA: .none, transposeB: .transposed, m: m, n: k, k: n, count: count)]
        }
        return nil
    }

    static func rawGemmTime(_ shapes: [GemmCall], repetitions: Int) -> Double {
        let largest = shapes.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max() ?? 1
        let a = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        a.initialize(repeating: 0.5, count: largest)
        b.initialize(repeating: 0.25, count: largest)
        c.initialize(repeating: 0, count: largest)
        return median(repetitions) {
            for s in shapes {
                for _ in 0..<s.count {
                    Gemm.multiply(s.transposeA, s.transposeB, m: s.m, n: s.n, k: s.k, a: a, b: b, beta: 1, c: c)
                }
            }
        }
    }

    /// The median wall time of `body` over `repetitions` runs, after one warm-up run.
    public static func median(_ repetitions: Int, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        for _ in 0..<max(1, repetitions) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return ThawBench.median(times)
    }
}
