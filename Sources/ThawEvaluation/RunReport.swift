// RunReport: `thaw report RUN_DIR` — one SVG with four panels (loss and accuracy per epoch with
// the thaw events marked, seconds per epoch, bytes exchanged per epoch) and a Markdown summary
// that embeds it, both from the run's metrics.jsonl.
import Foundation
import ThawRun
import ThawTrainer

/// One epoch as the report reads it from metrics.jsonl.
public struct ReportEpoch: Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// Training loss and accuracy.
    public var trainLoss: Double, trainAccuracy: Double
    /// Validation loss and accuracy, when a validation set exists.
    public var validationLoss: Double?, validationAccuracy: Double?
    /// Test accuracy, when evaluated.
    public var testAccuracy: Double?
    /// Seconds of training.
    public var seconds: Double
    /// Gradient bytes each rank sent.
    public var bytesExchanged: Double
    /// Groups that started training at this epoch.
    public var newlyThawed: [String]
    /// Groups training during the epoch.
    public var trainableGroups: [String]
}

/// An error reading a run directory.
public struct RunReportError: Error, CustomStringConvertible {
    /// What went wrong, naming the file.
    public var description: String
}

/// The report of one run.
public struct RunReport {
    /// The run's epochs in order (a resumed run's repeated epochs keep their last record).
    public var epochs: [ReportEpoch]
    /// The run's name (the directory's).
    public var name: String

