// thaw: the one executable. Each subcommand lives in its own file.
import ArgumentParser

/// The `thaw` command and its subcommands.
@main
struct Thaw: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thaw",
        abstract: "Distributed transfer learning: fine-tune pretrained networks with progressive unfreezing.",
        subcommands: [TrainCommand.self, CoordinatorCommand.self, StatusCommand.self, ControlCommand.self, KeygenCommand.self,
                      ConvertTorchCommand.self, InspectCommand.self, ExportCommand.self, ModelsCommand.self, EvalCommand.self, PredictCommand.self, ReportCommand.self, FewShotCommand.self, CompareCommand.self, BenchCommand.self,
                      SelfTestCollectiveCommand.self])
}
