// CheckpointExport: what `thaw export` writes from a checkpoint. Plain: every parameter and
// batch-norm statistic under the architecture's standard names. With LoRA adapters the plain form
// would carry `lora_A`/`lora_B` tensors no framework's plain model has, so a LoRA checkpoint is
// exported either merged (W += (alpha/r)·B·A, then plain names) or as a PEFT adapter directory.
import Foundation
import ThawData
import ThawNN
import ThawTrainer

/// The form `thaw export` writes.
public enum ExportForm: Sendable, Equatable {
    /// Standard names; refused for a LoRA checkpoint.
    case plain
    /// LoRA folded into the base weights, then standard names.
    case mergedAdapters
    /// PEFT's `adapter_model.safetensors` and `adapter_config.json`.
    case adapterOnly
}

/// A checkpoint that cannot be exported in the form asked.
public struct ExportError: Error, CustomStringConvertible, Equatable {
    /// The checkpoint.
    public var checkpoint: String
    /// Why, and what to pass instead.
    public var message: String

    /// `CHECKPOINT: message`.
    public var description: String { "\(checkpoint): \(message)" }
}

/// Exports a checkpoint's weights.
public enum CheckpointExport {
    /// The LoRA settings of the run that wrote `checkpoint`, or nil when it has no LoRA factors.
    static func lowRankSettings(_ checkpoint: Checkpoint) throws -> LowRankSection? {
        guard checkpoint.tensors.keys.contains(where: LowRankAdapters.isAdapterParameter) else { return nil }
        guard let json = checkpoint.metadata.configuration else {
            throw ExportError(checkpoint: checkpoint.path, message: "has LoRA factors but no configuration to read their alpha and rank from")
        }
        guard case .lowRank(let section) = try TrainingConfig.parse(json, file: checkpoint.path).model.adapters?.method else {
            throw ExportError(checkpoint: checkpoint.path, message: "has LoRA factors but its configuration sets no model.adapters of kind lora")
        }
        return section
    }

    /// The tensors to write under standard names, in name order, LoRA folded in for `.mergedAdapters`.
    /// - Throws: ``ExportError`` for a LoRA checkpoint in `.plain` form, ``ConfigError`` for a damaged configuration.
    public static func standardTensors(_ checkpoint: Checkpoint, form: ExportForm) throws -> [(name: String, tensor: SafeTensor)] {
        var tensors = checkpoint.tensors.filter { !$0.key.hasPrefix("optimizer.") }
        if let lora = try lowRankSettings(checkpoint) {
            guard form == .mergedAdapters else {
                throw ExportError(checkpoint: checkpoint.path, message: "has LoRA adapters: pass --merge-adapters for plain weights with the "
                                  + "adapters folded in, or --adapter-only for a PEFT adapter directory")
            }
            try merge(&tensors, scale: lora.alpha / Float(lora.rank), checkpoint: checkpoint.path)
        }
        let rename = ModelZoo.externalName(architecture: checkpoint.metadata.architecture)
        return tensors.keys.sorted().compactMap { name in
            guard let external = rename(name), let tensor = tensors[name] else { return nil }
            return (external, SafeTensor(shape: tensor.shape, values: tensor.values, dtype: "F32"))
        }
    }