    /// Reads `RUN_DIR/metrics.jsonl`.
    public init(runDirectory: String) throws {
        let path = (runDirectory as NSString).appendingPathComponent("metrics.jsonl")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RunReportError(description: "\(path): cannot read it; is \(runDirectory) a run directory?")
        }
        var byEpoch: [Int: ReportEpoch] = [:]
        for (lineIndex, line) in text.split(separator: "\n").enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw RunReportError(description: "\(path): line \(lineIndex + 1) is not a JSON object")
            }
            guard object["kind"] as? String == "epoch" else { continue }
            func number(_ section: String, _ key: String) -> Double? { (object[section] as? [String: Any])?[key] as? Double }
            guard let epoch = object["epoch"] as? Int, let trainLoss = number("train", "loss"), let trainAccuracy = number("train", "accuracy"),
                  let seconds = object["seconds"] as? Double else {
                throw RunReportError(description: "\(path): line \(lineIndex + 1) is an epoch record without epoch, train loss/accuracy or seconds")
            }
            byEpoch[epoch] = ReportEpoch(
                epoch: epoch, trainLoss: trainLoss, trainAccuracy: trainAccuracy,
                validationLoss: number("validation", "loss"), validationAccuracy: number("validation", "accuracy"),
                testAccuracy: number("test", "accuracy"), seconds: seconds,
                bytesExchanged: (object["bytes_exchanged"] as? Double) ?? Double(object["bytes_exchanged"] as? Int ?? 0),
                newlyThawed: object["newly_thawed"] as? [String] ?? [], trainableGroups: object["trainable_groups"] as? [String] ?? [])
        }
        guard !byEpoch.isEmpty else { throw RunReportError(description: "\(path): no epoch records yet") }
        epochs = byEpoch.keys.sorted().compactMap { byEpoch[$0] }
        name = (runDirectory as NSString).lastPathComponent
    }

    // MARK: The SVG

    /// One line of a chart.
    struct Series {
        var label: String
        var color: String
        var values: [Double?]
        var dashed = false
    }

    /// The whole figure: four panels, 2 × 2.
    public func svg() -> String {
        let (panelWidth, panelHeight) = (520.0, 300.0)
        let width = panelWidth * 2 + 40, height = panelHeight * 2 + 90
        var body = ""
        body += text(x: width / 2, y: 28, "Run \(name): \(epochs.count) epoch(s)", size: 18, anchor: "middle", weight: "bold")
        let losses = [Series(label: "train loss", color: "#1f77b4", values: epochs.map(\.trainLoss)),
                      Series(label: "validation loss", color: "#d62728", values: epochs.map(\.validationLoss), dashed: true)]
        let accuracies = [Series(label: "train", color: "#1f77b4", values: epochs.map { $0.trainAccuracy * 100 }),
                          Series(label: "validation", color: "#d62728", values: epochs.map { $0.validationAccuracy.map { $0 * 100 } }, dashed: true),
                          Series(label: "test", color: "#2ca02c", values: epochs.map { $0.testAccuracy.map { $0 * 100 } })]
        body += linePanel(x: 20, y: 50, width: panelWidth, height: panelHeight, title: "Loss per epoch", unit: "loss", series: losses)
        body += linePanel(x: 40 + panelWidth, y: 50, width: panelWidth, height: panelHeight, title: "Accuracy per epoch (%)", unit: "%", series: accuracies)
        body += barPanel(x: 20, y: 70 + panelHeight, width: panelWidth, height: panelHeight, title: "Training time per epoch (s)",
                         values: epochs.map(\.seconds), color: "#9467bd", format: "%.1f")
        body += barPanel(x: 40 + panelWidth, y: 70 + panelHeight, width: panelWidth, height: panelHeight, title: "Gradient bytes exchanged per rank per epoch (MB)",
                         values: epochs.map { $0.bytesExchanged / 1e6 }, color: "#ff7f0e", format: "%.1f")
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
            <rect width="100%" height="100%" fill="white"/>
            \(body)</svg>

            """
    }

    /// Axes, gridlines and the epoch axis shared by every panel; returns the plot area too.
    private func frame(x: Double, y: Double, width: Double, height: Double, title: String, minimum: Double, maximum: Double,
                       format: String, ticks: Int = 4) -> (svg: String, plot: (x: Double, y: Double, width: Double, height: Double)) {
        let plot = (x: x + 60, y: y + 46, width: width - 80, height: height - 96)
        var svg = text(x: x + width / 2, y: y + 16, title, size: 14, anchor: "middle", weight: "bold")
        svg += "<rect x=\"\(f(plot.x))\" y=\"\(f(plot.y))\" width=\"\(f(plot.width))\" height=\"\(f(plot.height))\" fill=\"none\" stroke=\"#333\"/>\n"
        for tick in 0...ticks {
            let value = minimum + (maximum - minimum) * Double(tick) / Double(ticks)
            let ty = plot.y + plot.height - plot.height * Double(tick) / Double(ticks)
            svg += "<line x1=\"\(f(plot.x))\" y1=\"\(f(ty))\" x2=\"\(f(plot.x + plot.width))\" y2=\"\(f(ty))\" stroke=\"#ddd\"/>\n"
            svg += text(x: plot.x - 6, y: ty + 4, String(format: format, value), size: 11, anchor: "end")
        }
        let step = max(1, Int((Double(epochs.count) / 10).rounded(.up)))
        for (index, epoch) in epochs.enumerated() where index % step == 0 || index == epochs.count - 1 {
            let tx = plot.x + plot.width * (Double(index) + 0.5) / Double(epochs.count)
            svg += text(x: tx, y: plot.y + plot.height + 16, String(epoch.epoch + 1), size: 11, anchor: "middle")
        }
        svg += text(x: plot.x + plot.width / 2, y: plot.y + plot.height + 34, "epoch", size: 12, anchor: "middle")
        // Thaw events: a dashed line where groups started training, labelled with what thawed.
        // Labels sit in three staggered rows so neighbouring events do not overlap.
        for (event, index) in epochs.indices.filter({ epochs[$0].newlyThawed.isEmpty == false && $0 > 0 }).enumerated() {
            let ex = plot.x + plot.width * Double(index) / Double(epochs.count)
            svg += "<line x1=\"\(f(ex))\" y1=\"\(f(plot.y))\" x2=\"\(f(ex))\" y2=\"\(f(plot.y + plot.height))\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>\n"
            svg += text(x: ex + 3, y: plot.y + 11 + 12 * Double(event % 3), "+" + abbreviate(epoch: epochs[index]), size: 10, anchor: "start", color: "#555")
        }
        return (svg, plot)
    }

    private func linePanel(x: Double, y: Double, width: Double, height: Double, title: String, unit: String, series: [Series]) -> String {
        let values = series.flatMap { $0.values.compactMap { $0 } }
        var minimum = values.min() ?? 0, maximum = values.max() ?? 1
        if unit == "loss" { minimum = 0 }
        if maximum - minimum < 1e-9 { maximum = minimum + 1 }
        let padding = (maximum - minimum) * 0.05
        if unit != "loss" { minimum = max(0, minimum - padding) }
        let step = niceStep(maximum + padding - minimum)
        minimum = (minimum / step).rounded(.down) * step
        maximum = minimum + 4 * step
        while maximum < (values.max() ?? 0) + padding * 0.5 { maximum += step }
        let (frameSVG, plot) = frame(x: x, y: y, width: width, height: height, title: title, minimum: minimum, maximum: maximum,
                                     format: "%.\(decimals(step))f", ticks: Int(((maximum - minimum) / step).rounded()))
        var svg = frameSVG
        var legendX = plot.x
        for line in series where line.values.contains(where: { $0 != nil }) {
            let points = line.values.enumerated().compactMap { index, value -> String? in
                guard let value else { return nil }
                let px = plot.x + plot.width * (Double(index) + 0.5) / Double(epochs.count)
                let py = plot.y + plot.height - plot.height * (value - minimum) / (maximum - minimum)
                return "\(f(px)),\(f(py))"
            }
            let dash = line.dashed ? " stroke-dasharray=\"6 3\"" : ""
            svg += "<polyline points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash)/>\n"
            for point in points {
                let xy = point.split(separator: ",")
                svg += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"\(line.color)\"/>\n"
            }
            // Legend: one row between the title and the plot.
            let legendY = plot.y - 10
            svg += "<line x1=\"\(f(legendX))\" y1=\"\(f(legendY - 4))\" x2=\"\(f(legendX + 22))\" y2=\"\(f(legendY - 4))\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash)/>\n"
            svg += text(x: legendX + 28, y: legendY, line.label, size: 11, anchor: "start")
            legendX += 40 + Double(line.label.count) * 6.5
        }
        return svg
    }

    private func barPanel(x: Double, y: Double, width: Double, height: Double, title: String, values: [Double], color: String, format: String) -> String {
        let maximum = niceStep(max(values.max() ?? 1, 1e-9) * 1.1) * 4
        let (frameSVG, plot) = frame(x: x, y: y, width: width, height: height, title: title, minimum: 0, maximum: maximum,
                                     format: "%.\(decimals(maximum / 4))f")
        var svg = frameSVG
        let slot = plot.width / Double(max(values.count, 1))
        for (index, value) in values.enumerated() {
            let barHeight = plot.height * value / maximum
            let bx = plot.x + slot * Double(index) + slot * 0.15
            svg += "<rect x=\"\(f(bx))\" y=\"\(f(plot.y + plot.height - barHeight))\" width=\"\(f(slot * 0.7))\" height=\"\(f(barHeight))\" fill=\"\(color)\"/>\n"
            if values.count <= 20 {
                svg += text(x: bx + slot * 0.35, y: plot.y + plot.height - barHeight - 4, String(format: format, value), size: 10, anchor: "middle")
            }
        }
        return svg
    }

    private func abbreviate(epoch: ReportEpoch) -> String {
        let groups = epoch.newlyThawed
        return groups.count <= 2 ? groups.joined(separator: ",") : "\(groups[0])…\(groups[groups.count - 1]) (\(groups.count))"
    }

    /// The decimals a tick step needs to print exactly (0.25 → 2, 5 → 0).
    private func decimals(_ step: Double) -> Int {
        for digits in 0...4 {
            let scaled = step * pow(10, Double(digits))
            if abs(scaled - scaled.rounded()) < 1e-6 * max(1, scaled) { return digits }
        }
        return 4
    }

    /// A tick step of 1, 2 or 5 × 10ⁿ that covers `span` in four steps.
    private func niceStep(_ span: Double) -> Double {
        let raw = max(span, 1e-12) / 4
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        for factor in [1.0, 2.0, 2.5, 5.0, 10.0] where factor * magnitude >= raw { return factor * magnitude }
        return 10 * magnitude
    }

    private func text(x: Double, y: Double, _ content: String, size: Int, anchor: String, weight: String = "normal", color: String = "#222") -> String {
        let escaped = content.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        return "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(size)\" text-anchor=\"\(anchor)\" font-weight=\"\(weight)\" fill=\"\(color)\">\(escaped)</text>\n"
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }

    // MARK: The Markdown summary

    /// A short summary with a table per epoch, embedding the SVG by file name.
    public func markdown(svgFile: String) -> String {
        let last = epochs[epochs.count - 1]
        func percent(_ value: Double?) -> String { value.map { String(format: "%.2f%%", $0 * 100) } ?? "–" }
        let bestValidation = epochs.compactMap { epoch in epoch.validationAccuracy.map { (epoch.epoch, $0) } }.max { $0.1 < $1.1 }
        var lines = [
            "# Run \(name)", "",
            "![loss, accuracy, time and bytes per epoch](\(svgFile))", "",
            "- Epochs: \(epochs.count); final train accuracy \(percent(last.trainAccuracy)), validation \(percent(last.validationAccuracy)), test \(percent(last.testAccuracy)).",
        ]
        if let bestValidation { lines.append("- Best validation accuracy: \(percent(bestValidation.1)) after epoch \(bestValidation.0 + 1).") }
        lines.append(String(format: "- Training time: %.1f s in all, %.1f s per epoch on average.", epochs.reduce(0) { $0 + $1.seconds },
                            epochs.reduce(0) { $0 + $1.seconds } / Double(epochs.count)))
        lines += ["", "| epoch | trainable groups | thawed | train loss | train acc | val acc | test acc | seconds | MB exchanged |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for epoch in epochs {
            lines.append("| \(epoch.epoch + 1) | \(epoch.trainableGroups.joined(separator: ", ")) | \(epoch.newlyThawed.joined(separator: ", ")) | "
                         + String(format: "%.4f", epoch.trainLoss) + " | \(percent(epoch.trainAccuracy)) | \(percent(epoch.validationAccuracy)) | "
                         + "\(percent(epoch.testAccuracy)) | " + String(format: "%.1f | %.1f |", epoch.seconds, epoch.bytesExchanged / 1e6))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
