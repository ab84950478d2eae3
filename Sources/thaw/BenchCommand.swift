// thaw bench: benchmarks that print ratios measured in the same run.
import ArgumentParser
import Foundation
import ThawKernels
import ThawTrainer

/// `thaw bench gemm`: each layer's GEMM throughput against raw cblas_sgemm.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks; every figure is a ratio against a baseline measured in the same run.",
        subcommands: [GemmBenchCommand.self])
}

/// Per-layer GEMM throughput ÷ raw cblas_sgemm on the same shapes.
struct GemmBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Each conv/linear layer's forward+backward GEMM throughput as a ratio to raw cblas_sgemm on the same shapes.")

    @Option(help: "Architecture name (see `thaw models`).") var architecture = "small-cnn"
    @Option(help: "Input sample shape, comma separated (C,H,W).") var sampleShape = "1,28,28"
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Timed repetitions per measurement (median reported).") var repetitions = 9
    @Option(help: "OpenBLAS threads.") var threads = 1

    func run() throws {
        Gemm.setThreadCount(threads)
        let shape = sampleShape.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--sample-shape: expected positive integers like 3,64,64; got '\(sampleShape)'")
        }
        var section = ModelSection()
        section.architecture = architecture
        let model = try ModelZoo.build(section, sampleShape: shape, seed: 1)
        let rows = try GemmBenchmark.run(model: model, batch: batch, repetitions: repetitions)
        print("GEMM benchmark: \(architecture), batch \(batch), \(threads) OpenBLAS thread(s), median of \(repetitions)")
        print("layer                      GFLOP      layer GFLOP/s   sgemm GFLOP/s   ratio (goal >= 0.7)")
        for row in rows {
            let name = row.layer.count >= 26 ? row.layer : row.layer + String(repeating: " ", count: 26 - row.layer.count)
            print(name + String(format: " %9.3f  %14.1f  %14.1f   %6.2f", row.flops / 1e9, row.layerGigaflops, row.rawGigaflops, row.ratio))
        }
        let total = rows.reduce(0.0) { $0 + $1.flops }
        let layerTime = rows.reduce(0.0) { $0 + $1.layerSeconds }
        let rawTime = rows.reduce(0.0) { $0 + $1.rawSeconds }
        print(String(format: "all GEMM layers: %.1f GFLOP/s vs sgemm %.1f GFLOP/s, ratio %.2f", total / layerTime / 1e9,
                     total / rawTime / 1e9, rawTime / layerTime))
    }
}
