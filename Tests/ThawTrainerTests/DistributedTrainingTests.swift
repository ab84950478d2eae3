// End-to-end data-parallel tests with real processes: `thaw train` as one plain process
// versus `mpirun -np 2` and `-np 3` on the same global batch must give the same parameters;
// the bytes exchanged must equal 4 × the trainable parameters per step; a configuration
// mismatch between ranks must stop every rank with an error naming it.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawData
import ThawKernels
import ThawTesting

/// A scratch run directory with seeded synthetic data as NPY files, removed at the end.
final class ScratchRun {
    let directory: String

    /// Writes `samples` seeded samples of `sampleShape` (flattened features carry the class signal,
    /// unless `randomLabels`, when labels are drawn apart from the features and nothing can be learned).
    init(samples: Int = 61, sampleShape: [Int] = [6], classes: Int = 3, seed: UInt64 = 5, randomLabels: Bool = false) throws {
        let features = sampleShape.reduce(1, *)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var generator = SplitMix64(seed: seed)
        var x: [Float] = []
        var y: [Int64] = []
        for _ in 0..<samples {
            let label = Int64(generator.next(below: classes))
            y.append(randomLabels ? Int64(generator.next(below: classes)) : label)
            for f in 0..<features {
                let noise = Float(generator.next() >> 40) / Float(1 << 24) - 0.5
                x.append(noise + (f % classes == Int(label) ? 1 : 0))
            }
        }
        try writeNPY(path("x.npy"), descriptor: "<f4", shape: [samples] + sampleShape, bytes: x.withUnsafeBytes { Array($0) })
        try writeNPY(path("y.npy"), descriptor: "<i8", shape: [samples], bytes: y.withUnsafeBytes { Array($0) })
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// Writes a config for the MLP (or another architecture) on this data; `extra` is appended YAML,
    /// and a section it names replaces the template's (a repeated key is an error).
    func writeConfig(name: String, extra: String, model: String = "{architecture: mlp, classes: 3}") throws -> String {
        let template = """
            run: {name: \(name), output: \(path(name)), seed: 9}
            model: \(model)
            data: {dataset: npy, train_features: \(path("x.npy")), train_labels: \(path("y.npy")), test_features: \(path("x.npy")), test_labels: \(path("y.npy"))}
            optimizer: {kind: sgd, learning_rate: 0.05, momentum: 0.9}
            """
        let replaced = Set(extra.split(separator: "\n").compactMap { line in
            line.first?.isLetter == true ? line.split(separator: ":").first.map(String.init) : nil
        })
        let kept = template.split(separator: "\n").filter { !replaced.contains(String($0.split(separator: ":")[0])) }
        let text = kept.joined(separator: "\n") + "\n" + extra
        let file = path("\(name).yaml")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    private func writeNPY(_ path: String, descriptor: String, shape: [Int], bytes: [UInt8]) throws {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descriptor)', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var data: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xff), UInt8(header.count >> 8)]
        data += Array(header.utf8) + bytes
        try Data(data).write(to: URL(fileURLWithPath: path))
    }
}

/// Runs `thaw train` with `ranks` processes (1 = a plain process, no mpirun).
func runTraining(config: String, ranks: Int, extraArguments: [String] = [], mpirunPrefix: [String] = []) throws -> SpawnResult {
    let thaw = try #require(thawExecutablePath(), "no thaw executable next to the test binary")
    let command = [thaw, "train", "--config", config, "--progress", "quiet"] + extraArguments
    let arguments = ranks == 1 && mpirunPrefix.isEmpty
        ? command
        : localMPIRun + ["-np", String(ranks)] + mpirunPrefix + command
    return try spawnProcessGroup(arguments, hangGuardSeconds: 180)
}

func readWeights(_ path: String) throws -> [String: SafeTensor] {
    try SafeTensors.read(path).tensors
}

func maximumRelativeDifference(_ a: [String: SafeTensor], _ b: [String: SafeTensor]) -> Double {
    var worst = 0.0
    for (name, tensor) in a {
        guard let other = b[name] else { return .infinity }
        worst = max(worst, relativeError(tensor.values, other.values))
    }
    return a.count == b.count ? worst : .infinity
}

/// The epoch lines of a run's metrics.jsonl.
func epochRecords(_ directory: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: (directory as NSString).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    return text.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }.filter { $0["kind"] as? String == "epoch" }
}

