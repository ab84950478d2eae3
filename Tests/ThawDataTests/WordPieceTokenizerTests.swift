// Tests for WordPieceTokenizer: exact ids against Hugging Face's BERT tokenizer on tricky strings,
// vocabulary file errors, WordPiece matching, truncation and padding.
import Foundation
import Testing
import ThawData
import ThawTesting

@Suite struct WordPieceTokenizerTests {
    /// A tiny vocabulary: ids are the positions.
    static let smallVocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "the", "movie", "##s", "!", "a", "##a", "x"]

    static func small() throws -> WordPieceTokenizer {
        try WordPieceTokenizer(tokens: smallVocabulary, file: "small")
    }

    @Test func matchesHuggingFaceOnTrickyStrings() throws {
        let tokenizer = try WordPieceTokenizer(vocabularyFile: try PretrainedFiles.miniLMVocabulary())
        #expect(tokenizer.vocabularySize == 30522)
        #expect([tokenizer.paddingID, tokenizer.unknownID, tokenizer.classificationID, tokenizer.separatorID] == [0, 100, 101, 102])
        let fixture = try Fixture(named: "wordpiece")
        let maximumLength = Int(try fixture.doubles("max_length")[0])
        let caseCount = Int(try fixture.doubles("case_count")[0])
        #expect(caseCount >= 40)
        for k in 0..<caseCount {
            let name = k < 10 ? "0\(k)" : "\(k)"
            var scalars = String.UnicodeScalarView()
            for value in try fixture.doubles("text_\(name)") {
                scalars.append(try #require(Unicode.Scalar(UInt32(value))))
            }
            let text = String(scalars)
            let expected = try fixture.doubles("ids_\(name)").map { Int32($0) }
            let full = [tokenizer.classificationID] + tokenizer.tokenIDs(text) + [tokenizer.separatorID]
            #expect(full == expected, "case \(name) \(text.debugDescription): \(tokenizer.tokenize(text))")
            let encoded = tokenizer.encode(text, maximumLength: maximumLength)
            #expect(encoded.ids == (try fixture.doubles("padded_\(name)").map { Int32($0) }), "case \(name)")
            #expect(encoded.attentionMask == (try fixture.doubles("mask_\(name)").map { Int32($0) }), "case \(name)")
        }
    }

    @Test func wordPieceIsGreedyLongestMatchFirst() throws {
        let tokenizer = try Self.small()
        #expect(tokenizer.tokenize("Unaffable movies!") == ["un", "##aff", "##able", "movie", "##s", "!"])
        // A word that cannot be covered becomes one [UNK], even if a prefix matched.
        #expect(tokenizer.tokenize("unaffablez the") == ["[UNK]", "the"])
        // Exactly 100 scalars still go through WordPiece; 101 are [UNK] without trying.
        let hundred = String(repeating: "a", count: 100)
        #expect(tokenizer.tokenize(hundred) == ["a"] + Array(repeating: "##a", count: 99))
        #expect(tokenizer.tokenize(hundred + "a") == ["[UNK]"])
        // Special tokens typed in the text are plain text (HF would match them).
        #expect(tokenizer.tokenize("[SEP]") == ["[UNK]", "[UNK]", "[UNK]"])
        #expect(tokenizer.id(of: "##able") == 6)
        #expect(tokenizer.id(of: "able") == nil)
    }

    @Test func basicTokenizationSteps() {
        func words(_ text: String) -> [String] { WordPieceTokenizer.basicTokens(text).map { String(String.UnicodeScalarView($0)) } }
        #expect(words("  Héllo,\tWORLD\u{00A0}naïve\u{2028}x ") == ["hello", ",", "world", "naive", "x"])
        #expect(words("a\u{0000}b\u{200B}c\u{FFFD}") == ["abc"])
        #expect(words("中文ab") == ["中", "文", "ab"])
        #expect(words("ΣΑΣ.Σ ΑΣ") == ["σασ", ".", "ς", "ας"])  // Python's final sigma: "." is case-ignorable
        #expect(words("") == [])
        #expect(words("\u{0301}") == [])  // a lone combining mark vanishes
    }

    @Test func encodeTruncatesKeepingSeparatorAndPads() throws {
        let tokenizer = try Self.small()
        let padded = tokenizer.encode("the movie", maximumLength: 6)
        #expect(padded.ids == [2, 7, 8, 3, 0, 0])
        #expect(padded.attentionMask == [1, 1, 1, 1, 0, 0])
        let exact = tokenizer.encode("the movie", maximumLength: 4)
        #expect(exact.ids == [2, 7, 8, 3])
        #expect(exact.attentionMask == [1, 1, 1, 1])
        let truncated = tokenizer.encode("the movies the movie", maximumLength: 5)
        #expect(truncated.ids == [2, 7, 8, 9, 3])
        #expect(tokenizer.encode("the movie", maximumLength: 2).ids == [2, 3])
        #expect(tokenizer.encode("", maximumLength: 3) == EncodedText(ids: [2, 3, 0], attentionMask: [1, 1, 0]))

        let texts = ["the movie", "", "unaffable the movies x x x"]
        let batch = tokenizer.encode(texts, maximumLength: 5)
        #expect(batch.count == 3 && batch.maximumLength == 5)
        let rows = texts.map { tokenizer.encode($0, maximumLength: 5) }
        #expect(batch.ids == rows.flatMap(\.ids))
        #expect(batch.attentionMask == rows.flatMap(\.attentionMask))
    }

    @Test func readsVocabularyFiles() throws {
        // A final newline ends the last line; CRLF line ends work.
        let file = try TemporaryFile(text: Self.smallVocabulary.joined(separator: "\r\n") + "\r\n", suffix: ".txt")
        let tokenizer = try WordPieceTokenizer(vocabularyFile: file.path)
        #expect(tokenizer.tokens == Self.smallVocabulary)
        #expect(tokenizer.file == file.path)
        let unterminated = try TemporaryFile(text: Self.smallVocabulary.joined(separator: "\n"), suffix: ".txt")
        #expect(try WordPieceTokenizer(vocabularyFile: unterminated.path).tokens == Self.smallVocabulary)
    }

    @Test func rejectsBadVocabularies() throws {
        let base = Self.smallVocabulary.joined(separator: "\n")
        let cases: [(name: String, bytes: [UInt8], kind: DataError.Kind, detail: String)] = [
            ("empty", [], .badValue, "the vocabulary is empty"),
            ("only a newline", Array("\n".utf8), .badValue, "line 1 is empty; every line must hold one token"),
            ("duplicate", Array((base + "\nthe\n").utf8), .badValue, "line 15: token 'the' already appears on line 8"),
            ("empty line", Array("[PAD]\n\n[UNK]\n".utf8), .badValue, "line 2 is empty; every line must hold one token"),
            ("no [CLS]", Array("[PAD]\n[UNK]\n[SEP]\n".utf8), .badValue, "the vocabulary has no [CLS] token"),
            ("no [UNK]", Array("[PAD]\n[CLS]\n[SEP]\n".utf8), .badValue, "the vocabulary has no [UNK] token"),
            ("invalid UTF-8", Array("[PAD]\n".utf8) + [0xFF, 0x0A], .badValue, "the vocabulary is not valid UTF-8"),
        ]
        for (name, bytes, kind, detail) in cases {
            let file = try TemporaryFile(bytes, suffix: ".txt")
            let error = try #require(throws: DataError.self, "\(name)") { try WordPieceTokenizer(vocabularyFile: file.path) }
            #expect(error.kind == kind, "\(name)")
            #expect(error.file == file.path, "\(name)")
            #expect(error.detail == detail, "\(name)")
        }
        let missing = try #require(throws: DataError.self) { try WordPieceTokenizer(vocabularyFile: "/nonexistent/vocab.txt") }
        #expect(missing.kind == .notFound)
        #expect(missing.description.hasPrefix("/nonexistent/vocab.txt"))
    }
}
