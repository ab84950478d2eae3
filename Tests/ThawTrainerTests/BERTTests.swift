// BERT against Hugging Face transformers: a tiny random BertModel (scripts/fixtures/bert.py: hidden
// states, mean and [CLS] pooling, gradients), the real all-MiniLM-L6-v2 (scripts/fixtures/minilm.py:
// sentence embeddings), config.json errors, Hugging Face names both ways, export, prefixed files,
// the padding mask derived from the ids and the id check.
import Foundation
import Testing
import ThawPlan
import ThawData
import ThawKernels
import ThawNN
import ThawOptim
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

@Suite(.serialized) struct BERTTests {
    let fixtures = packageRoot() + "/Tests/Fixtures"
    var tinyConfig: String { fixtures + "/bert_tiny_config.json" }
    var tinyWeights: String { fixtures + "/bert_tiny.safetensors" }

    func section(pooling: BERTPooling = .mean, classes: Int = 32, headHidden: Int = 0) -> ModelSection {
        var section = ModelSection()
        section.architecture = "bert"
        section.bertConfig = tinyConfig
        section.classes = classes
        section.pooling = pooling
        section.headHidden = headHidden
        return section
    }

    /// Makes the linear head the identity, so the logits are the pooled vector.
    func makeHeadIdentity(_ model: Model) throws {
        let weight = try #require(model.store.entry(named: "head.classifier.weight"))
        let width = weight.shape[1]
        try #require(weight.shape == [width, width])
        for i in 0..<weight.count { model.store.parameters[weight.offset + i] = i / width == i % width ? 1 : 0 }
        let bias = try #require(model.store.entry(named: "head.classifier.bias"))
        for i in bias.range { model.store.parameters[i] = 0 }
    }

    /// The tiny model with every dropout off (the fixture is in eval mode; gradients need a training forward).
    func tinyModelWithoutDropout(pooling: BERTPooling) throws -> Model {
        var configuration = try BERTConfiguration.load(path: tinyConfig)
        configuration.hiddenDropout = 0
        configuration.attentionDropout = 0
        let model = try Model(groups: BERT.groups(configuration: configuration, classes: 32, pooling: pooling, dropout: 0),
                              sampleShape: [12], seed: 3)
        _ = try ModelZoo.loadPretrained(tinyWeights, into: model, architecture: "bert", strict: true)
        try makeHeadIdentity(model)
        return model
    }

    @Test(arguments: [BERTPooling.mean, .cls])
    func tinyModelMatchesTransformers(pooling: BERTPooling) throws {
        let fixture = try Fixture(named: "bert_tiny")
        let ids = try fixture.tensor("ids")

        // Through the model zoo, as a run builds it: a strict load, with the pooler and position_ids ignored.
        let model = try ModelZoo.build(section(pooling: pooling), sampleShape: [12], seed: 1)
        #expect(model.groupNames == ["embeddings", "layer0", "layer1", "head"])
        let report = try ModelZoo.loadPretrained(tinyWeights, into: model, architecture: "bert", strict: true)
        #expect(report.loaded.count == 5 + 2 * 16)
        #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.shapeMismatched.isEmpty)
        #expect(report.ignored == ["embeddings.position_ids", "pooler.dense.bias", "pooler.dense.weight"])
        try makeHeadIdentity(model)
        let pooled = try model.forward(ids, training: false).values
        let expected = try fixture(pooling == .mean ? "mean" : "cls").data
        let pooledError = relativeError(pooled, expected)
        #expect(pooledError <= 1e-4, "\(pooledError)")

        // Training-mode forward (no dropout) and the gradients of sum(pooled · projection).
        let exact = try tinyModelWithoutDropout(pooling: pooling)
        exact.store.zeroGradients(in: 0..<exact.store.parameterCount)
        let trained = try exact.forward(ids, training: true).values
        let trainedError = relativeError(trained, expected)
        #expect(trainedError <= 1e-4, "\(trainedError)")
        exact.backward(try fixture.tensor("projection.\(pooling.rawValue)"))
        let prefix = "grad.\(pooling.rawValue)."
        let names = fixture.tensors.keys.filter { $0.hasPrefix(prefix) }.sorted()
        #expect(names.count == (pooling == .mean ? 37 : 8))
        for name in names {
            let huggingFace = String(name.dropFirst(prefix.count))
            let thaw = try #require(BERT.thawName(huggingFace: huggingFace), "\(huggingFace)")
            let gradient = try #require(exact.store.gradient(of: thaw), "\(thaw)")
            if huggingFace.hasSuffix("attention.self.key.bias") {
                // Exactly 0 in theory (softmax is shift-invariant per query); both sides are rounding noise.
                #expect(gradient.allSatisfy { abs($0) < 1e-5 }, "\(huggingFace)")
            } else {
                // Documented tolerance for gradients, float32 against float64 through 2 layers: 2e-4 relative
                // (measured ≤ 5e-5; the fixture rounds to 5 significant digits).
                let error = relativeError(gradient, try fixture(name).data)
                #expect(error <= 2e-4, "\(huggingFace): \(error)")
            }
        }
    }

