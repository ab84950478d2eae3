// Progress: how rank 0 shows a run to a person. A live line on a terminal,
// plain lines (about ten per epoch) when the output is a file or a CI log.
import Foundation
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
    private let live: Bool
    private let quiet: Bool
    private var lastPlainStep = -1

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

    /// Renders one event.
    public func handle(_ event: TrainingEvent) {
        switch event {
        case .plan(let plan, _):
            let thawed = plan.newlyThawed.isEmpty ? "" : "  thawed: \(plan.newlyThawed.joined(separator: ", "))"
            let rates = plan.trainableGroups.reversed().map { "\($0)=\(format(plan.learningRates[$0] ?? 0))" }.joined(separator: " ")
            line("epoch \(plan.epoch + 1): plan v\(plan.version), trainable [\(plan.trainableGroups.joined(separator: ", "))]\(thawed)  lr \(rates)")
        case .step(let epoch, let step, let steps, let loss, let rate):
            guard !quiet else { return }
            let text = "epoch \(epoch + 1) step \(step)/\(steps)  loss \(String(format: "%.4f", loss))  \(Int(rate)) samples/s"
            if live {
                print("\r\u{1B}[2K" + bar(step, steps) + " " + text, terminator: "")
                fflush(nil)
            } else if step == steps || step * 10 / steps != lastPlainStep {
                lastPlainStep = step * 10 / steps
                line("  " + text)
            }
        case .epoch(let record):
            var text = "epoch \(record.epoch + 1) done: train loss \(String(format: "%.4f", record.train.loss)) "
                + "acc \(percent(record.train.accuracy))"
            if let v = record.validation { text += "  val loss \(String(format: "%.4f", v.loss)) acc \(percent(v.accuracy))" }
            if let t = record.test { text += "  test acc \(percent(t.accuracy))" }
            text += "  \(String(format: "%.1f", record.seconds)) s  \(bytes(record.bytesExchanged)) exchanged"
            if let fill = record.cacheFillSeconds { text += String(format: "  (+%.1f s filling the feature cache)", fill) }
            line(text)
        case .note(let text):
            line(text)
        }
    }

    private func bar(_ step: Int, _ steps: Int) -> String {
        let width = 20
        let filled = steps > 0 ? step * width / steps : 0
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}

/// A fraction as a percentage with two decimals.
public func percent(_ fraction: Double) -> String { String(format: "%.2f%%", fraction * 100) }

/// A byte count in B, KB, MB or GB.
public func bytes(_ count: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(count)
    var unit = 0
    while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
}

private func format(_ rate: Float) -> String { String(format: "%.2e", rate) }
