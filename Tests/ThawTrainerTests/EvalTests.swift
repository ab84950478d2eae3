// thaw eval: the report's arithmetic against hand-worked values, and the command's accuracy on a
// trained run against the trainer's own final test evaluation.
import Foundation
import Testing
import ThawTesting
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

@Suite struct ClassificationReportTests {
    @Test func scoresFollowFromTheConfusionMatrix() {
        // Rows: true class; columns: predicted. Class 2 is never predicted; class 3 has no samples.
        let confusion = [[5, 1, 0, 0], [2, 3, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
        let report = ClassificationReport(confusion: confusion, lossSum: 7)
        #expect(report.samples == 14)
        #expect(abs(report.accuracy - 8.0 / 14) < 1e-12)
        #expect(abs(report.loss - 0.5) < 1e-12)
        // Class 0: precision 5/8, recall 5/6; class 1: 3/5 and 3/6; class 2: 0 and 0; class 3: 0/1 and no support.
        let expected: [(Double, Double)] = [(5.0 / 8, 5.0 / 6), (3.0 / 5, 0.5), (0, 0), (0, 0)]
        for (k, (precision, recall)) in expected.enumerated() {
            #expect(abs(report.classes[k].precision - precision) < 1e-12, "class \(k)")
            #expect(abs(report.classes[k].recall - recall) < 1e-12, "class \(k)")
        }
        let f1 = [2 * (5.0 / 8) * (5.0 / 6) / (5.0 / 8 + 5.0 / 6), 2 * 0.6 * 0.5 / 1.1, 0]
        #expect(abs(report.macroF1 - f1.reduce(0, +) / 3) < 1e-12, "macro F1 averages the classes that have samples")
        #expect(report.classes.map(\.support) == [6, 6, 2, 0])
        #expect(report.table().contains("accuracy 57.14%"))
    }
}

@Suite(.serialized) struct EvalCommandTests {
    @Test func evalOfTheLastCheckpointMatchesTheTrainersFinalTestAccuracy() throws {
        let scratch = try ScratchRun(samples: 300, sampleShape: [1, 8, 8])
        let config = try scratch.writeConfig(name: "evaluated", extra: "training: {epochs: 3, batch_size: 16}\ncheckpoint: {every_epochs: 1}",
                                             model: "{architecture: small-cnn, classes: 3}")
        let run = try runTraining(config: config, ranks: 2)
        try #require(run.exitCode == 0, "\(run.output)")
        let trainerAccuracy = try #require((try epochRecords(scratch.path("evaluated")).last?["test"] as? [String: Any])?["accuracy"] as? Double)
        let thaw = try #require(thawExecutablePath())
        let eval = try spawnProcessGroup([thaw, "eval", "--config", config, "--json"], hangGuardSeconds: 120)
        try #require(eval.exitCode == 0, "\(eval.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(eval.output.utf8)) as? [String: Any])
        #expect(report["samples"] as? Int == 300)
        let accuracy = try #require(report["accuracy"] as? Double)
        #expect(abs(accuracy - trainerAccuracy) < 1e-9, "eval says \(accuracy), the trainer said \(trainerAccuracy)")
        let confusion = try #require(report["confusion"] as? [[Int]])
        #expect(confusion.count == 3 && confusion.flatMap { $0 }.reduce(0, +) == 300)
        #expect((report["classes"] as? [[String: Any]])?.count == 3)

        let table = try spawnProcessGroup([thaw, "eval", "--config", config, "--split", "validation"], hangGuardSeconds: 60)
        #expect(table.exitCode != 0 && table.output.contains("no validation split"), "\(table.output)")
    }
}
