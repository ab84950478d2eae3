// ScalingBenchmark: weak scaling and memory, with real processes. Each repetition trains the same
// job as one plain process and as `mpirun -np 2` with twice the global batch and twice the data
// (the same work per rank), in alternating order so drift on a shared machine affects both alike.
// Weak-scaling efficiency is 2-rank throughput ÷ (2 × 1-rank throughput); memory is each rank's
// peak resident set ÷ the estimate the run writes to metrics.jsonl (see MemoryReport.swift).
import Foundation
import ThawProcesses
import ThawRun
import ThawTrainer

/// What the scaling benchmark measured.
public struct ScalingResult: Sendable {
    /// Training samples per second of the one-process runs, one per repetition.
    public var oneRankSamplesPerSecond: [Double]
    /// Training samples per second of the two-rank runs, one per repetition.
    public var twoRankSamplesPerSecond: [Double]
    /// Every rank's memory figures from each two-rank run.
    public var memory: [[RankMemory]]

    /// Median over repetitions of 2-rank throughput ÷ (2 × 1-rank throughput) (goal ≥ 0.9).
    public var efficiency: Double {
        median(zip(twoRankSamplesPerSecond, oneRankSamplesPerSecond).map { $0 / (2 * $1) })
    }

    /// Median over runs of the worst rank's peak resident ÷ estimate (goal ≤ 1.3).
    public var memoryRatio: Double { median(memory.map { ranks in ranks.map(\.ratio).max() ?? .nan }) }

    /// Median over runs of the worst rank's ``RankMemory/growthRatio``.
    public var growthRatio: Double { median(memory.map { ranks in ranks.map(\.growthRatio).max() ?? .nan }) }
}

/// Runs the weak-scaling and memory benchmark with real `thaw train` processes.
public enum ScalingBenchmark {
    /// Runs `repetitions` pairs of the job in `configPath`.
    /// - Parameters:
    ///   - thaw: The thaw executable.
    ///   - batchPerRank: The global batch of the one-process run; the two-rank run uses twice it.
    ///   - samplesPerRank: Training samples of the one-process run; the two-rank run uses twice as many.
    ///   - overrides: `--set` overrides for every run.
    ///   - mpirunOptions: Extra mpirun arguments (for example `--allow-run-as-root`).
    ///   - scratch: A directory for run outputs and logs.
    public static func run(thaw: String, configPath: String, batchPerRank: Int, samplesPerRank: Int, repetitions: Int,
                           overrides: [String], mpirunOptions: [String], scratch: String,
                           log: (String) -> Void) throws -> ScalingResult {
        var result = ScalingResult(oneRankSamplesPerSecond: [], twoRankSamplesPerSecond: [], memory: [])
        for repetition in 0..<repetitions {
            for ranks in repetition % 2 == 0 ? [1, 2] : [2, 1] {
                let name = "scaling-\(repetition)-\(ranks)"
                let output = (scratch as NSString).appendingPathComponent(name)
                let sets = (overrides + ["run.output=\(output)", "run.name=\(name)", "training.batch_size=\(batchPerRank * ranks)",
                                         "data.train_limit=\(samplesPerRank * ranks)", "training.blas_threads=1"]).flatMap { ["--set", $0] }
                let train = ["train", "--config", configPath, "--progress", "quiet"] + sets
                try StatusSoakBenchmark.runToCompletion(ranks == 1 ? thaw : mpirunPath,
                                                        ranks == 1 ? train : mpirunOptions + ["-np", "2", thaw] + train,
                                                        log: (scratch as NSString).appendingPathComponent("\(name).log"), name: name)
                let throughput = try StatusSoakBenchmark.trainingThroughput(runDirectory: output)
                if ranks == 1 {
                    result.oneRankSamplesPerSecond.append(throughput)
                } else {
                    result.twoRankSamplesPerSecond.append(throughput)
                    result.memory.append(try memory(runDirectory: output))
                }
                log(String(format: "  repetition %d, %d rank(s): %.0f samples/s", repetition + 1, ranks, throughput))
            }
        }
        return result
    }

    /// The memory line of a run's metrics.jsonl.
    static func memory(runDirectory: String) throws -> [RankMemory] {
        let path = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        struct Line: Decodable {
            var kind: String
            var ranks: [RankMemory]?
        }
        for line in text.split(separator: "\n") {
            if let decoded = try? JSONDecoder().decode(Line.self, from: Data(line.utf8)), decoded.kind == "memory", let ranks = decoded.ranks {
                return ranks
            }
        }
        throw StatusSoakError(description: "\(path): no memory line; did the run finish?")
    }
}
