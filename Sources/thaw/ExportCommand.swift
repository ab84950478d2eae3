// thaw export: a checkpoint's weights as safetensors under the architecture's standard names.
import ArgumentParser
import Foundation
import ThawData
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw export --checkpoint C --out model.safetensors`.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's parameters and batch-norm statistics as safetensors under the standard (PyTorch) names.",
        discussion: "Optimizer state is left out. The output loads with safetensors.torch.load_file and model.load_state_dict.")

    @Option(help: "The checkpoint (RUN/checkpoints/epoch-NNNN.safetensors), or `latest` with --run.") var checkpoint: String
    @Option(name: .customLong("run"), help: "The run directory, for --checkpoint latest.") var runDirectory: String?
    @Option(help: "The safetensors file to write.") var out: String

    func run() throws {
        let path = try Checkpoint.resolve(checkpoint, runDirectory: runDirectory ?? ".")
        let loaded = try Checkpoint.load(path)
        let rename = ModelZoo.externalName(architecture: loaded.metadata.architecture)
        let names = loaded.tensors.keys.filter { !$0.hasPrefix("optimizer.") }.sorted()
        var exported: [(name: String, tensor: SafeTensor)] = []
        for name in names {
            guard let external = rename(name), let tensor = loaded.tensors[name] else { continue }
            exported.append((external, SafeTensor(shape: tensor.shape, values: tensor.values, dtype: "F32")))
        }
        try SafeTensors.write(exported, metadata: ["format": "pt", "architecture": loaded.metadata.architecture,
                                                   "epochs": String(loaded.metadata.epochsCompleted)], to: out)
        print("thaw export: \(exported.count) tensors from \(path) → \(out)")
    }
}