    @Test func tinyHiddenStatesMatchTransformers() throws {
        let fixture = try Fixture(named: "bert_tiny")
        let configuration = try BERTConfiguration.load(path: tinyConfig)
        let encoder = try Model(groups: Array(BERT.groups(configuration: configuration, classes: 2).dropLast()), sampleShape: [12])
        let report = try ModelZoo.loadPretrained(tinyWeights, into: encoder, architecture: "bert", strict: true)
        #expect(report.loaded.count == 37)
        let hidden = try encoder.forward(try fixture.tensor("ids"), training: false)
        #expect(hidden.shape == [3, 12, 32])
        // Padded positions included: their queries attend to the real tokens, as in transformers.
        let error = relativeError(hidden.values, try fixture("hidden").data)
        #expect(error <= 1e-4, "\(error)")
    }

    @Test func realMiniLMMatchesSentenceEmbeddings() throws {
        let directory = try PretrainedFiles.miniLM()
        let fixture = try Fixture(named: "minilm_embeddings")
        let ids = try fixture.tensor("ids")
        var section = ModelSection()
        section.architecture = "bert"
        section.pretrained = directory          // config.json and model.safetensors from the directory
        section.classes = 384
        let model = try ModelZoo.build(section, sampleShape: [ids.shape[1]], seed: 1)
        #expect(model.groupNames == ["embeddings"] + (0..<6).map { "layer\($0)" } + ["head"])
        let report = try ModelZoo.loadPretrained(directory, into: model, architecture: "bert", strict: true)
        #expect(report.loaded.count == 5 + 6 * 16)
        #expect(report.ignored == ["embeddings.position_ids", "pooler.dense.bias", "pooler.dense.weight"])
        try makeHeadIdentity(model)
        let mean = try model.forward(ids, training: false).values
        let meanError = relativeError(mean, try fixture("mean").data)
        #expect(meanError <= 1e-4, "\(meanError)")
        // sentence-transformers' output for this model is the L2-normalized mean.
        var normalized = mean
        for row in 0..<4 {
            let slice = normalized[(row * 384)..<((row + 1) * 384)]
            let norm = slice.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            for i in slice.indices { normalized[i] /= norm }
        }
        let normalizedError = relativeError(normalized, try fixture("normalized").data)
        #expect(normalizedError <= 1e-4, "\(normalizedError)")
    }

