// thaw report: an SVG plot and a Markdown summary of a run, from its metrics.jsonl.
import ArgumentParser
import Foundation
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw report RUN_DIR [--out DIR]`.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write report.svg (loss and accuracy per epoch with thaw events, time and bytes exchanged per epoch) and report.md for a run; with a trace (training.trace), report.md adds the exchange overlap per epoch and the slowest rank per step.")

    @Argument(help: "The run directory (the one holding metrics.jsonl).") var runDirectory: String
    @Option(help: "Where to write report.svg and report.md (default: the run directory).") var out: String?

    func run() throws {
        let report = try RunReport(runDirectory: runDirectory)
        let directory = out ?? runDirectory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let svg = (directory as NSString).appendingPathComponent("report.svg")
        let markdown = (directory as NSString).appendingPathComponent("report.md")
        try report.svg().write(toFile: svg, atomically: true, encoding: .utf8)
        let timeline = try TraceReport(runDirectory: runDirectory)
        try (report.markdown(svgFile: "report.svg") + (timeline?.markdown() ?? "")).write(toFile: markdown, atomically: true, encoding: .utf8)
        print("thaw report: \(svg)\nthaw report: \(markdown)")
    }
}
