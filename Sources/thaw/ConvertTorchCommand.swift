// thaw convert-torch: converts a PyTorch state dict (.pth/.pt, zip or legacy format) to safetensors,
// without PyTorch. The pickle is interpreted by ThawData's restricted unpickler, so nothing in the
// file is executed.
import ArgumentParser
import Foundation
import ThawData

/// `thaw convert-torch FILE.pth --out FILE.safetensors`.
struct ConvertTorchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert-torch",
        abstract: "Convert a PyTorch state dict (.pth, zip or legacy format) to a safetensors file (F32), without PyTorch.")

    @Argument(help: "The PyTorch checkpoint (torch.save of a state dict).") var input: String
    @Option(help: "The safetensors file to write (default: the input with the extension .safetensors).") var out: String?

    func run() throws {
        let output = out ?? ((input as NSString).deletingPathExtension + ".safetensors")
        let checkpoint = try TorchCheckpoint.read(input)
        let tensors = checkpoint.names.compactMap { name in checkpoint.tensors[name].map { (name: name, tensor: $0) } }
        try SafeTensors.write(tensors, metadata: ["format": "pt", "source": (input as NSString).lastPathComponent,
                                                  "converted_by": "thaw convert-torch"], to: output)
        let values = tensors.reduce(0) { $0 + $1.tensor.values.count }
        print("thaw: \(tensors.count) tensors (\(values) values) from \(input) (\(checkpoint.format.rawValue) format) written to \(output) as F32")
        let converted = tensors.filter { $0.tensor.dtype != "F32" }
        if !converted.isEmpty {
            let kinds = Dictionary(grouping: converted, by: \.tensor.dtype).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
            print("thaw: converted to F32: \(kinds)")
        }
        if !checkpoint.skipped.isEmpty { print("thaw: left out entries that are not tensors: \(checkpoint.skipped.joined(separator: ", "))") }
    }
}