    @Test func configErrorsNameTheFileAndKey() throws {
        let good = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tinyConfig))) as? [String: Any] ?? [:]
        #expect(try BERTConfiguration.parse(JSONSerialization.data(withJSONObject: good), file: "c.json")
                == BERTConfiguration(vocabularySize: 100, hiddenSize: 32, layers: 2, heads: 4, intermediateSize: 64, maximumPositions: 16))
        func error(_ change: (inout [String: Any]) -> Void) throws -> BERTConfigurationError? {
            var json = good
            change(&json)
            let data = try JSONSerialization.data(withJSONObject: json)
            do {
                _ = try BERTConfiguration.parse(data, file: "c.json")
                return nil
            } catch { return error }
        }
        let missing = try error { $0["hidden_size"] = nil }
        #expect(missing?.key == "hidden_size" && missing?.file == "c.json" && (missing?.message.contains("missing") ?? false))
        let activation = try error { $0["hidden_act"] = "relu" }
        #expect(activation?.key == "hidden_act" && (activation?.description.contains("gelu") ?? false))
        #expect(try error { $0["num_attention_heads"] = "four" }?.key == "num_attention_heads")
        #expect(try error { $0["num_attention_heads"] = 5 }?.key == "num_attention_heads")
        #expect(try error { $0["pad_token_id"] = 100 }?.key == "pad_token_id")
        #expect(try error { $0["hidden_dropout_prob"] = 1.5 }?.key == "hidden_dropout_prob")
        #expect(try error { $0["position_embedding_type"] = "relative_key" }?.key == "position_embedding_type")
        #expect(try error { $0["model_type"] = "roberta" }?.key == "model_type")
        #expect(throws: BERTConfigurationError.self) { try BERTConfiguration.parse(Data("[1, 2]".utf8), file: "c.json") }
        #expect {
            try BERTConfiguration.load(path: "/nonexistent/config.json")
        } throws: { "\($0)".contains("/nonexistent/config.json") }

        // The run configuration: bert without a config.json, a bad pooling, a negative head width, too long inputs.
        var bare = ModelSection()
        bare.architecture = "bert"
        #expect { try ModelZoo.build(bare, sampleShape: [8], seed: 1) } throws: { ($0 as? ConfigError)?.key == "model.bert_config" }
        #expect {
            try TrainingConfig.parse("model: {architecture: bert, pooling: max}")
        } throws: { ($0 as? ConfigError)?.key == "model.pooling" && "\($0)".contains("cls") }
        #expect {
            try TrainingConfig.parse("model: {architecture: bert, head_hidden: -1}")
        } throws: { ($0 as? ConfigError)?.key == "model.head_hidden" }
        let parsed = try TrainingConfig.parse("model: {architecture: bert, bert_config: c.json, pooling: cls, head_hidden: 64}")
        #expect(parsed.model.bertConfig == "c.json" && parsed.model.pooling == .cls && parsed.model.headHidden == 64)
        #expect { try ModelZoo.build(section(), sampleShape: [17], seed: 1) } throws: { "\($0)".contains("max_position_embeddings") }
    }

    @Test func namesAreHuggingFacesBothWays() throws {
        let file = try SafeTensors.read(tinyWeights).tensors.keys.filter { !BERT.isUnusedByDesign($0) }
        for headHidden in [0, 16] {
            let model = try ModelZoo.build(section(headHidden: headHidden), sampleShape: [12], seed: 1)
            let names = model.store.parameterEntries.map(\.name)
            let external = names.compactMap(ModelZoo.externalName(architecture: "bert"))
            #expect(external.count == names.count)
            #expect(Set(external.filter { !$0.hasPrefix("classifier.") }) == Set(file))
            #expect(external.filter { $0.hasPrefix("classifier.") } == (headHidden == 0
                ? ["classifier.weight", "classifier.bias"]
                : ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"]))
            for (name, hf) in zip(names, external) { #expect(BERT.thawName(huggingFace: hf) == name, "\(hf)") }
        }
        #expect(BERT.huggingFaceName("layer1.encoder.layer.1.attention_norm.weight") == "encoder.layer.1.attention.output.LayerNorm.weight")
        #expect(BERT.huggingFaceName("layer1.encoder.layer.0.attention_norm.weight") == nil)
        #expect(BERT.thawName(huggingFace: "pooler.dense.weight") == nil)
        #expect(BERT.canonicalName(fileName: "bert.encoder.layer.0.output.dense.bias") == "encoder.layer.0.output.dense.bias")
        #expect(BERT.canonicalName(fileName: "0.auto_model.embeddings.LayerNorm.bias") == "embeddings.LayerNorm.bias")
    }

    @Test func exportWritesHuggingFaceNames() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-bert-export-\(getpid())").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let model = try ModelZoo.build(section(), sampleShape: [12], seed: 1)
        _ = try ModelZoo.loadPretrained(tinyWeights, into: model, architecture: "bert", strict: true)
        let optimizer = try Optimizer(rule: UpdateRule(OptimizerSection()), store: model.store)
        let metadata = CheckpointMetadata(epochsCompleted: 1, globalStep: 1, configDigest: "0", layoutDigest: "0", worldSize: 1,
                                          architecture: "bert", plan: nil, planner: nil, thawedAtStep: [:],
                                          optimizerStepCounts: Array(repeating: 0, count: model.groups.count),
                                          optimizerHasState: Array(repeating: false, count: model.groups.count), history: [])
        try Checkpoint.write(model: model, optimizer: optimizer, metadata: metadata, to: scratch + "/checkpoint.safetensors")
        let thaw = try #require(thawExecutablePath())
        let export = try spawnProcessGroup([thaw, "export", "--checkpoint", scratch + "/checkpoint.safetensors", "--out", scratch + "/out.safetensors"],
                                           hangGuardSeconds: 60)
        try #require(export.exitCode == 0, "\(export.output)")
        let exported = try SafeTensors.read(scratch + "/out.safetensors").tensors
        let original = try SafeTensors.read(tinyWeights).tensors.filter { !BERT.isUnusedByDesign($0.key) }
        #expect(Set(exported.keys) == Set(original.keys).union(["classifier.weight", "classifier.bias"]))
        for (name, tensor) in original { #expect(exported[name]?.values == tensor.values, "\(name)") }

        // The export loads back strictly, head included.
        let again = try ModelZoo.build(section(), sampleShape: [12], seed: 9)
        let report = try ModelZoo.loadPretrained(scratch + "/out.safetensors", into: again, architecture: "bert", strict: true)
        #expect(report.loaded.count == 39 && report.ignored.isEmpty)
        #expect(again.store.values(of: "head.classifier.weight") == model.store.values(of: "head.classifier.weight"))
    }

    @Test func prefixedFilesLoad() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-bert-prefixed-\(getpid())").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let original = try SafeTensors.read(tinyWeights).tensors
        let reference = try ModelZoo.build(section(), sampleShape: [12], seed: 1)
        _ = try ModelZoo.loadPretrained(tinyWeights, into: reference, architecture: "bert", strict: true)
        for prefix in BERT.wrapperPrefixes {
            // A BertForSequenceClassification-style file: prefixed encoder, its own 2-class classifier.
            var renamed = original.sorted { $0.key < $1.key }.map { (name: prefix + $0.key, tensor: $0.value) }
            renamed.append((name: "classifier.weight", tensor: SafeTensor(shape: [2, 32], values: Array(repeating: 0.5, count: 64))))
            renamed.append((name: "classifier.bias", tensor: SafeTensor(shape: [2], values: [0, 0])))
            let path = scratch + "/prefixed.safetensors"
            try SafeTensors.write(renamed, to: path)
            let model = try ModelZoo.build(section(classes: 3), sampleShape: [12], seed: 1)
            let report = try ModelZoo.loadPretrained(path, into: model, architecture: "bert", strict: true)
            #expect(report.loaded.count == 37, "\(prefix)")
            #expect(report.replaced == ["head.classifier.weight", "head.classifier.bias"], "\(prefix)")
            #expect(report.ignored == ["embeddings.position_ids", "pooler.dense.bias", "pooler.dense.weight"], "\(prefix): \(report)")
            for entry in reference.store.parameterEntries where entry.group != "head" {
                #expect(model.store.values(of: entry.name) == reference.store.values(of: entry.name), "\(prefix) \(entry.name)")
            }
        }
        // A file that is no BERT at all: strict refuses and names what is missing and unexpected.
        try SafeTensors.write([(name: "features.0.weight", tensor: SafeTensor(shape: [1], values: [1]))], to: scratch + "/other.safetensors")
        let model = try ModelZoo.build(section(), sampleShape: [12], seed: 1)
        #expect {
            try ModelZoo.loadPretrained(scratch + "/other.safetensors", into: model, architecture: "bert", strict: true)
        } throws: { "\($0)".contains("features.0.weight") && "\($0)".contains("embeddings.word_embeddings.weight") }
    }

    @Test func paddingMaskComesFromTheIds() throws {
        let mask = AttentionMask()
        let layer = PaddingMaskFromIds(attentionMask: mask, padTokenId: 0, vocabularySize: 10)
        let ids = Tensor(shape: [3, 4], values: [2, 5, 3, 0, 2, 3, 0, 0, 0, 0, 0, 0])
        #expect(layer.forward(ids, mode: .training) === ids)
        #expect(mask.isSet && mask.values.values == [1, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0])  // position 0 always real
        #expect(layer.backward(GradientCheck.randomTensor([3, 4], seed: 1), computeInputGradient: false) == nil)
        #expect(layer.backward(GradientCheck.randomTensor([3, 4], seed: 1), computeInputGradient: true)?.values.allSatisfy { $0 == 0 } == true)
        #expect(layer.parameterSpecs.isEmpty)

        // Padding content never reaches real tokens: changing what follows a sequence's end changes nothing before it.
        let model = try ModelZoo.build(section(classes: 4), sampleShape: [12], seed: 1)
        let fixture = try Fixture(named: "bert_tiny")
        let first = try model.forward(try fixture.tensor("ids"), training: false).values
        let shorter = try fixture.tensor("ids")
        shorter[0, 11] = 0   // sequence 0 loses its last token: its output changes, the others do not
        let second = try model.forward(shorter, training: false).values
        #expect(first[0..<4] != second[0..<4])
        #expect(Array(first[4...]) == Array(second[4...]))
    }

    @Test func invalidIdsAreNamedBeforeTraining() throws {
        let model = try ModelZoo.build(section(), sampleShape: [4], seed: 1)
        let good = InMemoryDataset(features: [2, 5, 3, 0, 2, 99, 3, 0], labels: [0, 1], sampleShape: [4], classCount: 2)
        try ModelZoo.validateInputs(good, for: model, name: "training set")
        for bad: Float in [100, -1, 2.5, .nan] {
            let data = InMemoryDataset(features: [2, 5, 3, 0, 2, 7, bad, 0], labels: [0, 1], sampleShape: [4], classCount: 2)
            #expect {
                try ModelZoo.validateInputs(data, for: model, name: "training set")
            } throws: { error in
                let text = "\(error)"
                return text.contains("training set, sample 1, position 2") && text.contains("0..<100")
            }
        }
        // Other architectures take any values.
        let mlp = try ModelZoo.build(architecture: "mlp", sampleShape: [4])
        try ModelZoo.validateInputs(InMemoryDataset(features: [0.5, -3, 1e9, 2], labels: [0], sampleShape: [4], classCount: 2), for: mlp, name: "x")
    }

    @Test func embeddingGradientsMatchFiniteDifferences() throws {
        let embeddings = BERTEmbeddings(vocabularySize: 7, hiddenSize: 6, maximumPositions: 5, typeVocabularySize: 2, padTokenId: 0)
        let harness = LayerHarness(embeddings)
        // One tensor holds every value, so its storage outlives the reads (a temporary per value would
        // be freed before its pointer is read in an optimized build).
        let values = GradientCheck.randomTensor([harness.store.parameterCount], seed: 3)
        withExtendedLifetime(values) {
            for i in 0..<harness.store.parameterCount { harness.store.parameters[i] = values.data[i] }
        }
        // No padding id here: finite differences would see row 0 move the output, which HF's padding_idx ignores.
        let ids = Tensor(shape: [2, 4], values: [1, 4, 4, 3, 2, 6, 5, 5])
        let report = GradientCheck.run(harness, input: ids, epsilon: 1e-2, checkInput: false)
        #expect(report.worst < 5e-3, "\(report)")
        #expect(report.parameterErrors.count == 5)
        // The padding row gets no gradient (HF's padding_idx), although id 0 appears.
        let padded = Tensor(shape: [2, 4], values: [1, 4, 4, 0, 2, 6, 0, 0])
        harness.store.zeroGradients(in: 0..<harness.store.parameterCount)
        _ = embeddings.forward(padded, mode: .training)
        _ = embeddings.backward(GradientCheck.randomTensor([2, 4, 6], seed: 3), computeInputGradient: false)
        let word = try #require(harness.store.gradient(of: "word_embeddings.weight"))
        #expect(word[0..<6].allSatisfy { $0 == 0 } && word[6..<12].contains { $0 != 0 })
    }
}

extension Fixture {
    /// A fixture entry as a new tensor.
    fileprivate func tensor(_ name: String) throws -> Tensor {
        let entry = try self(name)
        return Tensor(shape: entry.shape, values: entry.data)
    }
}
