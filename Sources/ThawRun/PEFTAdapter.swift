// PEFTAdapter: Hugging Face PEFT's LoRA directory, both ways. `thaw export --adapter-only` writes
// `adapter_model.safetensors` (the LoRA factors and the head under PEFT's keys) and
// `adapter_config.json`; `model.pretrained` may name such a directory, which then loads its base
// model (`base_model_name_or_path`) and the adapters on top, after checking that the file's LoRA
// settings are the configuration's.
//
// Keys: PEFT wraps the model as `base_model.model.` and drops its adapter name, so a LoRA factor is
// `base_model.model.<module>.lora_A.weight` and a saved head module `base_model.model.<module>.weight`.
// Module names are the architecture's standard ones (torchvision's, or for BERT the names of
// BertForSequenceClassification: `bert.encoder.…`, `classifier`). Thaw's BERT head pools by mean or
// [CLS] without BERT's pooler, so a PyTorch user wraps BertModel and a `classifier` Linear the same
// way (scripts/fixtures/peft_lora.py shows how).
import Foundation
import ThawData
import ThawNN
import ThawPlan

/// A PEFT adapter directory that cannot be read or does not fit the model.
public struct PEFTAdapterError: Error, CustomStringConvertible, Equatable {
    /// The file at fault.
    public var file: String
    /// The field or tensor, when one is at fault.
    public var field: String?
    /// What is wrong and what to do.
    public var message: String

    /// `FILE: field F: message`.
    public var description: String { "\(file): " + (field.map { "\($0): " } ?? "") + message }
}

/// PEFT's LoRA adapter format.
public enum PEFTAdapter {
    /// The configuration file's name.
    public static let configFileName = "adapter_config.json"
    /// The weights file's name.
    public static let weightsFileName = "adapter_model.safetensors"

