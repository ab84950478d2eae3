// thaw predict's outputs and inputs, end to end with real processes: the logits NPY equals an
// in-process forward pass of the checkpoint, a dataset split agrees with `thaw eval`, a preprocessed
// array gives the same logits as the split it holds, and a text model gives the same logits from
// token ids, from raw texts and from the configured split, refusing an id outside its vocabulary; and
// a domain-adversarial model's domain logits are left out of its predictions.
import Foundation
import Testing
import ThawData
import ThawKernels
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

@Suite(.serialized) struct PredictOutputTests {
    private func run(_ arguments: [String]) throws -> SpawnResult {
        let thaw = try #require(thawExecutablePath(), "no thaw executable next to the test binary")
        return try spawnProcessGroup([thaw] + arguments, hangGuardSeconds: 120)
    }

    @Test func splitLogitsMatchEvalAndAnInProcessForward() throws {
        let scratch = try ScratchRun()
        let config = try scratch.writeConfig(name: "fit", extra: "training: {epochs: 2, batch_size: 12}")
        let trained = try runTraining(config: config, ranks: 1)
        try #require(trained.exitCode == 0, "\(trained.output)")

        let splitLogits = scratch.path("split.npy"), splitTop = scratch.path("split.json")
        let predicted = try run(["predict", "--config", config, "--split", "test", "--logits", splitLogits, "--output", splitTop,
                                 "--top", "2", "--batch", "7"])
        try #require(predicted.exitCode == 0, "\(predicted.output)")
        let logits = try NPYReader.read(splitLogits)
        #expect(logits.dataType == .float32 && logits.shape == [61, 3])

        // The logits are the checkpoint's own: the same as one forward pass in this process.
        let training = try TrainingConfig.load(path: config)
        let model = try Checkpoint.restoredModel(training, checkpoint: "latest", sampleShape: [6]).model
        let features = try NPYReader.read(scratch.path("x.npy"))
        let input = Tensor(shape: [61, 6])
        features.floatValues().withUnsafeBufferPointer { input.data.update(from: $0.baseAddress!, count: 61 * 6) }
        let output = try model.forward(input, training: false)
        let direct = Array(UnsafeBufferPointer(start: output.data, count: output.count))
        #expect(relativeError(logits.floatValues(), direct) < 1e-6)

        // The JSON carries each sample's label and top classes; its accuracy is thaw eval's.
        let top = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: splitTop))) as? [[String: Any]])
        let labels = try #require(try NPYReader.read(scratch.path("y.npy")).integerValues())
        #expect(top.count == 61 && top.map { $0["label"] as? Int } == labels.map { Int($0) })
        #expect(top.allSatisfy { ($0["top"] as? [[String: Any]])?.count == 2 })
        let correct = top.filter { sample in ((sample["top"] as? [[String: Any]])?.first?["class"] as? Int) == sample["label"] as? Int }.count
        let evaluated = try run(["eval", "--config", config, "--json"])
        try #require(evaluated.exitCode == 0, "\(evaluated.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(evaluated.output.utf8)) as? [String: Any])
        #expect(report["accuracy"] as? Double == Double(correct) / 61, "eval \(report["accuracy"] ?? "?") vs predict \(correct)/61")
        #expect(predicted.output.contains(String(format: "accuracy: %.2f%%", 100 * Double(correct) / 61)), "\(predicted.output)")

        // The same data as an already-preprocessed array gives the same logits (up to the batch size's rounding).
        let arrayLogits = scratch.path("array.npy")
        let fromArray = try run(["predict", "--config", config, "--input", scratch.path("x.npy"), "--preprocessed", "--logits", arrayLogits])
        try #require(fromArray.exitCode == 0, "\(fromArray.output)")
        #expect(relativeError(try NPYReader.read(arrayLogits).floatValues(), logits.floatValues()) < 1e-6)

        // Exactly one input; a preprocessed array must fit the model.
        let two = try run(["predict", "--config", config, "--split", "test", "--input", scratch.path("x.npy")])
        #expect(two.exitCode != 0 && two.output.contains("exactly one of"), "\(two.output)")
        let wrongShape = try run(["predict", "--config", config, "--input", scratch.path("y.npy"), "--preprocessed"])
        #expect(wrongShape.exitCode != 0 && wrongShape.output.contains(scratch.path("y.npy")), "\(wrongShape.output)")
    }

    @Test func textModelTakesTokenIdsTextsAndItsSplit() throws {
        let scratch = try ScratchRun(samples: 1)
        let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film", ",", "very", "##s"]
        try (vocabulary.joined(separator: "\n") + "\n").write(toFile: scratch.path("vocab.txt"), atomically: true, encoding: .utf8)
        let texts = ["good film, very good", "bad films", "very bad", "good", "bad film, very bad films"]
        let rows = texts.enumerated().map { "\($0.offset % 2 == 0 ? 1 : 0),\"\($0.element)\"" }
        try ("label,text\n" + rows.joined(separator: "\n") + "\n").write(toFile: scratch.path("texts.csv"), atomically: true, encoding: .utf8)
        try (texts.joined(separator: "\n") + "\n").write(toFile: scratch.path("texts.txt"), atomically: true, encoding: .utf8)
        let fixtures = packageRoot() + "/Tests/Fixtures"
        let config = scratch.path("bert.yaml")
        try """
            run: {name: bert, output: \(scratch.path("bert")), seed: 4}
            model: {architecture: bert, classes: 2, bert_config: \(fixtures)/bert_tiny_config.json}
            data: {dataset: text-csv, train_texts: \(scratch.path("texts.csv")), test_texts: \(scratch.path("texts.csv")), vocabulary: \(scratch.path("vocab.txt")), max_length: 8}
            training: {epochs: 1, batch_size: 4}
            optimizer: {kind: adamw, learning_rate: 0.001}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let trained = try runTraining(config: config, ranks: 1)
        try #require(trained.exitCode == 0, "\(trained.output)")

        let fromSplit = try run(["predict", "--config", config, "--split", "test", "--logits", scratch.path("split.npy")])
        try #require(fromSplit.exitCode == 0, "\(fromSplit.output)")
        let reference = try NPYReader.read(scratch.path("split.npy"))
        #expect(reference.shape == [5, 2])

        let fromTexts = try run(["predict", "--config", config, "--texts", scratch.path("texts.txt"), "--logits", scratch.path("texts.npy")])
        try #require(fromTexts.exitCode == 0, "\(fromTexts.output)")
        #expect(try NPYReader.read(scratch.path("texts.npy")).floatValues() == reference.floatValues())

        // The ids the tokenizer gives, as numpy would save them (int64, [N, T]).
        let tokenizer = try WordPieceTokenizer(vocabularyFile: scratch.path("vocab.txt"))
        let encoded = tokenizer.encode(texts, maximumLength: 8)
        try NPYWriter.write(encoded.ids.map(Int64.init), shape: [5, 8], to: scratch.path("ids.npy"))
        let fromIds = try run(["predict", "--config", config, "--input", scratch.path("ids.npy"), "--logits", scratch.path("ids-logits.npy"), "--json"])
        try #require(fromIds.exitCode == 0, "\(fromIds.output)")
        #expect(try NPYReader.read(scratch.path("ids-logits.npy")).floatValues() == reference.floatValues())
        let json = try #require(try JSONSerialization.jsonObject(with: Data(fromIds.output.utf8)) as? [[String: Any]])
        #expect(json.count == 5)

        // An id outside the 100-token vocabulary is refused, naming the file, the sample and the position.
        var bad = encoded.ids.map(Int64.init)
        bad[2 * 8 + 3] = 500
        try NPYWriter.write(bad, shape: [5, 8], to: scratch.path("bad.npy"))
        let refused = try run(["predict", "--config", config, "--input", scratch.path("bad.npy")])
        #expect(refused.exitCode != 0 && refused.output.contains(scratch.path("bad.npy")) && refused.output.contains("sample 2")
                && refused.output.contains("position 3") && refused.output.contains("500"), "\(refused.output)")
    }

    /// With `labelColumns` (a domain-adversarial model: classes, then 2 domain logits), each row keeps
    /// its first columns only, and the ranking never names a domain column.
    @Test func labelColumnsDropTheDomainLogits() throws {
        var section = ModelSection()
        section.architecture = "small-cnn"
        section.classes = 5
        let model = try ModelZoo.build(section, sampleShape: [1, 12, 12], seed: 3)
        let data = FeatureCacheTests.images()
        let all = try Predictions.evaluate(model: model, dataset: data, batchSize: 7)
        let labels = try Predictions.evaluate(model: model, dataset: data, batchSize: 7, labelColumns: 3)
        #expect(all.classCount == 5 && labels.classCount == 3 && labels.count == data.count)
        let expected = (0..<data.count).flatMap { row in all.logits[(row * 5)..<(row * 5 + 3)] }
        #expect(labels.logits == expected)
        #expect((0..<data.count).allSatisfy { row in labels.top(5, row: row).allSatisfy { $0.index < 3 } })
    }
}
