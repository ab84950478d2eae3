// Tests for the text data side: `label,text` CSV parsing (RFC 4180 quoting), the tokenized text
// dataset through ShardedSampler and BatchAssembler, and the Rotten Tomatoes split on a synthetic
// file and on the real fetched data.
import Foundation
import Testing
import ThawData
import ThawKernels
import ThawTesting

@Suite struct TextCSVTests {
    @Test func parsesQuotedFields() throws {
        let text = "\u{FEFF}label,text\r\n"
            + "1,plain text\r\n"
            + "0,\"commas, and \"\"quotes\"\"\"\r\n"
            + "\r\n"
            + "1,\"two\nlines\"\n"
            + " 2 ,unquoted \"stray\" quote\n"
            + "0,\n"
            + "1,\"\"\r"
            + "0,last"
        let texts = try TextCSVReader.parse(text, file: "t.csv")
        #expect(texts.labels == [1, 0, 1, 2, 0, 1, 0])
        #expect(texts.texts == ["plain text", "commas, and \"quotes\"", "two\nlines", "unquoted \"stray\" quote", "", "", "last"])
        #expect(texts.file == "t.csv")
        // Without a header the first line is data.
        #expect(try TextCSVReader.parse("3,x\n", file: "h.csv").labels == [3])
    }

    @Test func readsWhatPythonCSVWrites() throws {
        // Written by Python's csv.writer(f, lineterminator="\n") for these rows.
        let file = try TemporaryFile(text: "label,text\n1,\"a, b\"\n0,\"say \"\"hi\"\"\"\n1,\"x\r\ny\"\n")
        let texts = try TextCSVReader.read(file.path)
        #expect(texts.texts == ["a, b", "say \"hi\"", "x\r\ny"])
        #expect(texts.labels == [1, 0, 1])
    }

    @Test func errorsNameFileAndLine() throws {
        let cases: [(text: String, kind: DataError.Kind, detail: String)] = [
            ("", .badValue, "no records"),
            ("label,text\n\n", .badValue, "no records"),
            ("1,a\n0,b,c\n", .sizeMismatch, "line 2 has 3 fields, expected 2 (label,text)"),
            ("1,\"a\nb\"\njust text\n", .sizeMismatch, "line 3 has 1 field, expected 2 (label,text)"),
            ("1,a\npositive,b\n", .badValue, "line 2: label 'positive' is not a non-negative integer"),
            ("-1,a\n", .badValue, "line 1: label '-1' is not a non-negative integer"),
            ("1,a\n0,\"open\nstill open\n", .badValue, "line 2: a quoted field is never closed"),
            ("1,\"closed\"x\n", .badValue, "line 1: 'x' after a closing quote; expected a comma or a line end"),
        ]
        for (text, kind, detail) in cases {
            let error = try #require(throws: DataError.self, "\(text.debugDescription)") { try TextCSVReader.parse(text, file: "bad.csv") }
            #expect(error.kind == kind, "\(text.debugDescription)")
            #expect(error.detail == detail, "\(text.debugDescription)")
            #expect(error.file == "bad.csv")
        }
        let invalid = try TemporaryFile([0x31, 0x2C, 0xFF, 0x0A])
        #expect(throws: DataError(file: invalid.path, kind: .badValue, detail: "the file is not valid UTF-8")) {
            try TextCSVReader.read(invalid.path)
        }
    }
}

@Suite struct TextClassificationDatasetTests {
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film", "!", "very", "##s"]

    static func tokenizer() throws -> WordPieceTokenizer {
        try WordPieceTokenizer(tokens: vocabulary, file: "tiny-vocab")
    }

    @Test func tokenizesOnceAsFloatIds() throws {
        let texts = LabelledTexts(file: "t.csv", labels: [1, 0, 1], texts: ["Good film!", "bad films", "very very very good film"])
        let dataset = try TextClassificationDataset(texts, tokenizer: try Self.tokenizer(), maximumLength: 6)
        #expect(dataset.count == 3)
        #expect(dataset.sampleShape == [6])
        #expect(dataset.classCount == 2)
        #expect(dataset.truncatedCount == 1)
        #expect(dataset.sample(0) == [2, 4, 6, 7, 3, 0])
        #expect(dataset.sample(1) == [2, 5, 6, 9, 3, 0])
        #expect(dataset.sample(2) == [2, 8, 8, 8, 4, 3])
        #expect((0..<3).map(dataset.label) == [1, 0, 1])
        // The same ids as the tokenizer's own encoding.
        let encoded = try Self.tokenizer().encode(texts.texts, maximumLength: 6)
        #expect((0..<3).flatMap(dataset.sample) == encoded.ids.map(Float.init))
    }

