// CacheBenchmark: what the frozen-prefix cache saves. Each repetition trains the same head-only
// job twice with real processes, with the cache and without it (in alternating order), and compares
// the training time of each epoch; the one-off fill is reported against an uncached epoch too.
import Foundation
import ThawProcesses
import ThawRun
import ThawTrainer

/// What the cache benchmark measured.
public struct CacheBenchmarkResult: Sendable {
    /// Seconds per epoch with the cache (training only; the fill is separate), one entry per epoch of every repetition.
    public var cachedEpochSeconds: [Double]
    /// Seconds per epoch without the cache, one entry per epoch of every repetition.
    public var uncachedEpochSeconds: [Double]
    /// Seconds spent filling the cache, one per repetition.
    public var fillSeconds: [Double]

    /// Median cached epoch ÷ median uncached epoch (goal ≤ 0.1).
    public var epochRatio: Double { median(cachedEpochSeconds) / median(uncachedEpochSeconds) }
    /// Median fill ÷ median uncached epoch.
    public var fillRatio: Double { median(fillSeconds) / median(uncachedEpochSeconds) }
}

/// Runs the cache benchmark with real `thaw train` processes.
public enum CacheBenchmark {
    /// Runs `repetitions` cached/uncached pairs of the job in `configPath` (a head-only plan is forced).
    /// - Parameters:
    ///   - thaw: The thaw executable.
    ///   - ranks: Ranks per run (1 = a plain process).
    ///   - overrides: `--set` overrides for every run.
    ///   - mpirunOptions: Extra mpirun arguments (for example `--allow-run-as-root`).
    ///   - scratch: A directory for run outputs and logs.
    public static func run(thaw: String, configPath: String, ranks: Int, repetitions: Int, overrides: [String],
                           mpirunOptions: [String], scratch: String, log: (String) -> Void) throws -> CacheBenchmarkResult {
        var result = CacheBenchmarkResult(cachedEpochSeconds: [], uncachedEpochSeconds: [], fillSeconds: [])
        for repetition in 0..<repetitions {
            for cached in repetition % 2 == 0 ? [true, false] : [false, true] {
                let name = "cache-\(repetition)-\(cached ? "on" : "off")"
                let output = (scratch as NSString).appendingPathComponent(name)
                let sets = (overrides + ["run.output=\(output)", "run.name=\(name)", "unfreezing.policy=fixed", "unfreezing.table={\"0\": [head]}",
                                         "training.feature_cache.enabled=\(cached)", "checkpoint.every_epochs=0"]).flatMap { ["--set", $0] }
                let train = ["train", "--config", configPath, "--progress", "quiet"] + sets
                let logPath = (scratch as NSString).appendingPathComponent("\(name).log")
                try StatusSoakBenchmark.runToCompletion(ranks == 1 ? thaw : mpirunPath,
                                                        ranks == 1 ? train : mpirunOptions + ["-np", String(ranks), thaw] + train,
                                                        log: logPath, name: name)
                let epochs = try epochRecords(runDirectory: output)
                let seconds = epochs.map(\.seconds)
                if cached {
                    guard epochs.allSatisfy({ $0.fromCache == true }) else {
                        throw StatusSoakError(description: "\(name): the cache was not used; see \(logPath)")
                    }
                    result.cachedEpochSeconds += seconds
                    result.fillSeconds.append(epochs.compactMap(\.cacheFillSeconds).reduce(0, +))
                } else {
                    result.uncachedEpochSeconds += seconds
                }
                log("  repetition \(repetition + 1), cache \(cached ? "on " : "off"): epochs "
                    + seconds.map { String(format: "%.2f s", $0) }.joined(separator: ", ")
                    + (cached ? String(format: "; fill %.2f s", result.fillSeconds.last ?? 0) : ""))
            }
        }
        return result
    }

    /// The epoch records of a run's metrics.jsonl.
    static func epochRecords(runDirectory: String) throws -> [EpochRecord] {
        let path = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        struct Kind: Decodable { var kind: String }
        let records = text.split(separator: "\n").compactMap { line -> EpochRecord? in
            guard (try? JSONDecoder().decode(Kind.self, from: Data(line.utf8)))?.kind == "epoch" else { return nil }
            return try? JSONDecoder().decode(EpochRecord.self, from: Data(line.utf8))
        }
        guard !records.isEmpty else { throw StatusSoakError(description: "\(path): no epoch records") }
        return records
    }
}
