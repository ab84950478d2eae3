// WordPieceTokenizer: BERT's uncased tokenizer, text → token ids, as Hugging Face's BertTokenizer
// with do_lower_case=True (the Python BasicTokenizer + WordpieceTokenizer pair).
//
// Note: tokenizer pipeline. The steps, in HF's order, all on Unicode scalars (Python code points):
//   1. Clean: drop NUL, U+FFFD and control characters (categories C*, except tab, LF, CR); turn
//      tab, LF, CR and space separators (Zs) into " ".
//   2. Put spaces around CJK ideographs (HF's _is_chinese_char ranges), so each is its own word.
//   3. NFC, then split on whitespace (Python's str.split).
//   4. Per word: lower-case (Python's str.lower, with its final-sigma rule), NFD, drop nonspacing
//      marks (Mn), then split off every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126,
//      and categories P*) as a word of its own.
//   5. WordPiece: greedy longest match first; pieces after the first carry "##"; a word longer
//      than 100 scalars, or one that cannot be covered by vocabulary pieces, becomes [UNK].
// Checked against HF on tricky strings by scripts/fixtures/wordpiece.py (Tests/Fixtures/wordpiece.json).
// One deliberate difference: HF recognizes special tokens typed in the text ("[SEP]"); Thaw
// tokenizes them as plain text, so user text can never inject structure.
import Foundation

/// One text as model input: [CLS] tokens [SEP], truncated and padded to a fixed length.
public struct EncodedText: Sendable, Equatable {
    /// `maximumLength` token ids: [CLS], the text's tokens, [SEP], then [PAD]s.
    public var ids: [Int32]
    /// 1 for [CLS], the tokens and [SEP]; 0 for padding.
    public var attentionMask: [Int32]

    /// Creates an encoded text from ids and a mask of the same length.
    public init(ids: [Int32], attentionMask: [Int32]) {
        self.ids = ids
        self.attentionMask = attentionMask
    }
}

/// Several texts encoded to the same length, row after row.
public struct EncodedBatch: Sendable, Equatable {
    /// The number of texts (rows).
    public var count: Int
    /// The length of every row.
    public var maximumLength: Int
    /// `count * maximumLength` token ids, row-major (see ``EncodedText/ids``).
    public var ids: [Int32]
    /// `count * maximumLength` mask values, row-major (see ``EncodedText/attentionMask``).
    public var attentionMask: [Int32]

    /// Creates a batch from row-major ids and mask, `count * maximumLength` values each.
    public init(count: Int, maximumLength: Int, ids: [Int32], attentionMask: [Int32]) {
        self.count = count
        self.maximumLength = maximumLength
        self.ids = ids
        self.attentionMask = attentionMask
    }
}

/// BERT's uncased WordPiece tokenizer over a `vocab.txt` vocabulary (see "Note: tokenizer pipeline").
public struct WordPieceTokenizer: Sendable {
    /// The special tokens every vocabulary must contain.
    public static let requiredSpecialTokens = ["[CLS]", "[SEP]", "[PAD]", "[UNK]"]
    /// Words longer than this many Unicode scalars become [UNK] (HF's max_input_chars_per_word).
    public static let maximumWordLength = 100
    /// The prefix of a piece that continues a word.
    public static let continuationPrefix = "##"

    /// Where the vocabulary came from (its file, or a label given to ``init(tokens:file:)``).
    public let file: String
    /// Every token, by id (the vocabulary file's line order).
    public let tokens: [String]
    /// The id of [CLS], which starts every encoded text.
    public let classificationID: Int32
    /// The id of [SEP], which ends every encoded text.
    public let separatorID: Int32
    /// The id of [PAD], which fills encoded texts up to their length (0 in BERT vocabularies).
    public let paddingID: Int32
    /// The id of [UNK], for words the vocabulary cannot cover.
    public let unknownID: Int32
    /// Token bytes → id. Keyed by UTF-8 bytes, not String: Swift compares Strings by canonical
    /// equivalence, Python (and so the vocabulary's intent) by code points.
    private let idsByBytes: [[UInt8]: Int32]

