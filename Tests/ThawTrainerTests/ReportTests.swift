// thaw report on a real run: the SVG renders to a PNG with rsvg-convert (installed by
// scripts/install-system-packages --tests), it marks every thaw event, and the Markdown summary has a
// row per epoch; a directory without metrics is refused by name.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawTesting

@Suite(.serialized) struct ReportTests {
    @Test func aRunsReportRendersAndMarksItsThawEvents() throws {
        let scratch = try ScratchRun(samples: 200, sampleShape: [1, 8, 8])
        let config = try scratch.writeConfig(name: "reported", extra: "training: {epochs: 4, batch_size: 16}\nunfreezing: {policy: gradual}",
                                             model: "{architecture: small-cnn, classes: 3}")
        let run = try runTraining(config: config, ranks: 2)
        try #require(run.exitCode == 0, "\(run.output)")
        let thaw = try #require(thawExecutablePath())
        let report = try spawnProcessGroup([thaw, "report", scratch.path("reported")], hangGuardSeconds: 60)
        try #require(report.exitCode == 0, "\(report.output)")

        let svg = try String(contentsOfFile: scratch.path("reported/report.svg"), encoding: .utf8)
        // Gradual unfreezing of small-cnn: block1 thaws at epoch 2, stem at epoch 3; each is marked in all four panels.
        #expect(svg.components(separatedBy: ">+block1<").count - 1 == 4, "block1's thaw is not marked in every panel")
        #expect(svg.components(separatedBy: ">+stem<").count - 1 == 4)
        #expect(svg.contains("Gradient bytes exchanged"))
        let png = scratch.path("reported/report.png")
        let render = try spawnProcessGroup(["/usr/bin/rsvg-convert", scratch.path("reported/report.svg"), "-o", png], hangGuardSeconds: 60)
        #expect(render.exitCode == 0, "rsvg-convert refused the SVG: \(render.output)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(bytes.count > 10_000 && bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(bytes.count) bytes, not a PNG")
        // PNG width and height, big-endian at bytes 16 and 20 of the IHDR chunk.
        let width = bytes[16..<20].reduce(0) { $0 << 8 | Int($1) }, height = bytes[20..<24].reduce(0) { $0 << 8 | Int($1) }
        #expect(width == 1080 && height == 690, "\(width)×\(height)")

        let markdown = try String(contentsOfFile: scratch.path("reported/report.md"), encoding: .utf8)
        #expect(markdown.contains("![loss, accuracy, time and bytes per epoch](report.svg)"))
        #expect(markdown.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| epoch") }.count == 4)
    }

    @Test func aDirectoryWithoutMetricsIsRefusedByName() throws {
        let scratch = try ScratchRun()
        let thaw = try #require(thawExecutablePath())
        let result = try spawnProcessGroup([thaw, "report", scratch.path("nothing")], hangGuardSeconds: 30)
        #expect(result.exitCode != 0 && result.output.contains(scratch.path("nothing") + "/metrics.jsonl"), "\(result.output)")
    }
}