    @Test func worksWithSamplerAndBatchAssembler() throws {
        let texts = LabelledTexts(file: "t.csv", labels: (0..<7).map { Int32($0 % 3) },
                                  texts: (0..<7).map { String(repeating: "good ", count: $0) + "film" })
        let dataset = try TextClassificationDataset(texts, tokenizer: try Self.tokenizer(), maximumLength: 5, classCount: 4)
        #expect(dataset.classCount == 4)
        let length = dataset.sampleSize
        for rank in 0..<2 {
            let sampler = ShardedSampler(datasetSize: dataset.count, worldSize: 2, rank: rank, globalBatchSize: 4, seed: 9, shuffle: true)
            for step in 0..<sampler.stepsPerEpoch {
                let indices = sampler.localBatch(epoch: 1, step: step)
                var features = [Float](repeating: -1, count: indices.count * length)
                var labels = [Int32](repeating: -1, count: indices.count)
                var weights = [Float](repeating: -1, count: indices.count)
                let real = features.withUnsafeMutableBufferPointer { f in
                    labels.withUnsafeMutableBufferPointer { l in
                        weights.withUnsafeMutableBufferPointer { w in
                            BatchAssembler.fill(from: dataset, indices: indices, features: f.baseAddress!, labels: l, weights: w)
                        }
                    }
                }
                #expect(real == indices.compactMap { $0 }.count)
                for (row, index) in indices.enumerated() {
                    let rowIds = Array(features[(row * length)..<((row + 1) * length)])
                    if let index {
                        #expect(rowIds == dataset.sample(index))
                        #expect(labels[row] == texts.labels[index] && weights[row] == 1)
                    } else {
                        // A padding row is all [PAD]: a text model sees an empty sequence.
                        #expect(rowIds == [Float](repeating: 0, count: length))
                        #expect(labels[row] == 0 && weights[row] == 0)
                    }
                }
            }
        }
    }

    @Test func rejectsBadInput() throws {
        let texts = LabelledTexts(file: "t.csv", labels: [0, 3], texts: ["good", "bad"])
        let label = try #require(throws: DataError.self) {
            try TextClassificationDataset(texts, tokenizer: try Self.tokenizer(), maximumLength: 4, classCount: 2)
        }
        #expect(label.file == "t.csv" && label.kind == .badValue)
        #expect(label.detail == "label 3 of text 2 is not in 0..<2")
        let padLast = try WordPieceTokenizer(tokens: ["[UNK]", "[CLS]", "[SEP]", "[PAD]"], file: "odd-vocab")
        let pad = try #require(throws: DataError.self) { try TextClassificationDataset(texts, tokenizer: padLast, maximumLength: 4) }
        #expect(pad.file == "odd-vocab" && pad.kind == .unsupported)
        let empty = LabelledTexts(file: "e.csv", labels: [], texts: [])
        #expect(throws: DataError.self) { try TextClassificationDataset(empty, tokenizer: try Self.tokenizer(), maximumLength: 4) }
    }
}

@Suite struct RottenTomatoesTests {
    @Test func splitsAFileByTheFixedPermutation() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-rt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let count = 57
        let rows = (0..<count).map { "\($0 % 2),\"review \($0), \"\"quoted\"\"\"" }
        try ("label,text\n" + rows.joined(separator: "\n") + "\n").write(toFile: directory + "/reviews.csv", atomically: true, encoding: .utf8)

        let splits = try RottenTomatoes.Split.allCases.map { try RottenTomatoes.load($0, directory: directory) }
        #expect(splits.map(\.count) == [47, 5, 5])
        // Together the splits are every review exactly once, in the seeded permutation's order.
        let order = SplitMix64.permutation(count: count, seed: RottenTomatoes.splitSeed)
        #expect(splits.flatMap(\.texts) == order.map { "review \($0), \"quoted\"" })
        #expect(splits.flatMap(\.labels) == order.map { Int32($0 % 2) })
        #expect(RottenTomatoes.indices(of: .validation, count: count) == Array(order[47..<52]))
        #expect(order != Array(0..<count))
    }

    @Test func errorsForMissingDataAndBadLabels() throws {
        let missing = try #require(throws: DataError.self) { try RottenTomatoes.load(.train, directory: "/nonexistent") }
        #expect(missing.kind == .notFound)
        #expect(missing.file == "/nonexistent/reviews.csv")
        #expect(missing.hint?.contains("scripts/fetch-data rotten-tomatoes") == true)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-rt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "label,text\n1,a\n2,b\n".write(toFile: directory + "/reviews.csv", atomically: true, encoding: .utf8)
        let label = try #require(throws: DataError.self) { try RottenTomatoes.load(.test, directory: directory) }
        #expect(label.detail == "review 2 has label 2; expected 0 (rotten) or 1 (fresh)")
    }

    @Test func realDataCountsAndBalance() throws {
        let directory = try DataFiles.rottenTomatoes()
        var seen = Set<String>()
        var counts: [String: [Int]] = [:]
        for split in RottenTomatoes.Split.allCases {
            let reviews = try RottenTomatoes.load(split, directory: directory)
            counts[split.rawValue] = [reviews.labels.count { $0 == 0 }, reviews.labels.count { $0 == 1 }]
            seen.formUnion(reviews.texts)
            #expect(reviews.texts.allSatisfy { !$0.isEmpty })
        }
        // [rotten, fresh] per split; 12,751 distinct reviews in all.
        #expect(counts["train"] == [4288, 5913])
        #expect(counts["validation"] == [550, 725])
        #expect(counts["test"] == [545, 730])
        #expect(seen.count == 12_751)
    }
}
