// A seeded fuzz of the configuration loader: 10,000 mutations of the committed configs/*.yaml
// (deleted lines, extreme and non-finite numbers, wrong types, deep nesting, long strings, random
// bytes, repeated keys, random --set overrides) go through TrainingConfig.parse, its validation and,
// when accepted, the memory estimate. The assertions: the process survives (no trap, no stack
// overflow, no allocation failure), every refusal is a ConfigError naming its file (or --set) with
// a key or a message, and every estimate either fits or is refused with the key to change.
import Foundation
import Testing
import ThawPlan
import ThawData
import ThawKernels
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

/// Builds one hostile variant of a configuration at a time from a seeded generator.
private struct ConfigMutator {
    var generator: SplitMix64

    static let values = [
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-1", "0", "1", "2147483648", "100000000",
        "4096", "1048576", "1e400", "-1e400", ".inf", "-.inf", ".nan", "1.5", "-0.0", "0.999999", "1e-45", "true", "null", "~", "[]", "{}", "''",
        "[1, 2, 3]", "{a: 1}", "0x10", "1_000", "'x'", "small-cnn", "mlp", "resnet50", "vgg16_bn", "bert", "mobilenet_v2",
        "fixed", "gradual", "plateau", "sgd", "one_cycle", "imagenet", "npy", "text-csv", "uci-digits",
    ]
    static let keys = [
        "run.name", "run.output", "run.seed", "model.architecture", "model.classes", "model.head_dropout", "model.head_hidden",
        "model.domain_adaptation.domain_hidden", "model.domain_adaptation.lambda_max", "data.dataset", "data.image_size",
        "data.max_length", "data.classes", "data.train_limit", "data.crop_padding", "data.normalization", "data.target",
        "training.epochs", "training.batch_size", "training.accumulation_steps", "training.label_smoothing",
        "training.bucket_size_mb", "training.blas_threads", "training.feature_cache.memory_mb", "training.early_stopping.patience",
        "optimizer.kind", "optimizer.learning_rate", "optimizer.beta1", "optimizer.beta2", "optimizer.epsilon", "optimizer.momentum",
        "schedule.kind", "schedule.warmup_steps", "schedule.peak_fraction", "schedule.ratio", "unfreezing.policy",
        "unfreezing.initial_groups", "unfreezing.every", "unfreezing.table.0", "unfreezing.discriminative_factor",
        "checkpoint.every_epochs", "checkpoint.keep_last",
    ]

    mutating func below(_ bound: Int) -> Int { generator.next(below: bound) }
    mutating func pick<Element>(_ elements: [Element]) -> Element { elements[below(elements.count)] }

    mutating func value() -> String {
        switch below(10) {
        case 0: return String(repeating: pick(["x", "9", "é", "[", "{"]), count: 1 + below(5000))
        case 1: return String(generator.next() >> UInt64(below(64)))
        case 2: return "-" + String(generator.next() >> UInt64(below(64)))
        case 3: return String(repeating: "[", count: 1 + below(300)) + String(repeating: "]", count: below(300))
        default: return pick(Self.values)
        }
    }

    /// Zero to two mutations of `text` (none in about a third of the cases, which test overrides
    /// alone), and zero to three overrides.
    mutating func mutate(_ text: String) -> (text: String, overrides: [String]) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for _ in 0..<below(3) where !lines.isEmpty {
            let index = below(lines.count)
            switch below(9) {
            case 0:
                lines.remove(at: index)
            case 1:
                // Replace the value after the first ": " (a block value or the first entry of a flow mapping).
                if let range = lines[index].range(of: ": ") { lines[index] = lines[index][..<range.upperBound] + value() }
            case 2:
                // Replace a value inside a flow mapping.
                var parts = lines[index].components(separatedBy: ", ")
                let part = below(parts.count)
                if let colon = parts[part].range(of: ": ") { parts[part] = parts[part][..<colon.upperBound] + value() + (part == parts.count - 1 ? "}" : "") }
                lines[index] = parts.joined(separator: ", ")
            case 3:
                lines.insert(lines[index], at: index)   // a repeated key
            case 4:
                let depth = 1 + below(200)
                lines.insert(String(repeating: " ", count: below(4)) + "nest: " + String(repeating: "{a: ", count: depth) + "1" + String(repeating: "}", count: depth), at: index)
            case 5:
                lines[index] = String(decoding: (0..<below(80)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }, as: UTF8.self)
            case 6:
                lines[index] = String(repeating: " ", count: 1 + below(8)) + lines[index]
            case 7:
                lines.insert((0..<(1 + below(100))).map { " " + String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n"), at: index)
            default:
                lines[index] += pick([" [", " {", " '", " \"", " &a", " *a", " !!binary", " |", " #"])
            }
        }
        var overrides: [String] = []
        for _ in 0..<below(4) {
            switch below(12) {
            case 0: overrides.append(Array(repeating: "k", count: 1 + below(60)).joined(separator: ".") + "=1")
            case 1: overrides.append(pick(["=", "novalue", ".=1", "a..b=1", " training.epochs=2"]))
            case 2...5: overrides.append(pick(Self.keys) + "=" + value())
            default: overrides.append(pick(Self.keys) + "=" + pick(["1", "2", "4", "8", "64", "0.5", "0.1", "0.01", "1e-4", "16", "32", "4096", "1048576"]))
            }
        }
        return (lines.joined(separator: "\n"), overrides)
    }
}

@Suite struct ConfigFuzzTests {
    @Test func tenThousandHostileConfigurationsNeverCrashTheLoader() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../configs").standardizedFileURL
        let bases = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") }.sorted()
            .map { try String(contentsOfFile: directory.appendingPathComponent($0).path, encoding: .utf8) }
        try #require(bases.count >= 5)
        var mutator = ConfigMutator(generator: SplitMix64(seed: 15))
        var accepted = 0, refused = 0, estimated = 0, tooLarge = 0
        for index in 0..<10_000 {
            let file = "fuzz-\(index).yaml"
            let (text, overrides) = mutator.mutate(mutator.pick(bases))
            let config: TrainingConfig
            do {
                config = try TrainingConfig.parse(text, file: file, overrides: overrides)
                accepted += 1
            } catch {
                refused += 1
                let named = error.file == file || error.file == "--set"
                #expect(named && (!error.key.isEmpty || !error.message.isEmpty) && error.description.contains(error.file),
                        "case \(index): \(error)\n--- text:\n\(text.prefix(600))\n--- overrides: \(overrides.map { $0.prefix(100) })")
                continue
            }
            let planned = RunPreflight.plannedData(config.data)
            do {
                let estimate = try MemoryEstimate.make(config: config, sampleShape: planned.sampleShape ?? [1, 28, 28], samples: planned.samples,
                                                       datasetBytes: planned.bytes, worldSize: 1 + index % 3, bertConfiguration: .miniLML6)
                estimated += 1
                try estimate.check(availableBytes: 23 << 30, ranksOnHost: 1)
            } catch let error as ConfigError {
                tooLarge += 1
                #expect(!error.key.isEmpty && error.message.contains("the run needs about"), "case \(index): \(error)")
            } catch {
                // The architecture refused the shape (ModelZoo): a typed error with a message, as at run time.
                #expect(!"\(error)".isEmpty, "case \(index)")
            }
        }
        // The mutations reach every outcome: refused, accepted, estimated and refused for memory.
        #expect(refused > 1000 && accepted > 1000 && estimated > 500 && tooLarge > 0,
                "refused \(refused), accepted \(accepted), estimated \(estimated), too large \(tooLarge)")
    }
}