@Suite(.serialized) struct DistributedTrainingTests {
    /// One rank with global batch B, then N ranks with the same B, for each exchange path.
    @Test(arguments: ["plain", "bucketed"])
    func ranksMatchOneProcess(exchange: String) throws {
        let scratch = try ScratchRun()
        // A tiny bucket size forces several buckets on the bucketed path.
        let extra = "training: {epochs: 2, batch_size: 12, exchange: \(exchange), bucket_size_mb: 0.01}"
        let single = try runTraining(config: try scratch.writeConfig(name: "one", extra: extra), ranks: 1)
        try #require(single.exitCode == 0, "single process failed:\n\(single.output)")
        let reference = try readWeights(scratch.path("one/model.safetensors"))
        for ranks in [2, 3] {
            let name = "ranks\(ranks)"
            let run = try runTraining(config: try scratch.writeConfig(name: name, extra: extra), ranks: ranks)
            try #require(run.exitCode == 0 && !run.timedOut, "\(ranks) ranks failed:\n\(run.output)")
            let weights = try readWeights(scratch.path("\(name)/model.safetensors"))
            let difference = maximumRelativeDifference(weights, reference)
            #expect(difference < 1e-5, "\(ranks) ranks (\(exchange)) differ from one process by \(difference)")
            // Evaluation is sharded across ranks, yet counts each of the 61 samples exactly once.
            let mine = try #require(try epochRecords(scratch.path(name)).last?["test"] as? [String: Any])
            let theirs = try #require(try epochRecords(scratch.path("one")).last?["test"] as? [String: Any])
            #expect(mine["samples"] as? Int == 61)
            #expect(mine["accuracy"] as? Double == theirs["accuracy"] as? Double)
            let loss = try #require(mine["loss"] as? Double), referenceLoss = try #require(theirs["loss"] as? Double)
            #expect(abs(loss - referenceLoss) < 1e-5 * max(1, abs(referenceLoss)))
        }
    }

    /// With a frozen prefix, only the trainable range is exchanged: exactly 4 bytes per trainable
    /// parameter per step, and frozen parameters stay bit-identical to their initial values.
    @Test func frozenPrefixMatchesAndSendsOnlyTrainableBytes() throws {
        let scratch = try ScratchRun()
        let extra = """
            training: {epochs: 2, batch_size: 12, exchange: bucketed, bucket_size_mb: 0.01}
            unfreezing: {policy: fixed, table: {"0": [head], "1": [hidden2, head]}}
            """
        let single = try runTraining(config: try scratch.writeConfig(name: "one", extra: extra), ranks: 1)
        try #require(single.exitCode == 0, "single process failed:\n\(single.output)")
        let run = try runTraining(config: try scratch.writeConfig(name: "two", extra: extra), ranks: 2)
        try #require(run.exitCode == 0 && !run.timedOut, "2 ranks failed:\n\(run.output)")
        let reference = try readWeights(scratch.path("one/model.safetensors"))
        let weights = try readWeights(scratch.path("two/model.safetensors"))
        #expect(maximumRelativeDifference(weights, reference) < 1e-5)

        // Parameter counts per group from the saved shapes.
        func count(_ prefix: String) -> Int {
            weights.filter { $0.key.hasPrefix(prefix + ".") }.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        }
        let records = try epochRecords(scratch.path("two"))
        try #require(records.count == 2)
        let steps = try #require(records[0]["steps"] as? Int)
        #expect(steps == 6)   // ceil(61 / 12)
        #expect(records[0]["bytes_exchanged"] as? Int == steps * 4 * count("head"))
        #expect(records[1]["bytes_exchanged"] as? Int == steps * 4 * (count("head") + count("hidden2")))
        #expect(count("hidden1") > 0)

        // The frozen group never moved: it equals a run with zero epochs... i.e. its initial values,
        // which every run derives from the same seed.
        let initial = try runTraining(config: try scratch.writeConfig(name: "init", extra: extra), ranks: 1,
                                      extraArguments: ["--set", "training.epochs=1", "--set", "optimizer.learning_rate=1e-30"])
        try #require(initial.exitCode == 0, "\(initial.output)")
        let untouched = try readWeights(scratch.path("init/model.safetensors"))
        for name in weights.keys where name.hasPrefix("hidden1.") {
            #expect(weights[name]?.values == untouched[name]?.values, "frozen \(name) changed")
        }
    }

