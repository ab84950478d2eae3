// Early stopping with real processes: it waits until the plateau policy has thawed every group,
// stops `patience` epochs after the best one, and puts back the best epoch's weights (the final
// test result equals the one recorded at the best epoch). Without a validation set it refuses.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawTesting

@Suite(.serialized) struct EarlyStoppingTests {
    @Test func stopsOnlyAfterEveryGroupIsThawedAndRestoresTheBestEpoch() throws {
        let scratch = try ScratchRun(samples: 160, sampleShape: [1, 8, 8])
        // A large learning rate on a small, noisy set: validation loss soon stops improving.
        let extra = """
            training: {epochs: 40, batch_size: 16, early_stopping: {patience: 2, metric: validation_loss}}
            unfreezing: {policy: plateau, patience: 1, delta: 0.0}
            """
        let config = try scratch.writeConfig(name: "early", extra: extra, model: "{architecture: small-cnn, classes: 3}")
        let text = try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "{dataset: npy,", with: "{dataset: npy, validation_size: 40,")
            .replacingOccurrences(of: "learning_rate: 0.05", with: "learning_rate: 0.6")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let run = try runTraining(config: config, ranks: 2)
        try #require(run.exitCode == 0, "\(run.output)")

        let records = try epochRecords(scratch.path("early"))
        try #require(records.count < 40, "early stopping never triggered:\n\(run.output)")
        func validationLoss(_ record: [String: Any]) -> Double { (record["validation"] as? [String: Any])?["loss"] as? Double ?? .nan }
        func groups(_ record: [String: Any]) -> [String] { record["trainable_groups"] as? [String] ?? [] }
        let last = records.count - 1
        #expect(groups(records[last]).count == 3, "stopped before every group was thawed: \(groups(records[last]))")
        // The best epoch by validation loss, and the last thaw: the stop comes `patience` epochs after the later one.
        let best = (0..<records.count).min { validationLoss(records[$0]) < validationLoss(records[$1]) } ?? 0
        let lastThaw = (0..<records.count).last { !((records[$0]["newly_thawed"] as? [String]) ?? []).isEmpty } ?? 0
        #expect(last - max(best, lastThaw) == 2, "stopped at epoch \(last), best \(best), last thaw \(lastThaw)")
        #expect(run.output.contains("early stopping after epoch \(last + 1)"), "\(run.output)")

        // The best weights were put back: the final test result is the best epoch's.
        let lines = try String(contentsOfFile: scratch.path("early/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let final = try #require(lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { $0["kind"] as? String == "final" }, "no final record")
        if best != last {
            #expect(final["restored_epoch"] as? Int == best)
            let restoredTest = final["test"] as? [String: Any], bestTest = records[best]["test"] as? [String: Any]
            #expect(restoredTest?["loss"] as? Double == bestTest?["loss"] as? Double, "\(restoredTest ?? [:]) vs \(bestTest ?? [:])")
        }
    }

    @Test func needsAValidationSet() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "noval", extra: "training: {epochs: 2, early_stopping: {patience: 1}}")
        let run = try runTraining(config: config, ranks: 1)
        #expect(run.exitCode != 0 && run.output.contains("early_stopping needs a validation set"), "\(run.output)")
    }
}
