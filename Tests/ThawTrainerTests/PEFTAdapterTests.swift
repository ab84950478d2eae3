// LoRA against Hugging Face PEFT (scripts/fixtures/peft_lora.py wrote Tests/Fixtures/peft_tiny*):
// PEFT's own adapter directory loads onto the tiny BERT and gives PEFT's logits; `--adapter-only`
// writes PEFT's keys, values and settings back; `--merge-adapters` gives the adapted forward; and
// adapter directories or settings that do not fit are refused naming the file, field or layer.
import Foundation
import Testing
import ThawData
import ThawKernels
import ThawNN
import ThawOptim
import ThawTesting
@testable import ThawRun
@testable import ThawTrainer

@Suite(.serialized) struct PEFTAdapterTests {
    let fixtures = packageRoot() + "/Tests/Fixtures"
    var adapterDirectory: String { fixtures + "/peft_tiny" }

    /// The fixture's model: the tiny BERT, 3 classes, mean pooling, LoRA r 4 alpha 8 on query, value, intermediate.
    func section(targets: [AdapterTarget] = [.query, .value, .intermediate], rank: Int = 4, alpha: Float = 8) -> ModelSection {
        var section = ModelSection()
        section.architecture = "bert"
        section.bertConfig = fixtures + "/bert_tiny_config.json"
        section.classes = 3
        section.pooling = .mean
        var lora = LowRankSection()
        lora.rank = rank
        lora.alpha = alpha
        lora.targets = targets
        section.adapters = AdapterSection(.lowRank(lora))
        section.pretrained = adapterDirectory
        return section
    }

    func loadedModel(_ section: ModelSection) throws -> Model {
        let model = try ModelZoo.build(section, sampleShape: [12], seed: 3)
        _ = try ModelZoo.loadPretrained(section.pretrained, into: model, architecture: "bert", strict: true, adapters: section.adapters)
        return model
    }

    func logits(_ model: Model) throws -> [Float] {
        let fixture = try Fixture(named: "peft_tiny")
        let ids = Tensor(shape: [3, 12])
        for (index, value) in try fixture.floats("ids").enumerated() { ids.data[index] = value }
        return Array(try model.forward(ids, training: false).buffer)
    }