    /// Whether `path` is a directory holding `adapter_config.json`.
    public static func isAdapterDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(configFileName))
    }

    /// The fields of `adapter_config.json` Thaw reads.
    public struct Settings: Equatable, Sendable {
        /// `r`.
        public var rank: Int
        /// `lora_alpha`.
        public var alpha: Double
        /// `target_modules`: module names or their last parts.
        public var targetModules: [String]
        /// `modules_to_save`: modules saved whole (the head).
        public var modulesToSave: [String]
        /// `base_model_name_or_path`, as written.
        public var baseModel: String
    }

    /// `adapter_config.json` as Thaw writes it: the settings, PEFT's defaults for the rest, and nulls
    /// where PEFT writes them.
    struct ConfigurationFile: Encodable {
        /// The settings.
        var settings: Settings
        /// `lora_dropout`.
        var dropout: Double

        /// Writes PEFT's keys.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: AnyCodingKey.self)
            func put(_ key: String, _ value: some Encodable) throws { try container.encode(value, forKey: AnyCodingKey(stringValue: key)) }
            try put("peft_type", "LORA")
            try put("r", settings.rank)
            try put("lora_alpha", settings.alpha)
            try put("lora_dropout", dropout)
            try put("target_modules", settings.targetModules)
            try put("modules_to_save", settings.modulesToSave)
            try put("bias", "none")
            for key in ["fan_in_fan_out", "use_rslora", "use_dora", "lora_bias"] { try put(key, false) }
            for key in ["inference_mode", "init_lora_weights"] { try put(key, true) }
            for key in ["rank_pattern", "alpha_pattern"] { try put(key, [String: Int]()) }
            for key in ["task_type", "layers_to_transform", "layers_pattern", "revision"] { try container.encodeNil(forKey: AnyCodingKey(stringValue: key)) }
            if settings.baseModel.isEmpty {
                try container.encodeNil(forKey: AnyCodingKey(stringValue: "base_model_name_or_path"))
            } else {
                try put("base_model_name_or_path", settings.baseModel)
            }
        }
    }

    /// Reads and checks `adapter_config.json` in `directory`: LoRA, a positive rank, listed targets, and
    /// none of PEFT's variants whose forward differs (DoRA, rsLoRA, per-layer ranks, fan-in-fan-out).
    public static func readSettings(directory: String) throws(PEFTAdapterError) -> Settings {
        let file = (directory as NSString).appendingPathComponent(configFileName)
        func fail(_ field: String?, _ message: String) -> PEFTAdapterError { PEFTAdapterError(file: file, field: field, message: message) }
        guard let data = FileManager.default.contents(atPath: file), data.count <= 1 << 20 else {
            throw fail(nil, "cannot be read (or is over 1 MiB)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), let json = object as? [String: Any] else {
            throw fail(nil, "is not a JSON object")
        }
        guard let type = json["peft_type"] as? String, type == "LORA" else {
            throw fail("peft_type", "is \(String(describing: json["peft_type"] ?? "absent").prefix(40)); Thaw reads LORA adapters")
        }
        guard let rank = json["r"] as? Int, rank > 0, rank <= ConfigLimits.width else { throw fail("r", "must be a positive integer") }
        guard let alphaNumber = json["lora_alpha"] as? NSNumber, alphaNumber.doubleValue.isFinite, alphaNumber.doubleValue > 0 else {
            throw fail("lora_alpha", "must be a positive number")
        }
        guard let targets = json["target_modules"] as? [String], !targets.isEmpty else {
            throw fail("target_modules", "must list module names (a regular expression is not supported)")
        }
        for (key, unsupported) in [("use_dora", true), ("use_rslora", true), ("fan_in_fan_out", true)] where (json[key] as? Bool) == unsupported {
            throw fail(key, "is true; Thaw's LoRA is the plain W·x + (alpha/r)·B·A·x")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let pattern = json[key] as? [String: Any], !pattern.isEmpty { throw fail(key, "per-layer settings are not supported") }
        }
        guard let base = json["base_model_name_or_path"] as? String, !base.isEmpty else {
            throw fail("base_model_name_or_path", "is missing; Thaw loads the base model from a local path")
        }
        return Settings(rank: rank, alpha: alphaNumber.doubleValue, targetModules: targets,
                        modulesToSave: json["modules_to_save"] as? [String] ?? [], baseModel: base)
    }

    /// The base model's local path: `base_model_name_or_path` as given if it exists, else relative to the adapter directory.
    public static func basePath(_ settings: Settings, directory: String) throws(PEFTAdapterError) -> String {
        let candidates = settings.baseModel.hasPrefix("/") ? [settings.baseModel]
            : [settings.baseModel, (directory as NSString).appendingPathComponent(settings.baseModel)]
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw PEFTAdapterError(file: (directory as NSString).appendingPathComponent(configFileName), field: "base_model_name_or_path",
                                   message: "'\(settings.baseModel.prefix(200))' is not a local file or directory (tried \(candidates.joined(separator: ", "))); "
                                    + "Thaw does not download from the Hub: point it at the fetched backbone")
        }
        return found
    }

    /// Checks that the file's LoRA settings are the configuration's: rank, alpha and the modules adapted.
    public static func check(_ settings: Settings, against section: LowRankSection, adaptedModules: [String],
                             directory: String) throws(PEFTAdapterError) {
        let file = (directory as NSString).appendingPathComponent(configFileName)
        if settings.rank != section.rank {
            throw PEFTAdapterError(file: file, field: "r", message: "is \(settings.rank) but model.adapters.rank is \(section.rank)")
        }
        if Float(settings.alpha) != section.alpha {
            throw PEFTAdapterError(file: file, field: "lora_alpha",
                                   message: "is \(settings.alpha) but model.adapters.alpha is \(String(format: "%g", section.alpha))")
        }
        let expected = Set(adaptedModules)
        let matched = Set(adaptedModules.filter { module in settings.targetModules.contains { module == $0 || module.hasSuffix("." + $0) } })
        if matched != expected {
            throw PEFTAdapterError(file: file, field: "target_modules",
                                   message: "\(settings.targetModules) does not adapt \(expected.subtracting(matched).sorted().prefix(4).joined(separator: ", ")), "
                                    + "which model.adapters.targets [\(section.targets.map(\.rawValue).joined(separator: ", "))] adapts")
        }
    }

    /// PEFT's key for a Thaw parameter name, under the architecture's standard names; nil for a name outside them.
    public static func key(forThawName name: String, architecture: Architecture) -> String? {
        guard let external = architecture.externalName(name) else { return nil }
        let module = architecture.weightNaming == .huggingFaceBERT && !name.hasPrefix("head.") ? "bert." + external : external
        return "base_model.model." + module
    }

    /// The PEFT module names of the layers that carry LoRA factors among `names` (Thaw parameter names).
    static func adaptedModules(_ names: some Sequence<String>, architecture: Architecture) -> [String] {
        names.filter { $0.hasSuffix(".lora_A.weight") }.compactMap { key(forThawName: $0, architecture: architecture) }.map(moduleName(ofKey:))
    }

    /// The module a parameter key belongs to (`base_model.model.bert.…query.lora_A.weight` → `bert.…query`).
    static func moduleName(ofKey key: String) -> String {
        var module = String(key.dropFirst("base_model.model.".count))
        for suffix in [".lora_A.weight", ".lora_B.weight", ".weight", ".bias"] where module.hasSuffix(suffix) {
            module = String(module.dropLast(suffix.count))
            break
        }
        return module
    }

    /// Loads the LoRA factors and the head from `directory`'s weights into `model`, after its base
    /// weights. Every adapter and head parameter must be in the file with its shape, and nothing else.
    public static func loadAdapters(directory: String, into model: Model, architecture: Architecture) throws -> [String] {
        let file = (directory as NSString).appendingPathComponent(weightsFileName)
        let tensors = try SafeTensors.read(file).tensors
        var used = Set<String>()
        var loaded: [String] = []
        let wanted = model.store.parameterEntries.filter { LowRankAdapters.isAdapterParameter($0.name) || $0.group == "head" }
        var copies: [(offset: Int, values: [Float])] = []
        for entry in wanted {
            guard let key = key(forThawName: entry.name, architecture: architecture), let tensor = tensors[key] else {
                throw PEFTAdapterError(file: file, field: entry.name, message: "is missing (PEFT key \(key(forThawName: entry.name, architecture: architecture) ?? "none"))")
            }
            guard tensor.shape == entry.shape else {
                throw PEFTAdapterError(file: file, field: key, message: "has shape \(tensor.shape), the model's \(entry.name) has \(entry.shape)")
            }
            used.insert(key)
            copies.append((entry.offset, tensor.values))
            loaded.append(entry.name)
        }
        if let extra = tensors.keys.sorted().first(where: { !used.contains($0) }) {
            throw PEFTAdapterError(file: file, field: extra, message: "is not a parameter of this model's adapters or head "
                                    + "(\(tensors.count - used.count) such tensors); is model.adapters.targets the adapter's?")
        }
        for copy in copies {
            copy.values.withUnsafeBufferPointer { source in
                (model.store.parameters.baseAddress! + copy.offset).update(from: source.baseAddress!, count: source.count)
            }
        }
        return loaded
    }
}
