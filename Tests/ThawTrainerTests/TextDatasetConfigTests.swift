// Tests for the text datasets in the configuration and catalog: data.vocabulary, data.max_length,
// data.train_texts / data.test_texts, their checks, rotten-tomatoes and text-csv loading, and a
// `thaw train` run on a text-csv file.
import Foundation
import Testing
import ThawPlan
import ThawData
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

/// A temporary folder with a tiny vocabulary and labelled text files, removed at the end.
private final class TextScratch {
    let directory: String
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film", ",", "very", "##s"]

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-text-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write("vocab.txt", Self.vocabulary.joined(separator: "\n") + "\n")
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try text.write(toFile: path(name), atomically: true, encoding: .utf8)
        return path(name)
    }

    /// `count` records alternating "good film, very good" (1) and "bad films" (0), plus a header.
    func writeTexts(_ name: String, count: Int, labels: [Int32] = [1, 0]) throws -> String {
        let rows = (0..<count).map { i in
            let label = labels[i % labels.count]
            return label == 0 ? "\(label),bad films" : "\(label),\"good film, very good\""
        }
        return try write(name, "label,text\n" + rows.joined(separator: "\n") + "\n")
    }
}

@Suite struct TextDatasetConfigTests {
    @Test func readsTextKeys() throws {
        let config = try TrainingConfig.parse("data: {dataset: text-csv, train_texts: a.csv, test_texts: b.csv, vocabulary: v.txt, max_length: 32}")
        guard case .textCSV(let files, let text) = config.data.source else { Issue.record("not text-csv: \(config.data.source)"); return }
        #expect(files.trainTexts == "a.csv" && files.testTexts == "b.csv")
        #expect(text.vocabulary == "v.txt" && text.maxLength == 32)
        #expect(try TrainingConfig.parse("data: {dataset: rotten-tomatoes, vocabulary: v.txt}").data.source.text?.maxLength == 64)
        #expect(TrainingConfig().data.source.text == nil)
    }

    @Test func checksNameKeyAndFile() throws {
        let cases: [(yaml: String, key: String)] = [
            ("data: {dataset: rotten-tomatoes}", "data.vocabulary"),
            ("data: {dataset: text-csv, vocabulary: v.txt}", "data.train_texts"),
            ("data: {dataset: rotten-tomatoes, vocabulary: v.txt, max_length: 1}", "data.max_length"),
            ("data: {dataset: rotten-tomatoes, vocabulary: v.txt, validation_size: 100}", "data.validation_size"),
            ("data: {dataset: text-csv, vocabulary: v.txt, train_texts: a.csv, image_size: 224}", "data.image_size"),
            ("data: {dataset: rotten-tomatoes, vocabulary: v.txt, normalization: imagenet}", "data.normalization"),
            ("data: {dataset: rotten-tomatoes, vocabulary: v.txt, max_len: 32}", "data.max_len"),
            ("data: {dataset: rotten-tomatoes, vocabulary: v.txt, max_length: long}", "data.max_length"),
            ("data: {dataset: fashion-mnist, vocabulary: v.txt}", "data.vocabulary"),
            ("data: {dataset: npy, train_texts: a.csv}", "data.train_texts"),
        ]
        for (yaml, key) in cases {
            let error = try #require(throws: ConfigError.self, "\(yaml)") { try TrainingConfig.parse(yaml, file: "text.yaml") }
            #expect(error.key == key && error.file == "text.yaml", "\(yaml): \(error)")
        }
    }

