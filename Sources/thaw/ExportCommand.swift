// thaw export: a checkpoint's weights as safetensors under the architecture's standard names.
import ArgumentParser
import Foundation
import ThawData
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw export --checkpoint C --out model.safetensors [--merge-adapters | --adapter-only]`.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's parameters and batch-norm statistics as safetensors under the standard (PyTorch) names.",
        discussion: """
            Optimizer state is left out. The output loads with safetensors.torch.load_file and model.load_state_dict.
            A LoRA checkpoint needs --merge-adapters (plain weights, W += alpha/r · B·A) or --adapter-only \
            (a PEFT adapter directory at --out: adapter_model.safetensors and adapter_config.json).
            """)

    @Option(help: "The checkpoint (RUN/checkpoints/epoch-NNNN.safetensors), or `latest` with --run.") var checkpoint: String
    @Option(name: .customLong("run"), help: "The run directory, for --checkpoint latest.") var runDirectory: String?
    @Option(help: "The safetensors file to write (a directory with --adapter-only).") var out: String
    @Flag(help: "Fold LoRA adapters into the base weights and write plain names.") var mergeAdapters = false
    @Flag(help: "Write only the LoRA adapters and the head, in Hugging Face PEFT's format, into the directory --out.") var adapterOnly = false

    func validate() throws {
        if mergeAdapters && adapterOnly { throw ValidationError("--merge-adapters and --adapter-only exclude each other") }
    }

    func run() throws {
        let path = try Checkpoint.resolve(checkpoint, runDirectory: runDirectory ?? ".")
        let loaded = try Checkpoint.load(path)
        if adapterOnly {
            let count = try CheckpointExport.writeAdapter(loaded, directory: out)
            print("thaw export: \(count) adapter and head tensors from \(path) → \(out)/\(PEFTAdapter.weightsFileName), \(PEFTAdapter.configFileName)")
            return
        }
        let exported = try CheckpointExport.standardTensors(loaded, form: mergeAdapters ? .mergedAdapters : .plain)
        try SafeTensors.write(exported, metadata: ["format": "pt", "architecture": loaded.metadata.architecture,
                                                   "epochs": String(loaded.metadata.epochsCompleted)], to: out)
        print("thaw export: \(exported.count) tensors from \(path) → \(out)" + (mergeAdapters ? " (LoRA merged)" : ""))
    }
}
