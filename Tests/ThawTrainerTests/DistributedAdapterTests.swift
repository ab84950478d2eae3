// Adapters with real processes: LoRA and BitFit on the MLP (no dropout: masks are drawn per rank) give the same parameters on 1, 2 and 3
// ranks with the same global batch; each step exchanges exactly the adapters and the head (4 bytes
// each); the base weights stay bit-identical to their initial values; the plans widen the adapters
// from the top; and the run's first lines and the saved file report the trainable share.
import Foundation
import Testing
import ThawData
import ThawTesting

@Suite(.serialized) struct DistributedAdapterTests {
    static let unfreezing = #"unfreezing: {policy: fixed, table: {"0": [head], "1": [hidden2, head], "2": [hidden1, hidden2, head]}}"#

    @Test(arguments: ["{kind: lora, rank: 4, alpha: 8, targets: [linear]}", "{kind: bias}"])
    func adaptersMatchAcrossRanksAndSendOnlyThemselves(adapters: String) throws {
        let scratch = try ScratchRun()
        let model = "{architecture: mlp, classes: 3, adapters: \(adapters)}"
        let extra = "training: {epochs: 3, batch_size: 12, exchange: bucketed, bucket_size_mb: 0.01}\n" + Self.unfreezing
        let single = try runTraining(config: try scratch.writeConfig(name: "one", extra: extra, model: model), ranks: 1)
        try #require(single.exitCode == 0, "single process failed:\n\(single.output)")
        let reference = try readWeights(scratch.path("one/model.safetensors"))
        for ranks in [2, 3] {
            let name = "ranks\(ranks)"
            let run = try runTraining(config: try scratch.writeConfig(name: name, extra: extra, model: model), ranks: ranks)
            try #require(run.exitCode == 0 && !run.timedOut, "\(ranks) ranks failed:\n\(run.output)")
            let difference = maximumRelativeDifference(try readWeights(scratch.path("\(name)/model.safetensors")), reference)
            #expect(difference < 1e-5, "\(ranks) ranks differ from one process by \(difference) with adapters \(adapters)")
        }

        // What trains per group: LoRA's factors, or BitFit's biases; the head whole.
        let isLoRA = adapters.contains("lora")
        func trainable(_ group: String) -> Int {
            reference.filter { $0.key.hasPrefix(group + ".") && (group == "head" || (isLoRA ? $0.key.contains(".lora_") : $0.key.hasSuffix(".bias"))) }
                .values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        }
        let records = try epochRecords(scratch.path("ranks2"))
        try #require(records.count == 3)
        let steps = try #require(records[0]["steps"] as? Int)
        #expect(records[0]["bytes_exchanged"] as? Int == steps * 4 * trainable("head"))
        #expect(records[1]["bytes_exchanged"] as? Int == steps * 4 * (trainable("head") + trainable("hidden2")))
        #expect(records[2]["bytes_exchanged"] as? Int == steps * 4 * (trainable("head") + trainable("hidden2") + trainable("hidden1")))
        let hidden1 = reference.filter { $0.key.hasPrefix("hidden1.") }.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        #expect(trainable("hidden1") > 0 && trainable("hidden1") < hidden1, "\(trainable("hidden1")) of \(hidden1)")

        // The base weights never moved: they equal a run that took no real step.
        let initial = try runTraining(config: try scratch.writeConfig(name: "init", extra: extra, model: model), ranks: 1,
                                      extraArguments: ["--set", "training.epochs=1", "--set", "optimizer.learning_rate=1e-30"])
        try #require(initial.exitCode == 0, "\(initial.output)")
        let untouched = try readWeights(scratch.path("init/model.safetensors"))
        for (name, tensor) in reference where !name.hasPrefix("head.") && !name.contains(".lora_") && !(name.hasSuffix(".bias") && !isLoRA) {
            #expect(tensor.values == untouched[name]?.values, "base weight \(name) changed")
        }
        // A LoRA update moved the adapted layers' output: B is no longer zero.
        if isLoRA { #expect(reference["hidden1.fc.lora_B.weight"]?.values.contains { $0 != 0 } == true) }

        // Reporting: the first lines and the saved file's trainable share.
        #expect(single.output.contains("trainable at most"), "\(single.output)")
        let summary = try TensorFileSummary.inspect(scratch.path("one/model.safetensors"))
        let share = try #require(summary.trainableShare)
        #expect(share.trainable == trainable("head") + trainable("hidden2") + trainable("hidden1"))
        #expect(share.total == reference.filter { !$0.key.hasPrefix("optimizer.") }.values.reduce(0) { $0 + $1.shape.reduce(1, *) })
        #expect(summary.text().contains("trainable at the end: \(share)"))
    }
}