    @Test func loadsTextCSV() throws {
        let scratch = try TextScratch()
        var section = DataSection()
        var files = TextFiles(), text = TextEncoding()
        text.vocabulary = scratch.path("vocab.txt")
        files.trainTexts = try scratch.writeTexts("train.csv", count: 20)
        files.testTexts = try scratch.writeTexts("test.csv", count: 6, labels: [2, 0])
        text.maxLength = 8
        section.source = .textCSV(files, text)
        section.validationSize = 4
        section.trainLimit = 10
        let splits = try DatasetCatalog.load(section)
        #expect(splits.train.count == 10)
        #expect(splits.validation?.count == 4)
        #expect(splits.test?.count == 6)
        #expect(splits.train.sampleShape == [8])
        // One class count for both files: the test file's label 2 makes three classes.
        #expect(splits.train.classCount == 3 && splits.test?.classCount == 3)
        #expect(splits.train.sample(0) == [2, 4, 6, 7, 8, 4, 3, 0])  // [CLS] good film , very good [SEP] [PAD]
        #expect(splits.train.label(0) == 1)
        #expect(splits.test?.sample(0) == [2, 4, 6, 7, 8, 4, 3, 0])
        #expect(splits.test?.label(0) == 2)
    }

    @Test func textCSVErrorsNameFileAndLine() throws {
        let scratch = try TextScratch()
        var section = DataSection()
        var files = TextFiles(), text = TextEncoding()
        text.vocabulary = scratch.path("vocab.txt")
        files.trainTexts = try scratch.write("bad.csv", "label,text\n1,good\n1,good, not quoted\n")
        section.source = .textCSV(files, text)
        let error = try #require(throws: DataError.self) { try DatasetCatalog.load(section) }
        #expect(error.file == files.trainTexts)
        #expect(error.detail == "line 3 has 3 fields, expected 2 (label,text)")
        files.trainTexts = try scratch.writeTexts("train.csv", count: 3)
        text.vocabulary = try scratch.write("dup.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[UNK]\n")
        section.source = .textCSV(files, text)
        let vocabulary = try #require(throws: DataError.self) { try DatasetCatalog.load(section) }
        #expect(vocabulary.description.hasPrefix(text.vocabulary + ": line 5: token '[UNK]' already appears on line 2"))
    }

    @Test func loadsRottenTomatoesSplits() throws {
        let scratch = try TextScratch()
        _ = try scratch.writeTexts("reviews.csv", count: 40)
        var section = DataSection()
        var place = DatasetDirectory(), text = TextEncoding()
        place.directory = scratch.directory
        text.vocabulary = scratch.path("vocab.txt")
        text.maxLength = 5
        section.source = .rottenTomatoes(place, text)
        let splits = try DatasetCatalog.load(section)
        #expect(splits.train.count == 32 && splits.validation?.count == 4 && splits.test?.count == 4)
        #expect(splits.train.sampleShape == [5] && splits.train.classCount == 2)
        let first = RottenTomatoes.indices(of: .train, count: 40)[0]
        // Truncated to 5 tokens, [SEP] kept.
        #expect(splits.train.sample(0) == (first % 2 == 0 ? [2, 4, 6, 7, 3] : [2, 5, 6, 9, 3]))
        section.trainLimit = 7
        section.testLimit = 3
        let limited = try DatasetCatalog.load(section)
        #expect(limited.train.count == 7 && limited.validation?.count == 4 && limited.test?.count == 3)
        #expect(limited.train.sample(6) == splits.train.sample(6))
    }

    @Test func thawTrainsOnTextCSV() throws {
        let scratch = try TextScratch()
        let train = try scratch.writeTexts("train.csv", count: 24)
        let config = try scratch.write("text.yaml", """
            run: {name: text, output: \(scratch.path("run")), seed: 3}
            model: {architecture: mlp, classes: 2}
            data: {dataset: text-csv, train_texts: \(train), test_texts: \(train), vocabulary: \(scratch.path("vocab.txt")), max_length: 6}
            training: {epochs: 1, batch_size: 8}
            """)
        let run = try runTraining(config: config, ranks: 1)
        try #require(run.exitCode == 0, "thaw train failed:\n\(run.output)")
        let records = try epochRecords(scratch.path("run"))
        #expect(records.count == 1)
    }
}