    @Test func peftsAdapterDirectoryGivesPEFTsLogits() throws {
        let model = try loadedModel(section())
        let expected = try Fixture(named: "peft_tiny").floats("logits")
        let actual = try logits(model)
        #expect(actual.count == expected.count)
        for (a, e) in zip(actual, expected) { #expect(abs(a - e) < 1e-4, "logit \(a) vs PEFT's \(e)") }
        // Without the adapters the logits differ: the fixture's factors matter.
        let plain = try ModelZoo.build(section(), sampleShape: [12], seed: 3)
        _ = try ModelZoo.loadPretrained(fixtures + "/bert_tiny.safetensors", into: plain, architecture: "bert", strict: false)
        let adapterKeys = try SafeTensors.read(adapterDirectory + "/adapter_model.safetensors").tensors
        for entry in plain.store.parameterEntries where entry.group == "head" {
            let key = try #require(PEFTAdapter.key(forThawName: entry.name, architecture: try ModelZoo.architecture("bert")))
            let values = try #require(adapterKeys[key]).values
            for i in 0..<entry.count { plain.store.parameters[entry.offset + i] = values[i] }
        }
        #expect(zip(try logits(plain), expected).contains { abs($0 - $1) > 1e-2 })
    }

    @Test func exportWritesPEFTsFilesAndMergesToTheAdaptedForward() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-peft-export-\(getpid())").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let model = try loadedModel(section())
        var config = TrainingConfig()
        config.model = section()
        let optimizer = try Optimizer(rule: UpdateRule(OptimizerSection()), store: model.store)
        var metadata = CheckpointMetadata(epochsCompleted: 1, globalStep: 1, configDigest: "0", layoutDigest: "0", worldSize: 1,
                                          architecture: "bert", plan: nil, planner: nil, thawedAtStep: [:],
                                          optimizerStepCounts: Array(repeating: 0, count: model.parameterGroups.count),
                                          optimizerHasState: Array(repeating: false, count: model.parameterGroups.count), history: [])
        metadata.configuration = String(decoding: config.canonicalJSON, as: UTF8.self)
        try Checkpoint.write(model: model, optimizer: optimizer, metadata: metadata, to: scratch + "/checkpoint.safetensors")
        let checkpoint = try Checkpoint.load(scratch + "/checkpoint.safetensors")

        // --adapter-only: PEFT's keys and values, and its settings.
        try CheckpointExport.writeAdapter(checkpoint, directory: scratch + "/adapter")
        let mine = try SafeTensors.read(scratch + "/adapter/adapter_model.safetensors").tensors
        let peft = try SafeTensors.read(adapterDirectory + "/adapter_model.safetensors").tensors
        #expect(Set(mine.keys) == Set(peft.keys))
        for (key, tensor) in peft { #expect(mine[key] == tensor, "\(key)") }
        let settings = try PEFTAdapter.readSettings(directory: scratch + "/adapter")
        #expect(settings.rank == 4 && settings.alpha == 8 && settings.modulesToSave == ["classifier"])
        #expect(Set(settings.targetModules) == ["query", "value", "intermediate.dense"])
        // Its base is the adapter directory's base, not the adapter directory itself.
        #expect(settings.baseModel == URL(fileURLWithPath: fixtures + "/bert_tiny.safetensors").standardizedFileURL.path)
        // And it loads back to the same forward.
        var again = section()
        again.pretrained = scratch + "/adapter"
        #expect(try logits(try loadedModel(again)) == (try logits(model)))

        // The command: a LoRA checkpoint is refused in plain form (exit 1), and the two forms exclude each other (64).
        let thaw = try #require(thawExecutablePath())
        let plainRun = try spawnProcessGroup([thaw, "export", "--checkpoint", scratch + "/checkpoint.safetensors", "--out", scratch + "/p.safetensors"],
                                             hangGuardSeconds: 60)
        #expect(plainRun.exitCode == 1 && plainRun.output.contains("has LoRA adapters: pass --merge-adapters"), "\(plainRun.output)")
        let both = try spawnProcessGroup([thaw, "export", "--checkpoint", scratch + "/checkpoint.safetensors", "--out", scratch + "/b",
                                          "--merge-adapters", "--adapter-only"], hangGuardSeconds: 60)
        #expect(both.exitCode == 64 && both.output.contains("exclude each other"), "\(both.output)")
        let adapterRun = try spawnProcessGroup([thaw, "export", "--checkpoint", scratch + "/checkpoint.safetensors", "--out", scratch + "/cli",
                                                "--adapter-only"], hangGuardSeconds: 60)
        #expect(adapterRun.exitCode == 0 && FileManager.default.fileExists(atPath: scratch + "/cli/adapter_config.json"), "\(adapterRun.output)")

        // --merge-adapters: plain Hugging Face names whose forward is the adapted one.
        #expect(throws: ExportError.self) { try CheckpointExport.standardTensors(checkpoint, form: .plain) }
        let merged = try CheckpointExport.standardTensors(checkpoint, form: .mergedAdapters)
        #expect(!merged.contains { $0.name.contains("lora_") })
        try SafeTensors.write(merged, to: scratch + "/merged.safetensors")
        var plain = section()
        plain.adapters = nil
        plain.pretrained = ""
        let mergedModel = try ModelZoo.build(plain, sampleShape: [12], seed: 5)
        let report = try ModelZoo.loadPretrained(scratch + "/merged.safetensors", into: mergedModel, architecture: "bert", strict: true)
        #expect(report.replaced.isEmpty && report.missing.isEmpty)
        for (a, e) in zip(try logits(mergedModel), try logits(model)) { #expect(abs(a - e) <= 1e-5 * max(1, abs(e)), "merged \(a) vs adapted \(e)") }
    }

    @Test func adapterDirectoriesThatDoNotFitAreRefusedByField() throws {
        func failure(_ section: ModelSection) -> String {
            do { _ = try loadedModel(section); return "" } catch { return "\(error)" }
        }
        #expect(failure(section(rank: 8)).contains("adapter_config.json: r: is 4 but model.adapters.rank is 8"))
        #expect(failure(section(alpha: 16)).contains("lora_alpha: is 8.0 but model.adapters.alpha is 16"))
        let keyed = failure(section(targets: [.query, .key, .value, .intermediate]))
        #expect(keyed.contains("target_modules") && keyed.contains("attention.self.key"), "\(keyed)")
        let fewer = failure(section(targets: [.query, .intermediate]))
        #expect(fewer.contains("adapter_model.safetensors") && fewer.contains("attention.self.value.lora_"), "\(fewer)")
        var unadapted = section()
        unadapted.adapters = nil
        #expect(failure(unadapted).contains("set model.adapters to kind lora"))

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-peft-bad-\(getpid())").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let original = try String(contentsOfFile: adapterDirectory + "/adapter_config.json", encoding: .utf8)
        try FileManager.default.copyItem(atPath: adapterDirectory + "/adapter_model.safetensors", toPath: scratch + "/adapter_model.safetensors")
        var bad = section()
        bad.pretrained = scratch
        for (from, to, field) in [("\"LORA\"", "\"IA3\"", "peft_type"), ("\"use_dora\": false", "\"use_dora\": true", "use_dora"),
                                  ("\"../bert_tiny.safetensors\"", "\"/nowhere/base\"", "base_model_name_or_path"),
                                  ("\"r\": 4", "\"r\": -4", "r")] {
            try original.replacingOccurrences(of: from, with: to).write(toFile: scratch + "/adapter_config.json", atomically: true, encoding: .utf8)
            #expect(failure(bad).contains("adapter_config.json: \(field):"), "\(field): \(failure(bad))")
        }
        try "{\"peft_type\": ".write(toFile: scratch + "/adapter_config.json", atomically: true, encoding: .utf8)
        #expect(failure(bad).contains("is not a JSON object"))
    }

    @Test func adapterSettingsThatDoNotFitTheArchitectureNameTheKeyAndLayer() throws {
        func failure(_ yaml: String, sampleShape: [Int] = [12]) -> String {
            do {
                let config = try TrainingConfig.parse(yaml, file: "test.yaml")
                var section = config.model
                if section.architecture == "bert" { section.bertConfig = fixtures + "/bert_tiny_config.json" }
                _ = try ModelZoo.build(section, sampleShape: sampleShape, seed: 1)
                return ""
            } catch { return "\(error)" }
        }
        let unknown = failure("model: {architecture: bert, adapters: {kind: lora, targets: [queries]}}")
        #expect(unknown.contains("model.adapters.targets") && unknown.contains("queries"), "\(unknown)")
        #expect(failure("model: {architecture: bert, adapters: {kind: lora, rank: 0}}").contains("model.adapters.rank"))
        let wide = failure("model: {architecture: bert, adapters: {kind: lora, rank: 33}}")
        #expect(wide.contains("model.adapters.rank") && wide.contains("layer0.encoder.layer.0.attention.query"), "\(wide)")
        let noLayer = failure("model: {architecture: mobilenet_v2, adapters: {kind: lora, targets: [query]}}", sampleShape: [3, 32, 32])
        #expect(noLayer.contains("model.adapters.targets") && noLayer.contains("mobilenet_v2") && noLayer.contains("query"), "\(noLayer)")
        let bitFitRank = failure("model: {architecture: bert, adapters: {kind: bias, rank: 4}}")
        #expect(bitFitRank.contains("model.adapters.rank") && bitFitRank.contains("applies to kind lora"), "\(bitFitRank)")
    }
}