    /// Loads a `vocab.txt`: one token per line, the line number (from 0) being its id.
    /// - Parameter path: The vocabulary file (gzip-compressed files are inflated first).
    /// - Throws: ``DataError`` naming the file (and line) for an empty file, invalid UTF-8, an empty
    ///   line, a duplicate token or a missing special token.
    public init(vocabularyFile path: String) throws(DataError) {
        let bytes = try Gzip.readFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw DataError(file: path, kind: .badValue, detail: "the vocabulary is not valid UTF-8")
        }
        try self.init(tokens: Self.lines(of: text), file: path)
    }

    /// Creates a tokenizer from tokens in id order.
    /// - Parameters:
    ///   - tokens: Token `i` gets id `i`.
    ///   - file: Where the tokens came from, for errors (lines are numbered from 1).
    /// - Throws: ``DataError`` for no tokens, an empty token, a duplicate or a missing special token.
    public init(tokens: [String], file: String = "<vocabulary>") throws(DataError) {
        guard !tokens.isEmpty else {
            throw DataError(file: file, kind: .badValue, detail: "the vocabulary is empty", hint: "expected one token per line, as in BERT's vocab.txt")
        }
        guard tokens.count <= Int(Int32.max) else {
            throw DataError(file: file, kind: .sizeMismatch, detail: "\(tokens.count) tokens do not fit 32-bit ids")
        }
        var idsByBytes: [[UInt8]: Int32] = [:]
        idsByBytes.reserveCapacity(tokens.count)
        for (index, token) in tokens.enumerated() {
            guard !token.isEmpty else {
                throw DataError(file: file, kind: .badValue, detail: "line \(index + 1) is empty; every line must hold one token")
            }
            if let earlier = idsByBytes.updateValue(Int32(index), forKey: Array(token.utf8)) {
                throw DataError(file: file, kind: .badValue,
                                detail: "line \(index + 1): token '\(token)' already appears on line \(earlier + 1)")
            }
        }
        func special(_ token: String) throws(DataError) -> Int32 {
            guard let id = idsByBytes[Array(token.utf8)] else {
                throw DataError(file: file, kind: .badValue, detail: "the vocabulary has no \(token) token",
                                hint: "BERT vocabularies hold \(Self.requiredSpecialTokens.joined(separator: " ")), each on a line of its own")
            }
            return id
        }
        classificationID = try special("[CLS]")
        separatorID = try special("[SEP]")
        paddingID = try special("[PAD]")
        unknownID = try special("[UNK]")
        self.file = file
        self.tokens = tokens
        self.idsByBytes = idsByBytes
    }

    /// The number of tokens in the vocabulary.
    public var vocabularySize: Int { tokens.count }

    /// The id of `token`, if the vocabulary has it.
    public func id(of token: String) -> Int32? { idsByBytes[Array(token.utf8)] }

    /// The word pieces of `text`, without [CLS] and [SEP] (an uncovered word is "[UNK]").
    public func tokenize(_ text: String) -> [String] {
        tokenIDs(text).map { tokens[Int($0)] }
    }

    /// The token ids of `text`, without [CLS] and [SEP], untruncated.
    public func tokenIDs(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for word in Self.basicTokens(text) { appendWordPieces(of: word, to: &ids) }
        return ids
    }

    /// Encodes `text` as [CLS] tokens [SEP] padded with [PAD] to exactly `maximumLength` ids;
    /// longer texts lose their last tokens, never [SEP] (HF's truncation=True, padding="max_length").
    /// - Parameters:
    ///   - text: Any text.
    ///   - maximumLength: The length of the result, at least 2 (room for [CLS] and [SEP]).
    public func encode(_ text: String, maximumLength: Int) -> EncodedText {
        precondition(maximumLength >= 2, "maximumLength \(maximumLength) leaves no room for [CLS] and [SEP]")
        let content = tokenIDs(text).prefix(maximumLength - 2)
        var ids = [classificationID]
        ids.reserveCapacity(maximumLength)
        ids += content
        ids.append(separatorID)
        var mask = [Int32](repeating: 1, count: ids.count)
        mask += repeatElement(0, count: maximumLength - ids.count)
        ids += repeatElement(paddingID, count: maximumLength - ids.count)
        return EncodedText(ids: ids, attentionMask: mask)
    }

    /// Encodes every text with ``encode(_:maximumLength:)`` into one row-major batch.
    /// - Parameters:
    ///   - texts: The texts, one row each.
    ///   - maximumLength: The length of every row, at least 2.
    public func encode(_ texts: [String], maximumLength: Int) -> EncodedBatch {
        var batch = EncodedBatch(count: texts.count, maximumLength: maximumLength, ids: [], attentionMask: [])
        batch.ids.reserveCapacity(texts.count * maximumLength)
        batch.attentionMask.reserveCapacity(texts.count * maximumLength)
        for text in texts {
            let encoded = encode(text, maximumLength: maximumLength)
            batch.ids += encoded.ids
            batch.attentionMask += encoded.attentionMask
        }
        return batch
    }

    // MARK: - Step 5: WordPiece

    /// Greedy longest-match-first pieces of one basic token (step 5 of the pipeline).
    private func appendWordPieces(of word: [Unicode.Scalar], to ids: inout [Int32]) {
        guard word.count <= Self.maximumWordLength else {
            ids.append(unknownID)
            return
        }
        // Byte offset of each scalar in the word's UTF-8, so every candidate piece is a byte range.
        var bytes: [UInt8] = []
        var offsets: [Int] = []
        for scalar in word {
            offsets.append(bytes.count)
            UTF8.encode(scalar) { bytes.append($0) }
        }
        offsets.append(bytes.count)
        let prefix = Array(Self.continuationPrefix.utf8)
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                let key = (start > 0 ? prefix : []) + bytes[offsets[start]..<offsets[end]]
                if let id = idsByBytes[key] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                ids.append(unknownID)
                return
            }
            pieces.append(found)
            start = end
        }
        ids += pieces
    }

    // MARK: - Steps 1-4: basic tokenization

    /// The words of `text` before WordPiece: cleaned, split, lower-cased, accent-stripped and split
    /// at punctuation (steps 1-4 of the pipeline).
    public static func basicTokens(_ text: String) -> [[Unicode.Scalar]] {
        var cleaned = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar.value == 0 || scalar.value == 0xFFFD || isControl(scalar) { continue }
            if isWhitespace(scalar) {
                cleaned.append(" ")
            } else if isChineseCharacter(scalar) {
                cleaned.append(" ")
                cleaned.append(scalar)
                cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        let composed = String(cleaned).precomposedStringWithCanonicalMapping
        var words: [[Unicode.Scalar]] = []
        for word in composed.unicodeScalars.split(whereSeparator: isPythonSpace) {
            let stripped = String(lowercased(Array(word))).decomposedStringWithCanonicalMapping
                .unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
            var current: [Unicode.Scalar] = []
            for scalar in stripped {
                if isPunctuation(scalar) {
                    if !current.isEmpty { words.append(current) }
                    words.append([scalar])
                    current = []
                } else {
                    current.append(scalar)
                }
            }
            if !current.isEmpty { words.append(current) }
        }
        return words
    }

    /// Python's str.lower: each scalar's full lower-case mapping, except that a capital sigma in
    /// final position becomes final sigma ς (Unicode's Final_Sigma condition, as CPython applies it).
    static func lowercased(_ word: [Unicode.Scalar]) -> String.UnicodeScalarView {
        var result = String.UnicodeScalarView()
        for (index, scalar) in word.enumerated() {
            if scalar.value == 0x03A3 {
                result.append(isFinalSigma(word, at: index) ? "\u{03C2}" : "\u{03C3}")
            } else {
                result.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return result
    }

    /// Cased, case-ignorable*, Σ, and not followed by case-ignorable* cased.
    static func isFinalSigma(_ word: [Unicode.Scalar], at index: Int) -> Bool {
        var before = index - 1
        while before >= 0 && word[before].properties.isCaseIgnorable { before -= 1 }
        guard before >= 0 && word[before].properties.isCased else { return false }
        var after = index + 1
        while after < word.count && word[after].properties.isCaseIgnorable { after += 1 }
        return after == word.count || !word[after].properties.isCased
    }

    /// HF's _is_control: categories Cc, Cf, Cs, Co, Cn, except tab, LF and CR.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == "\t" || scalar == "\n" || scalar == "\r" { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// HF's _is_whitespace: space, tab, LF, CR and space separators (Zs).
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r"
            || scalar.properties.generalCategory == .spaceSeparator
    }

    /// Python's str.isspace, which str.split splits on: after cleaning, only " ", U+2028 and U+2029 remain of it.
    static func isPythonSpace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85: return true
        default:
            switch scalar.properties.generalCategory {
            case .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
            default: return false
            }
        }
    }

    /// HF's _is_punctuation: the ASCII non-alphanumeric printable ranges, and categories P*.
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 33...47, 58...64, 91...96, 123...126: return true
        default:
            switch scalar.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation:
                return true
            default: return false
            }
        }
    }

    /// HF's _is_chinese_char: the CJK Unified Ideographs blocks and their extensions, and the
    /// compatibility ideographs (not Hiragana, Katakana or Hangul, which are split into pieces).
    static func isChineseCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default: return false
        }
    }

    /// The lines of a vocabulary file as Python's readlines + rstrip("\n") sees them (a final
    /// newline ends the last line, it does not start an empty one); a CR before the LF is dropped.
    static func lines(of text: String) -> [String] {
        // Scalars, not Characters: "\r\n" is one Character, and would hide the "\n".
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(line.last == "\r" ? line.dropLast() : line)
        }
        if lines.last == "" { lines.removeLast() }
        return lines
    }
}