    /// Folds every `X.lora_A.weight`/`X.lora_B.weight` pair into `X.weight` and drops the factors.
    static func merge(_ tensors: inout [String: SafeTensor], scale: Float, checkpoint: String) throws(ExportError) {
        for downName in tensors.keys.sorted() where downName.hasSuffix(".lora_A.weight") {
            let layer = String(downName.dropLast(".lora_A.weight".count))
            // Linear factors are [r, in] and [out, r]; a 1×1 convolution's carry trailing 1, 1 like its weight.
            guard let down = tensors[downName], let up = tensors[layer + ".lora_B.weight"], var weight = tensors[layer + ".weight"],
                  down.shape.count >= 2, up.shape.count == down.shape.count, weight.shape.count == down.shape.count,
                  down.shape.dropFirst(2).allSatisfy({ $0 == 1 }), up.shape.dropFirst(2).allSatisfy({ $0 == 1 }),
                  Array(weight.shape.prefix(2)) == [up.shape[0], down.shape[1]], up.shape[1] == down.shape[0],
                  weight.values.count == up.shape[0] * down.shape[1] else {
                throw ExportError(checkpoint: checkpoint, message: "LoRA factors of \(layer) do not fit its weight")
            }
            weight.values.withUnsafeMutableBufferPointer { w in
                down.values.withUnsafeBufferPointer { a in
                    up.values.withUnsafeBufferPointer { b in
                        LowRankAdapter.merge(into: w.baseAddress!, down: a.baseAddress!, up: b.baseAddress!, rank: down.shape[0],
                                             inputDimensions: down.shape[1], outputDimensions: up.shape[0], scale: scale)
                    }
                }
            }
            tensors[layer + ".weight"] = weight
            tensors[downName] = nil
            tensors[layer + ".lora_B.weight"] = nil
        }
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` into `directory` (created if
    /// needed), returning the number of tensors written.
    /// - Throws: ``ExportError`` for a checkpoint without LoRA adapters.
    @discardableResult
    public static func writeAdapter(_ checkpoint: Checkpoint, directory: String) throws -> Int {
        guard let lora = try lowRankSettings(checkpoint) else {
            throw ExportError(checkpoint: checkpoint.path, message: "has no LoRA adapters to export with --adapter-only (BitFit's biases are in the plain export)")
        }
        let architecture = try ModelZoo.architecture(checkpoint.metadata.architecture)
        var tensors: [(name: String, tensor: SafeTensor)] = []
        for name in checkpoint.tensors.keys.sorted() where LowRankAdapters.isAdapterParameter(name) || name.hasPrefix("head.") {
            guard let tensor = checkpoint.tensors[name], let key = PEFTAdapter.key(forThawName: name, architecture: architecture) else { continue }
            tensors.append((key, SafeTensor(shape: tensor.shape, values: tensor.values, dtype: "F32")))
        }
        let adapted = Set(PEFTAdapter.adaptedModules(checkpoint.tensors.keys, architecture: architecture))
        let linears = Set(checkpoint.tensors.filter { $0.value.shape.count == 2 && !$0.key.hasPrefix("head.") && $0.key.hasSuffix(".weight") }.keys
            .compactMap { PEFTAdapter.key(forThawName: $0, architecture: architecture) }.map(PEFTAdapter.moduleName(ofKey:)))
        let head = tensors.map(\.name).filter { !$0.contains(".lora_") }.map(PEFTAdapter.moduleName(ofKey:))
        // The base is what model.pretrained named, or that adapter directory's own base.
        var base = try TrainingConfig.parse(checkpoint.metadata.configuration ?? "{}", file: checkpoint.path).model.pretrained
        if PEFTAdapter.isAdapterDirectory(base) { base = try PEFTAdapter.basePath(PEFTAdapter.readSettings(directory: base), directory: base) }
        let settings = PEFTAdapter.Settings(rank: lora.rank, alpha: Double("\(lora.alpha)") ?? Double(lora.alpha), targetModules: targetModules(adapted: adapted, linears: linears),
                                            modulesToSave: Array(Set(head)).sorted(),
                                            baseModel: base.isEmpty ? "" : URL(fileURLWithPath: base).standardizedFileURL.path)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json = try encoder.encode(PEFTAdapter.ConfigurationFile(settings: settings, dropout: Double("\(lora.dropout)") ?? Double(lora.dropout)))
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: (directory as NSString).appendingPathComponent(PEFTAdapter.weightsFileName))
        try (json + Data("\n".utf8)).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(PEFTAdapter.configFileName)), options: .atomic)
        return tensors.count
    }

    /// PEFT's `target_modules`: a short name (`query`, `intermediate.dense`) where it selects exactly
    /// adapted modules among the linears, the full module name otherwise (PEFT matches a name or a dotted suffix).
    static func targetModules(adapted: Set<String>, linears: Set<String>) -> [String] {
        var remaining = adapted
        var names: [String] = []
        let shortNames = AdapterTarget.allCases.flatMap(\.peftModule)
        for short in shortNames {
            let selected = linears.filter { $0 == short || $0.hasSuffix("." + short) }
            if !selected.isEmpty && selected.isSubset(of: adapted) && !selected.isDisjoint(with: remaining) {
                names.append(short)
                remaining.subtract(selected)
            }
        }
        return names + remaining.sorted()
    }
}
