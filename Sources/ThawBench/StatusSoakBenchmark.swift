// StatusSoakBenchmark: hundreds of status queries per second against a coordinator while a real
// job trains. Each repetition runs the same short job twice, quiet and under query load (in
// alternating order, so drift on a shared machine affects both alike), and compares training
// throughput; it also records every query's latency.
import Foundation
import ThawProcesses
import ThawRun
import ThawTrainer
import ThawCoordinator
import ThawPlan

#if canImport(Glibc)
import Glibc
#endif

/// What one soak run measured.
public struct StatusSoakResult: Sendable {
    /// Training samples per second without queries, one per repetition.
    public var quietSamplesPerSecond: [Double]
    /// Training samples per second under query load, one per repetition.
    public var loadedSamplesPerSecond: [Double]
    /// Every status query's round-trip time in seconds.
    public var latencies: [Double]
    /// Queries that got no answer within the timeout.
    public var unanswered: Int
    /// Seconds the query load ran, over all repetitions.
    public var loadSeconds: Double

    /// Median over repetitions of loaded ÷ quiet throughput (goal ≥ 0.95).
    public var throughputRatio: Double {
        median(zip(loadedSamplesPerSecond, quietSamplesPerSecond).map { $0 / $1 })
    }

    /// The `fraction` quantile of the latencies (0.5 = median).
    public func latency(quantile fraction: Double) -> Double {
        let sorted = latencies.sorted()
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
    }
}

/// An error in the soak benchmark's own processes.
public struct StatusSoakError: Error, CustomStringConvertible {
    /// What went wrong.
    public var description: String
}

/// Runs the soak benchmark with real processes: `thaw coordinator` and `mpirun … thaw train`.
public enum StatusSoakBenchmark {
    /// Runs `repetitions` pairs of the job in `configPath`.
    /// - Parameters:
    ///   - thaw: The thaw executable.
    ///   - ranks: Workers under mpirun.
    ///   - rate: Target status queries per second during the loaded runs.
    ///   - overrides: `--set` overrides for both the coordinator and the workers.
    ///   - mpirunOptions: Extra mpirun arguments (for example `--allow-run-as-root`).
    ///   - scratch: A directory for run outputs; each run gets its own subdirectory.
    public static func run(thaw: String, configPath: String, ranks: Int, rate: Double, repetitions: Int,
                           overrides: [String], mpirunOptions: [String], scratch: String,
                           log: (String) -> Void) throws -> StatusSoakResult {
        var result = StatusSoakResult(quietSamplesPerSecond: [], loadedSamplesPerSecond: [], latencies: [], unanswered: 0, loadSeconds: 0)
        for repetition in 0..<repetitions {
            for loaded in repetition % 2 == 0 ? [false, true] : [true, false] {
                let name = "soak-\(repetition)-\(loaded ? "loaded" : "quiet")"
                let output = (scratch as NSString).appendingPathComponent(name)
                let sets = overrides + ["run.output=\(output)", "run.name=\(name)"]
                let load = try runJob(thaw: thaw, configPath: configPath, ranks: ranks, overrides: sets, mpirunOptions: mpirunOptions,
                                      scratch: scratch, name: name, queryRate: loaded ? rate : nil)
                let throughput = try trainingThroughput(runDirectory: output)
                if loaded {
                    result.loadedSamplesPerSecond.append(throughput)
                    result.latencies += load.latencies
                    result.unanswered += load.unanswered
                    result.loadSeconds += load.seconds
                } else {
                    result.quietSamplesPerSecond.append(throughput)
                }
                log(String(format: "  repetition %d %@: %.0f samples/s", repetition + 1, loaded ? "loaded" : "quiet ", throughput)
                    + (loaded ? String(format: ", %d queries (%.0f/s)", load.latencies.count, Double(load.latencies.count) / max(load.seconds, 1e-9)) : ""))
            }
        }
        return result
    }

