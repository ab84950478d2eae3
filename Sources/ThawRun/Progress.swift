// Progress: how rank 0 shows a run to a person, as a run observer. A live line on a terminal,
// plain lines (about ten per epoch) when the output is a file or a CI log.
import Foundation
import ThawPlan
import ThawTrainer
import ThawPlan

#if canImport(Glibc)
import Glibc
#endif

/// How progress is shown.
public enum ProgressStyle: String, CaseIterable, Sendable {
    /// A live line when standard output is a terminal, plain lines otherwise.
    case auto
    /// One line redrawn in place (for terminals).
    case live
    /// About ten plain lines per epoch (for logs and CI).
    case lines
    /// Epoch summaries only.
    case quiet
}

/// Renders training events for people.
public final class ProgressPrinter {
    fileprivate let live: Bool
    fileprivate let quiet: Bool
    fileprivate var lastPlainStep = -1
    /// What a plan's trainable groups amount to (`150,016 parameters (0.66%), 600,064 B/step`), once the model is known.
    public var describeTrainable: (([String]) -> String)?

    /// Creates a printer.
    ///
    /// Note that under mpirun each rank's standard output is a pseudo-terminal even when mpirun's
    /// own output is a file, so launch scripts pass an explicit style.
    public init(style: ProgressStyle) {
        quiet = style == .quiet
        switch style {
        case .auto: live = isatty(STDOUT_FILENO) != 0
        case .live: live = true
        case .lines, .quiet: live = false
        }
    }

    /// Prints one line immediately (standard output is flushed so logs interleave correctly).
    public func line(_ text: String) {
        if live { print("\r\u{1B}[2K", terminator: "") }
        print(text)
        fflush(nil)
    }

    fileprivate func bar(_ step: Int, _ steps: Int) -> String {
        let width = 20
        let filled = steps > 0 ? step * width / steps : 0
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}

extension ProgressPrinter: RunObserver {
    /// `epoch N: plan vV, trainable [...]  thawed: ...  lr ...`.
    public func planApplied(_ plan: TrainingPlan, atStep step: Int) {
        let thawed = plan.newlyThawed.isEmpty ? "" : "  thawed: \(plan.newlyThawed.joined(separator: ", "))"
        let rates = plan.trainableGroups.reversed().map { "\($0)=\(format(plan.learningRates[$0] ?? 0))" }.joined(separator: " ")
        let share = describeTrainable.map { " (\($0(plan.trainableGroups)))" } ?? ""
        line("epoch \(plan.epoch + 1): plan v\(plan.version), trainable [\(plan.trainableGroups.joined(separator: ", "))]\(share)\(thawed)  lr \(rates)")
    }

    /// The live line, or about ten plain lines per epoch.
    public func stepFinished(_ report: StepReport) -> OperatorCommand? {
        guard !quiet else { return nil }
        let text = "epoch \(report.epoch + 1) step \(report.step)/\(report.steps)  loss \(String(format: "%.4f", report.loss))  "
            + "\(Int(report.samplesPerSecond)) samples/s"
        if live {
            print("\r\u{1B}[2K" + bar(report.step, report.steps) + " " + text, terminator: "")
            fflush(nil)
        } else if report.step == report.steps || report.step * 10 / report.steps != lastPlainStep {
            lastPlainStep = report.step * 10 / report.steps
            line("  " + text)
        }
        return nil
    }

    /// `epoch N done: ...`, then the checkpoint's path.
    public func epochFinished(_ record: EpochRecord, checkpoint: String?) {
        var text = "epoch \(record.epoch + 1) done: train loss \(String(format: "%.4f", record.train.loss)) "
            + "acc \(percent(record.train.accuracy))"
        if let v = record.validation { text += "  val loss \(String(format: "%.4f", v.loss)) acc \(percent(v.accuracy))" }
        if let t = record.test { text += "  test acc \(percent(t.accuracy))" }
        text += "  \(String(format: "%.1f", record.seconds)) s  \(bytes(record.bytesExchanged)) exchanged"
        if let fill = record.cacheFillSeconds { text += String(format: "  (+%.1f s filling the feature cache)", fill) }
        line(text)
        if let checkpoint { line("thaw: checkpoint \(checkpoint)") }
    }

    /// The note as a line.
    public func note(_ text: String) { line(text) }
}

private func format(_ rate: Float) -> String { String(format: "%.2e", rate) }
