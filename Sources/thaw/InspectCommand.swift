// thaw inspect: lists the tensors of a safetensors file or PyTorch checkpoint (names, dtypes,
// shapes, parameter counts) and, for files Thaw wrote, the counts per layer group.
import ArgumentParser
import ThawData

/// `thaw inspect FILE [--json]`.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List the tensors of a safetensors file or PyTorch checkpoint, with per-group counts for Thaw's files.")

    @Argument(help: "A .safetensors file or a PyTorch checkpoint (.pth/.pt).") var file: String
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        let summary = try TensorFileSummary.inspect(file)
        print(json ? summary.json() : summary.text())
    }
}
