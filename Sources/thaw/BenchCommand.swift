// thaw bench: benchmarks that print ratios measured in the same run.
import ArgumentParser
import Foundation
import ThawCollective
import ThawKernels
import ThawNN
import ThawBench
import ThawProcesses
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw bench gemm|conv|exchange|status-soak`: benchmarks that report ratios.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks; every figure is a ratio against a baseline measured in the same run.",
        subcommands: [GemmBenchCommand.self, ConvolutionBenchCommand.self, ExchangeBenchCommand.self, StatusSoakBenchCommand.self, ScalingBenchCommand.self, CacheBenchCommand.self])
}

/// Per-layer GEMM throughput ÷ raw cblas_sgemm on the same shapes.
struct GemmBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Each conv/linear layer's forward+backward GEMM throughput as a ratio to raw cblas_sgemm on the same shapes.")

    @OptionGroup var model: ModelChoice
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Timed repetitions per measurement (median reported).") var repetitions = 9
    @Option(help: "OpenBLAS threads.") var threads = 1

    func run() throws {
        Gemm.setThreadCount(threads)
        let model = try self.model.build()
        let rows = try GemmBenchmark.run(model: model, batch: batch, repetitions: repetitions)
        print("GEMM benchmark: \(self.model.architecture), batch \(batch), \(threads) OpenBLAS thread(s), median of \(repetitions)")
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

/// oneDNN's convolution primitives ÷ Thaw's kernel paths, per distinct convolution shape and pass.
struct ConvolutionBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv",
        abstract: "oneDNN convolution time ÷ Thaw's (im2col/pointwise/depthwise + OpenBLAS) on each distinct conv shape of a model, per pass.",
        discussion: "Checks that both sides agree (relative 1e-4) before timing and fails if not. Ratios below 1 mean oneDNN is faster.")

    @Option(name: .customLong("model"), help: ArgumentHelp("An architecture and its sample shape; repeatable.", valueName: "name:C,H,W"))
    var models: [String] = ["mobilenet_v2:3,64,64", "mobilenet_v2:3,96,96", "resnet18:3,64,64"]
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Timed repetitions per side and pass (median reported).") var repetitions = 7
    @Option(help: "Threads for both OpenBLAS and oneDNN.") var threads = 1
    @Option(help: "oneDNN layout: plain (Thaw's NCHW, no reorders), blocked (its own, reorders in every call) or both.")
    var layout = "both"
    @Option(help: "oneDNN's instruction set: all (what the CPU has) or avx2.") var isa = "all"

    func run() throws {
        let layouts: [DnnlConvolution.Layout] = layout == "both" ? DnnlConvolution.Layout.allCases : try [DnnlConvolution.Layout(rawValue: layout)
            ?? { throw ValidationError("--layout: expected plain, blocked or both; got '\(layout)'") }()]
        guard ["all", "avx2"].contains(isa) else { throw ValidationError("--isa: expected all or avx2; got '\(isa)'") }
        if isa == "avx2" { try DnnlConvolution.limitToAVX2() }
        let choices = try models.map { choice -> (String, [Int]) in
            let parts = choice.split(separator: ":", maxSplits: 1).map(String.init)
            let shape = parts.count == 2 ? parts[1].split(separator: ",").compactMap { Int($0) } : []
            guard parts.count == 2, shape.count == 3, shape.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--model: expected name:C,H,W like mobilenet_v2:3,64,64; got '\(choice)'")
            }
            return (parts[0], shape)
        }
        Gemm.setThreadCount(threads)
        print("Convolution benchmark: oneDNN \(DnnlConvolution.version) (\(DnnlConvolution.instructionSet)) ÷ Thaw (OpenBLAS \(Gemm.coreName)), "
              + "batch \(batch), \(threads) thread(s) each, median of \(repetitions) alternating runs; ratio < 1: oneDNN faster; "
              + "thaw path: Thaw's own (→dnnl: now sent to oneDNN)")
        for (architecture, sampleShape) in choices {
            let model = try ModelZoo.build(architecture: architecture, sampleShape: sampleShape)
            let shapes = try ConvolutionBenchmark.shapes(of: model, batch: batch)
            for layout in layouts {
                print("\n\(architecture) \(sampleShape.map(String.init).joined(separator: "x")), oneDNN layout \(layout.rawValue): "
                      + "\(shapes.count) distinct shapes, \(shapes.reduce(0) { $0 + $1.layers }) conv layers")
                print("shape (N×C×H×W → O, kernel/stride/pad/groups)     layers  thaw path        share   fwd  bwd-d  bwd-w  bwd    oneDNN impl (fwd | bwd-d | bwd-w)")
                var rows: [ConvolutionBenchmarkRow] = []
                for shape in shapes {
                    rows.append(try ConvolutionBenchmark.measure(shape.geometry, layers: shape.layers, layout: layout,
                                                                 threads: threads, repetitions: repetitions))
                }
                // share: this shape's part of the model's Thaw convolution time (forward + the one-sweep backward).
                let total = rows.reduce(0.0) { $0 + Double($1.layers) * ($1.thawSeconds[0] + $1.thawSeconds[3]) }
                for row in rows {
                    let g = row.geometry
                    var name = "\(g.batch)×\(g.inputChannels)×\(g.inputHeight)×\(g.inputWidth) → \(g.outputChannels), "
                        + "k\(g.kernel.height) s\(g.stride.height) p\(g.padding.height)" + (g.groups > 1 ? " g\(g.groups)" : "")
                    name += String(repeating: " ", count: max(0, 48 - name.count))
                    let share = Double(row.layers) * (row.thawSeconds[0] + row.thawSeconds[3]) / total
                    // "→dnnl": Convolution2D.algorithm(for:) now sends this shape to oneDNN.
                    let label = "\(row.algorithm)" + (Convolution2D.algorithm(for: g) == .dnnl ? "→dnnl" : "")
                    let path = label + String(repeating: " ", count: max(0, 15 - label.count))
                    print(name + String(format: " %4d   %@ %5.1f%%", row.layers, path, share * 100)
                          + ConvolutionPass.allCases.map { String(format: " %5.2f", row.ratio($0)) }.joined()
                          + "   " + row.implementations.joined(separator: " | "))
                }
                print("whole model (Σ layers · time): " + ConvolutionPass.allCases.map {
                    String(format: "%@ %.2f", $0.rawValue, ConvolutionBenchmark.modelRatio(rows, $0))
                }.joined(separator: ", "))
                guard layout == .blocked else { continue }
                let chosen = rows.map { Convolution2D.algorithm(for: $0.geometry) == .dnnl }
                print("whole model, oneDNN only where Convolution2D.algorithm(for:) picks it: " + ConvolutionPass.allCases.map {
                    String(format: "%@ %.2f", $0.rawValue, ConvolutionBenchmark.modelRatio(rows, $0, oneDNNWhere: chosen))
                }.joined(separator: ", "))
            }
        }
    }
}

/// Exchange throughput ÷ raw MPI_Allreduce, and step time ÷ max(compute, communication).
struct ExchangeBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exchange",
        abstract: "Run under mpirun -np 2: gradient exchange vs raw MPI_Allreduce on the same bytes, and step time vs max(compute, communication).")

    @OptionGroup var model: ModelChoice
    @Option(help: "Per-rank batch size.") var batch = 64
    @Option(parsing: .upToNextOption, help: "Bucket sizes in megabytes to measure the bucketed path at (the sweep that tunes training.bucket_size_mb).")
    var bucketMegabytes: [Double] = [0.5, 1, 2, 4, 8, 16]
    @Option(help: "Timed repetitions per measurement (median reported).") var repetitions = 21
    @Option(help: "Also measure a synthetic model of this many million trainable parameters (0 = skip).") var syntheticMillions = 4.0

    func validate() throws {
        guard !bucketMegabytes.isEmpty, bucketMegabytes.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ValidationError("--bucket-megabytes: expected one or more sizes > 0, got \(bucketMegabytes)")
        }
        guard repetitions > 0 else { throw ValidationError("--repetitions: expected a number > 0, got \(repetitions)") }
    }

    func run() throws {
        let collective = try MPICollective()
        defer { try? collective.finalize() }
        Gemm.setThreadCount(1)
        let model = try self.model.build()
        let bucketSizes = bucketMegabytes.map { Int($0 * 1_048_576) }
        let result = try ExchangeBenchmark.run(model: model, collective: collective, batch: batch, bucketSizes: bucketSizes, repetitions: repetitions)
        var synthetic: ExchangeBenchmarkResult?
        if syntheticMillions > 0 {
            // Four equal linear groups: a large trainable range with little compute.
            let width = Int((syntheticMillions * 1e6 / 4).squareRoot())
            let groups = (0..<4).map { LayerGroup("g\($0)", [(name: "fc", layer: Linear(width, width, bias: false))]) }
            let wide = try Model(groups: groups, sampleShape: [width], seed: 1)
            synthetic = try ExchangeBenchmark.run(model: wide, collective: collective, batch: 8, bucketSizes: bucketSizes, repetitions: repetitions)
        }
        guard collective.rank == 0 else { return }
        print("Exchange benchmark: \(collective.worldSize) ranks, median of \(repetitions), rank 0's clock")
        for (name, r) in [("\(self.model.architecture) batch \(batch)/rank", result)] + (synthetic.map { [("synthetic linear", $0)] } ?? []) {
            let megabytes = Double(r.trainableParameters * 4) / 1e6
            print(String(format: "%@: %d trainable parameters (%.2f MB)", name, r.trainableParameters, megabytes))
            print(String(format: "  raw MPI_Allreduce    %8.3f ms  %6.2f GB/s", r.rawSeconds * 1e3, megabytes / 1e3 / r.rawSeconds))
            print(String(format: "  thaw plain           %8.3f ms  %6.2f GB/s   ratio %.2f (goal >= 0.9)", r.plainSeconds * 1e3, megabytes / 1e3 / r.plainSeconds, r.plainRatio))
            print(String(format: "  compute (fwd+bwd)    %8.3f ms", r.computeSeconds * 1e3))
            print("  bucket MB  buckets  bucketed ms  ratio to raw  overlapped step ms  step / max(compute, comm) (goal <= 1.15)")
            for m in r.bucketSizes {
                print(String(format: "  %9.2f  %7d  %11.3f  %12.2f  %18.3f  %.2f", Double(m.bucketBytes) / 1_048_576, m.buckets,
                             m.bucketedSeconds * 1e3, r.bucketedRatio(m), m.stepSeconds * 1e3, r.overlapRatio(m)))
            }
            if let fastest = r.fastestStep {
                print(String(format: "  fastest overlapped step: %.2f MB buckets, step / max(compute, comm) = %.2f",
                             Double(fastest.bucketBytes) / 1_048_576, r.overlapRatio(fastest)))
            }
        }
    }
}

/// Status queries under load: training throughput with and without them, and query latency.
struct StatusSoakBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status-soak",
        abstract: "Hammer the coordinator with status queries while a real job trains; report throughput loaded ÷ quiet and query latency.",
        discussion: "Starts its own coordinator and `mpirun -np RANKS thaw train` on loopback, once quiet and once under load per repetition.")

    @Option(help: "The training configuration.") var config = "configs/fashion-small-cnn.yaml"
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value"))
    var overrides: [String] = ["data.train_limit=12000", "data.test_limit=1000", "training.epochs=2"]
    @Option(help: "Workers.") var ranks = 2
    @Option(help: "Status queries per second during the loaded runs.") var rate = 300.0
    @Option(help: "Quiet/loaded pairs (median ratio reported).") var repetitions = 3
    @Option(help: "Where the runs and their logs go.") var scratch = "runs/bench-status-soak"

    func run() throws {
        guard let thaw = Bundle.main.executablePath else { throw RuntimeFailure("cannot tell where the thaw executable is") }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let mpirun = localMPIRunOptions(ranks: ranks)
        print("Status soak: \(config) \(overrides.joined(separator: " ")), \(ranks) ranks, \(Int(rate)) queries/s, \(repetitions) quiet/loaded pair(s)")
        let result = try StatusSoakBenchmark.run(thaw: thaw, configPath: config, ranks: ranks, rate: rate, repetitions: repetitions,
                                                 overrides: overrides, mpirunOptions: mpirun, scratch: scratch, log: { print($0) })
        print(String(format: "queries: %d answered (%.0f/s achieved), %d unanswered within 5 s", result.latencies.count,
                     Double(result.latencies.count) / max(result.loadSeconds, 1e-9), result.unanswered))
        print(String(format: "latency: median %.2f ms, p99 %.2f ms, max %.2f ms", result.latency(quantile: 0.5) * 1e3,
                     result.latency(quantile: 0.99) * 1e3, result.latency(quantile: 1) * 1e3))
        print(String(format: "training throughput loaded ÷ quiet: %.3f (median of %d; goal >= 0.95)", result.throughputRatio, repetitions))
    }
}

/// Weak scaling (2 ranks vs 1 on the same work per rank) and peak resident memory ÷ estimate.
struct ScalingBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Weak scaling, 2 ranks vs 1 process on the same work per rank, and each rank's peak resident memory ÷ its estimate.",
        discussion: "Runs `thaw train` as one process and under `mpirun -np 2` (1 OpenBLAS thread per rank) in alternating order per repetition.")

    @Option(help: "The training configuration.") var config = "configs/fashion-small-cnn.yaml"
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value"))
    var overrides: [String] = ["data.test_limit=500", "training.epochs=1"]
    @Option(help: "Global batch of the 1-process run (the 2-rank run uses twice it).") var batch = 64
    @Option(help: "Training samples of the 1-process run (the 2-rank run uses twice as many).") var samples = 6000
    @Option(help: "1-rank/2-rank pairs (median reported).") var repetitions = 3
    @Option(help: "Where the runs and their logs go.") var scratch = "runs/bench-scaling"

    func run() throws {
        guard let thaw = Bundle.main.executablePath else { throw RuntimeFailure("cannot tell where the thaw executable is") }
        guard batch > 0, samples >= batch, repetitions > 0 else { throw ValidationError("need --batch ≥ 1, --samples ≥ --batch and --repetitions ≥ 1") }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let mpirun = localMPIRunOptions(ranks: 2)
        print("Scaling: \(config) \(overrides.joined(separator: " ")), \(samples) samples and batch \(batch) per rank, "
              + "\(repetitions) pair(s), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        let result = try ScalingBenchmark.run(thaw: thaw, configPath: config, batchPerRank: batch, samplesPerRank: samples,
                                              repetitions: repetitions, overrides: overrides, mpirunOptions: mpirun, scratch: scratch,
                                              log: { print($0) })
        print(String(format: "weak-scaling efficiency, 2 ranks ÷ (2 × 1 rank): %.3f (median of %d; goal >= 0.9 where 2 cores are free)",
                     result.efficiency, repetitions))
        if let last = result.memory.last { print(RankMemory.summary(last)) }
        print(String(format: "peak resident ÷ estimate, worst rank: %.2f (median of %d; goal <= 1.3)", result.memoryRatio, result.memory.count))
        print(String(format: "growth during training ÷ (estimate − parameters), worst rank: %.2f (median of %d)",
                     result.growthRatio, result.memory.count))
    }
}

/// Head-phase epoch time with the frozen-prefix cache ÷ without it.
struct CacheBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Head-only epochs with the frozen-prefix cache ÷ without it, and the one-off fill ÷ an uncached epoch.",
        discussion: "Runs `thaw train` with a head-only plan, cache on and off in alternating order per repetition.")

    @Option(help: "The training configuration (its backbone need not be pretrained for timing).") var config = "configs/demo.yaml"
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value"))
    var overrides: [String] = ["data.train_limit=2000", "data.test_limit=200", "training.epochs=3", "model.pretrained="]
    @Option(help: "Ranks per run (1 = a plain process).") var ranks = 2
    @Option(help: "Cached/uncached pairs (medians reported).") var repetitions = 3
    @Option(help: "Where the runs and their logs go.") var scratch = "runs/bench-cache"

    func run() throws {
        guard let thaw = Bundle.main.executablePath else { throw RuntimeFailure("cannot tell where the thaw executable is") }
        guard ranks >= 1, repetitions >= 1 else { throw ValidationError("need --ranks ≥ 1 and --repetitions ≥ 1") }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let mpirun = localMPIRunOptions(ranks: ranks)
        print("Feature cache: \(config) \(overrides.joined(separator: " ")), head only, \(ranks) rank(s), \(repetitions) pair(s)")
        let result = try CacheBenchmark.run(thaw: thaw, configPath: config, ranks: ranks, repetitions: repetitions, overrides: overrides,
                                            mpirunOptions: mpirun, scratch: scratch, log: { print($0) })
        print(String(format: "head-only epoch, cached ÷ uncached: %.3f (medians of %d and %d epochs; goal <= 0.1)",
                     result.epochRatio, result.cachedEpochSeconds.count, result.uncachedEpochSeconds.count))
        print(String(format: "cache fill ÷ uncached epoch: %.2f (median of %d; paid once per boundary)", result.fillRatio, result.fillSeconds.count))
    }
}

/// `--architecture` and `--sample-shape`, shared by the benchmarks.
struct ModelChoice: ParsableArguments {
    @Option(help: "Architecture name (see `thaw models`).") var architecture = "small-cnn"
    @Option(help: "Input sample shape, comma separated (C,H,W); default: the architecture's typical input.") var sampleShape: String?

    /// The model, built with default settings.
    func build() throws -> Model {
        var shape: [Int]?
        if let sampleShape {
            let parsed = sampleShape.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parsed.isEmpty, parsed.allSatisfy({ $0 > 0 }), parsed.count == sampleShape.split(separator: ",").count else {
                throw ValidationError("--sample-shape: expected positive integers like 3,64,64; got '\(sampleShape)'")
            }
            shape = parsed
        }
        return try ModelZoo.build(architecture: architecture, sampleShape: shape)
    }
}