    /// Two micro-batches of 6 per step give the same step as one batch of 12, on 1 and on 2 ranks,
    /// and every rank can keep its own log.
    /// Augmentation is keyed by (seed, epoch, sample), so 2 and 3 ranks train on exactly the
    /// augmented batches one process does; and it is really applied (the weights differ without it).
    @Test func augmentedTrainingMatchesAcrossRanks() throws {
        let scratch = try ScratchRun(samples: 90, sampleShape: [1, 8, 8])
        let extra = "training: {epochs: 2, batch_size: 12}\n"
        // The MLP has no batch norm, whose per-rank statistics would differ from one process's.
        let model = "{architecture: mlp, classes: 3}"
        let augmented = { (name: String) in
            try scratch.writeConfig(name: name, extra: extra, model: model)
        }
        var results: [String: [String: SafeTensor]] = [:]
        for (name, ranks) in [("one", 1), ("two", 2), ("three", 3)] {
            let config = try augmented(name)
            let text = try String(contentsOfFile: config, encoding: .utf8)
                .replacingOccurrences(of: "test_labels: \(scratch.path("y.npy"))}", with: "test_labels: \(scratch.path("y.npy")), crop_padding: 2, horizontal_flip: true}")
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            let run = try runTraining(config: config, ranks: ranks)
            try #require(run.exitCode == 0, "\(run.output)")
            results[name] = try readWeights(scratch.path("\(name)/model.safetensors"))
        }
        let plain = try runTraining(config: try scratch.writeConfig(name: "plain", extra: extra, model: model), ranks: 1)
        try #require(plain.exitCode == 0, "\(plain.output)")
        let one = try #require(results["one"])
        #expect(maximumRelativeDifference(one, try #require(results["two"])) < 1e-5)
        #expect(maximumRelativeDifference(one, try #require(results["three"])) < 1e-5)
        #expect(maximumRelativeDifference(one, try readWeights(scratch.path("plain/model.safetensors"))) > 1e-3,
                "augmentation changed nothing")
    }

    @Test func accumulationMatchesOneLargeBatch() throws {
        let scratch = try ScratchRun()
        let plain = try runTraining(config: try scratch.writeConfig(name: "one", extra: "training: {epochs: 2, batch_size: 12}"), ranks: 1)
        try #require(plain.exitCode == 0, "\(plain.output)")
        let reference = try readWeights(scratch.path("one/model.safetensors"))
        for ranks in [1, 2] {
            let name = "accumulate\(ranks)"
            let extra = "training: {epochs: 2, batch_size: 12, accumulation_steps: 2}\nrun: {name: \(name), output: \(scratch.path(name)), seed: 9, log_per_rank: true}"
            let config = try scratch.writeConfig(name: name, extra: "")
            try (String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "run: {name: \(name), output: \(scratch.path(name)), seed: 9}\n", with: "") + extra)
                .write(toFile: config, atomically: true, encoding: .utf8)
            let run = try runTraining(config: config, ranks: ranks)
            try #require(run.exitCode == 0, "\(run.output)")
            let weights = try readWeights(scratch.path("\(name)/model.safetensors"))
            #expect(maximumRelativeDifference(weights, reference) < 1e-5, "accumulation on \(ranks) rank(s)")
            for rank in 0..<ranks {
                let log = try String(contentsOfFile: scratch.path("\(name)/rank-\(rank).log"), encoding: .utf8)
                #expect(log.contains("rank \(rank): epoch 2 done"), "rank \(rank) log:\n\(log)")
            }
        }
    }

    /// Ranks started with different configurations stop with an error naming the mismatch.
    @Test func configurationMismatchStopsEveryRank() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "bad", extra: "training: {epochs: 1, batch_size: 12}")
        let thaw = try #require(thawExecutablePath())
        let started = Date()
        let result = try spawnProcessGroup(localMPIRun + [
            "-np", "1", thaw, "train", "--config", config, "--progress", "quiet", ":",
            "-np", "1", thaw, "train", "--config", config, "--progress", "quiet", "--set", "training.epochs=2",
        ], hangGuardSeconds: 120)
        #expect(!result.timedOut, "the mismatch hung:\n\(result.output)")
        #expect(result.exitCode != 0)
        #expect(result.output.contains("ranks disagree on configuration"), "output:\n\(result.output)")
        #expect(Date().timeIntervalSince(started) < 60)
    }
}
