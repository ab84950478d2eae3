// thaw train: runs training as one rank (plain process) or as every rank under mpirun.
import ArgumentParser
import Foundation
import ThawPlan
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw train --config FILE [--set key=value ...]`.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train or fine-tune a model. Run it under mpirun for several ranks.")

    @Option(name: .long, help: "The YAML or JSON configuration file (defaults apply when omitted).")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key, e.g. --set training.epochs=2.", valueName: "key=value"))
    var overrides: [String] = []

    @Option(help: "Progress display: auto, live, lines or quiet. Under mpirun, auto sees a terminal; launch scripts pass lines when logging.")
    var progress: String = "auto"

    @Option(help: ArgumentHelp("Resume from a checkpoint file, `latest` for the newest in the run's checkpoints/ directory, or `auto`: the newest if there is one, else start fresh (for batch scripts that are rerun after a failure).", valueName: "path|latest|auto"))
    var resume: String?

    @Option(help: ArgumentHelp("Take plans from the coordinator at this address and report to it.", valueName: "tcp://host:port"))
    var coordinator: String?

    @Option(help: "Seconds to keep trying to reach the coordinator at start before giving up.")
    var coordinatorTimeout: Double = 30

    func run() throws {
        do {
            let configuration = try TrainingConfig.load(path: config, overrides: overrides)
            guard let style = ProgressStyle(rawValue: progress) else {
                throw ValidationError("--progress: expected one of \(ProgressStyle.allCases.map(\.rawValue).joined(separator: ", ")), got '\(progress)'")
            }
            try TrainingRun(config: configuration, progress: style, resume: resume.map(ResumeSource.init), coordinator: coordinator,
                            coordinatorTimeout: coordinatorTimeout).execute()
        } catch let error as ConfigError {
            throw configurationFailure(RuntimeFailure.configuration(error, file: config))
        } catch let error where TrainingRun.isConfigurationError(error) {
            throw configurationFailure(error)
        }
    }

    /// A configuration error: `Error: …` on standard error and exit status 78 (EX_CONFIG), so that
    /// launchers (--max-restarts) stop instead of retrying; a malformed option keeps its usage text and 64.
    private func configurationFailure(_ error: any Error) -> any Error {
        if error is ValidationError { return error }
        FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
        return ExitCode(TrainingRun.configurationExitCode)
    }
}