    /// Samples per second over the whole run's training time (every epoch's training part).
    static func trainingThroughput(runDirectory: String) throws -> Double {
        let path = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw StatusSoakError(description: "\(path): missing; the training run did not write its metrics")
        }
        var samples = 0.0, seconds = 0.0
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  object["kind"] as? String == "epoch", let time = object["seconds"] as? Double,
                  let rate = object["samples_per_second"] as? Double else { continue }
            samples += rate * time
            seconds += time
        }
        guard seconds > 0 else { throw StatusSoakError(description: "\(path): no epoch records") }
        return samples / seconds
    }

    /// One job: a coordinator, mpirun workers, and (with `queryRate`) a status client querying it.
    static func runJob(thaw: String, configPath: String, ranks: Int, overrides: [String], mpirunOptions: [String],
                       scratch: String, name: String, queryRate: Double?) throws -> (latencies: [Double], unanswered: Int, seconds: Double) {
        let sets = overrides.flatMap { ["--set", $0] }
        let endpointFile = (scratch as NSString).appendingPathComponent("\(name).endpoint")
        try? FileManager.default.removeItem(atPath: endpointFile)
        let coordinator = try start(thaw, ["coordinator", "--config", configPath] + sets
                                    + ["--bind", "tcp://127.0.0.1:*", "--endpoint-file", endpointFile, "--exit-when-done"],
                                    log: (scratch as NSString).appendingPathComponent("\(name)-coordinator.log"))
        defer { coordinator.stop() }
        var endpoint: String?
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: endpointFile, encoding: .utf8), !text.isEmpty { endpoint = text; break }
            usleep(50_000)
        }
        guard let endpoint else { throw StatusSoakError(description: "the coordinator did not start; see \(scratch)/\(name)-coordinator.log") }
        let workersLog = (scratch as NSString).appendingPathComponent("\(name)-workers.log")
        let workers = try start(mpirunPath, mpirunOptions + ["-np", String(ranks), thaw, "train", "--config", configPath]
                                + sets + ["--coordinator", endpoint, "--progress", "quiet"], log: workersLog)
        defer { workers.stop() }

        var latencies: [Double] = []
        var unanswered = 0
        let started = Coordinator.clock()
        if let queryRate {
            let context = try ZMQContext()
            var requester = try JSONRequester(context: context, address: endpoint)
            let request = CoordinatorRequest.status.encoded()
            var next = started
            while workers.isRunning {
                let now = Coordinator.clock()
                if now < next { usleep(UInt32(min(0.01, next - now) * 1e6)); continue }
                next += 1 / queryRate
                // Falling far behind (a stall) restarts the pacing instead of bursting to catch up.
                if now - next > 1 { next = now }
                let sent = Coordinator.clock()
                do {
                    _ = try requester.request(request, timeout: 5)
                    latencies.append(Coordinator.clock() - sent)
                } catch {
                    unanswered += 1
                    requester = try JSONRequester(context: context, address: endpoint)
                }
            }
        } else {
            _ = workers.waitForExit(seconds: .infinity)
        }
        let seconds = Coordinator.clock() - started
        _ = workers.waitForExit(seconds: .infinity)
        guard workers.exitCode == 0 else {
            throw StatusSoakError(description: "the training job \(name) failed (exit \(workers.exitCode ?? -1)); see \(workersLog)")
        }
        return (latencies, unanswered, seconds)
    }

    static func start(_ executable: String, _ arguments: [String], log: String) throws -> BackgroundProcess {
        try BackgroundProcess([executable] + arguments, outputPath: log)
    }

    /// Runs a process to the end with its output in `log`; throws naming `name` and the log if it fails.
    static func runToCompletion(_ executable: String, _ arguments: [String], log: String, name: String) throws {
        let process = try start(executable, arguments, log: log)
        _ = process.waitForExit(seconds: .infinity)
        guard process.exitCode == 0 else {
            throw StatusSoakError(description: "the run \(name) failed (exit \(process.exitCode ?? -1)); see \(log)")
        }
    }
}
