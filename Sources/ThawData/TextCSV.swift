// TextCSV: labelled texts in `label,text` CSV files (RFC 4180 quoting), for text classification.
//
// Each record has two fields: a non-negative integer label and the text. A text holding commas,
// quotes or line breaks is quoted: "She said ""fine"", then left" — inside quotes, "" is one quote
// and line breaks are part of the text. An unquoted field is taken as written (a stray quote
// inside it is kept, as Python's csv module does). Line ends may be LF, CRLF or CR; blank lines
// between records are skipped; a UTF-8 byte order mark is ignored. The first record may be the
// header `label,text`. This is what Python's csv.writer produces.

/// Texts with one integer class label each.
public struct LabelledTexts: Sendable, Equatable {
    /// The file they were read from.
    public var file: String
    /// Every text's label.
    public var labels: [Int32]
    /// Every text.
    public var texts: [String]

    /// Creates labelled texts; `labels` and `texts` must have the same length.
    public init(file: String, labels: [Int32], texts: [String]) {
        precondition(labels.count == texts.count, "\(labels.count) labels for \(texts.count) texts")
        self.file = file
        self.labels = labels
        self.texts = texts
    }

    /// The number of texts.
    public var count: Int { texts.count }

    /// The texts and labels at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabelledTexts {
        LabelledTexts(file: file, labels: indices.map { labels[$0] }, texts: indices.map { texts[$0] })
    }
}

/// Reading `label,text` CSV files.
public enum TextCSVReader {
    /// The header a file may start with.
    public static let header = ["label", "text"]

    /// Reads a `label,text` file (gzip-compressed files are inflated first).
    /// - Parameter path: The file to read.
    /// - Throws: ``DataError`` naming the file and, for bad records, the line.
    public static func read(_ path: String) throws(DataError) -> LabelledTexts {
        let bytes = try Gzip.readFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw DataError(file: path, kind: .badValue, detail: "the file is not valid UTF-8")
        }
        return try parse(text, file: path)
    }

    /// Parses `label,text` CSV text.
    /// - Parameters:
    ///   - text: The whole file.
    ///   - file: Where the text came from, for errors.
    /// - Throws: ``DataError`` with kind `.badValue` (no records, a bad label, an unclosed quote) or
    ///   `.sizeMismatch` (a record without exactly two fields), naming the line.
    public static func parse(_ text: String, file: String) throws(DataError) -> LabelledTexts {
        var records = try self.records(text, file: file)
        if let first = records.first, first.fields == header { records.removeFirst() }
        guard !records.isEmpty else {
            throw DataError(file: file, kind: .badValue, detail: "no records", hint: "expected `label,text` lines")
        }
        var labels: [Int32] = []
        var texts: [String] = []
        labels.reserveCapacity(records.count)
        texts.reserveCapacity(records.count)
        for record in records {
            guard record.fields.count == 2 else {
                throw DataError(file: file, kind: .sizeMismatch,
                                detail: "line \(record.line) has \(record.fields.count) field\(record.fields.count == 1 ? "" : "s"), expected 2 (label,text)",
                                hint: "quote texts that hold commas: 1,\"good, not great\"")
            }
            let field = CSVReader.trim(Substring(record.fields[0]))
            guard let label = Int32(field), label >= 0 else {
                throw DataError(file: file, kind: .badValue, detail: "line \(record.line): label '\(field)' is not a non-negative integer")
            }
            labels.append(label)
            texts.append(record.fields[1])
        }
        return LabelledTexts(file: file, labels: labels, texts: texts)
    }

    /// Splits CSV text into records of fields (RFC 4180), each with the line it starts on.
    /// - Throws: ``DataError`` with kind `.badValue` for a quoted field that is never closed or is
    ///   followed by text other than a separator or line end.
    public static func records(_ text: String, file: String) throws(DataError) -> [(line: Int, fields: [String])] {
        var records: [(line: Int, fields: [String])] = []
        var fields: [String] = []
        var field = String.UnicodeScalarView()
        var line = 1
        var recordLine = 1
        var recordIsEmpty = true  // Nothing read since the last record ended (so a line break ends nothing).
        var scalars = text.unicodeScalars[...]
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }

        func endField() {
            fields.append(String(field))
            field = String.UnicodeScalarView()
        }
        func endRecord() {
            let blank = fields.isEmpty && field.allSatisfy { $0 == " " || $0 == "\t" }
            if !recordIsEmpty && !blank {
                endField()
                records.append((recordLine, fields))
            }
            fields = []
            field = String.UnicodeScalarView()
            recordIsEmpty = true
        }

        var index = scalars.startIndex
        while index < scalars.endIndex {
            let scalar = scalars[index]
            if recordIsEmpty { recordLine = line }
            switch scalar {
            case "\"" where field.isEmpty:
                // A quoted field: runs to the closing quote; "" is a literal quote.
                let openingLine = line
                recordIsEmpty = false
                index = scalars.index(after: index)
                var closed = false
                while index < scalars.endIndex {
                    let inner = scalars[index]
                    if inner == "\"" {
                        let next = scalars.index(after: index)
                        if next < scalars.endIndex && scalars[next] == "\"" {
                            field.append("\"")
                            index = scalars.index(after: next)
                            continue
                        }
                        index = next
                        closed = true
                        break
                    }
                    if inner == "\n" || (inner == "\r" && scalars.index(after: index) < scalars.endIndex
                                         && scalars[scalars.index(after: index)] != "\n") {
                        line += 1
                    }
                    field.append(inner)
                    index = scalars.index(after: index)
                }
                guard closed else {
                    throw DataError(file: file, kind: .badValue, detail: "line \(openingLine): a quoted field is never closed")
                }
                if index < scalars.endIndex, ![",", "\n", "\r"].contains(scalars[index]) {
                    throw DataError(file: file, kind: .badValue,
                                    detail: "line \(line): '\(Character(scalars[index]))' after a closing quote; expected a comma or a line end",
                                    hint: "inside a quoted text, write a quote as \"\"")
                }
                continue
            case ",":
                recordIsEmpty = false
                endField()
            case "\r", "\n":
                let next = scalars.index(after: index)
                if scalar == "\r" && next < scalars.endIndex && scalars[next] == "\n" { index = next }
                endRecord()
                line += 1
            default:
                recordIsEmpty = false
                field.append(scalar)
            }
            index = scalars.index(after: index)
        }
        endRecord()
        return records
    }
}
