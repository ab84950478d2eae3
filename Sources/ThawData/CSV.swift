// CSV: numeric tables with one integer class label per row.
//
// Every field must be a number (no quoting); blank lines are skipped; CRLF line ends work.
// The first line is a header if asked, or, when detecting, if any of its fields is not a number.
// One column (the last by default) holds integer labels; the others are the features, in order.

/// A numeric CSV table split into features and labels.
public struct CSVTable: Sendable, Equatable {
    /// The file it was read from.
    public var file: String
    /// The header's column names (all columns, label included), if the file had a header.
    public var columnNames: [String]?
    /// The number of feature columns.
    public var featureCount: Int
    /// Every row's features, row after row (`labels.count * featureCount` values).
    public var features: [Float]
    /// Every row's label.
    public var labels: [Int32]

    /// The number of data rows.
    public var rowCount: Int { labels.count }

    /// The table as a dataset of [featureCount]-shaped samples.
    /// - Parameter classCount: The number of classes; nil means the largest label plus one.
    /// - Throws: ``DataError`` if a label is not in `0..<classCount`.
    public func dataset(classCount: Int? = nil) throws(DataError) -> InMemoryDataset {
        let classes = classCount ?? Int((labels.max() ?? -1) + 1)
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DataError(file: file, kind: .badValue, detail: "label \(labels[bad]) of data row \(bad + 1) is not in 0..<\(classes)")
        }
        return InMemoryDataset(features: features, labels: labels, sampleShape: [featureCount], classCount: classes)
    }
}

/// Reading numeric CSV files.
public enum CSVReader {
    /// Whether the first line is a header.
    public enum Header: Sendable, Equatable {
        /// The first line holds column names.
        case present
        /// The first line is data.
        case absent
        /// A header if any field of the first line is not a number.
        case detect
    }

    /// Which column holds the labels.
    public enum LabelColumn: Sendable, Equatable {
        /// The last column.
        case last
        /// The first column.
        case first
        /// The column at this zero-based position.
        case index(Int)
        /// The column with this header name (needs a header).
        case named(String)
    }

    /// Reads a CSV file (gzip-compressed files are inflated first).
    /// - Parameters:
    ///   - path: The file to read.
    ///   - header: Whether the first line is a header.
    ///   - labelColumn: Which column holds the integer labels.
    ///   - separator: The field separator, a comma by default.
    /// - Throws: ``DataError`` naming the file and, for bad values, the line and column.
    public static func read(_ path: String, header: Header = .detect, labelColumn: LabelColumn = .last,
                            separator: Character = ",") throws(DataError) -> CSVTable {
        try parse(String(decoding: Gzip.readFile(path), as: UTF8.self), file: path, header: header,
                  labelColumn: labelColumn, separator: separator)
    }

    /// Parses CSV text.
    /// - Parameters:
    ///   - text: The whole file.
    ///   - file: Where the text came from, for errors.
    ///   - header: Whether the first line is a header.
    ///   - labelColumn: Which column holds the integer labels.
    ///   - separator: The field separator.
    /// - Throws: ``DataError`` with kind `.badValue`, `.badHeader` or `.sizeMismatch`.
    public static func parse(_ text: String, file: String, header: Header = .detect, labelColumn: LabelColumn = .last,
                             separator: Character = ",") throws(DataError) -> CSVTable {
        var lines: [(number: Int, fields: [Substring])] = []
        // "\r\n" is one Character in Swift, and isNewline covers it as well as "\n".
        for (offset, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            lines.append((offset + 1, line.split(separator: separator, omittingEmptySubsequences: false).map(trim)))
        }
        guard let first = lines.first else {
            throw DataError(file: file, kind: .badValue, detail: "no rows")
        }
        let hasHeader: Bool
        switch header {
        case .present: hasHeader = true
        case .absent: hasHeader = false
        case .detect: hasHeader = first.fields.contains { Float($0) == nil }
        }
        let columnNames = hasHeader ? first.fields.map(String.init) : nil
        let rows = hasHeader ? lines.dropFirst() : lines[...]
        let columnCount = first.fields.count
        guard columnCount >= 1 else { throw DataError(file: file, kind: .badValue, detail: "no columns") }

        let labelIndex: Int
        switch labelColumn {
        case .last: labelIndex = columnCount - 1
        case .first: labelIndex = 0
        case .index(let index): labelIndex = index
        case .named(let name):
            guard let columnNames else {
                throw DataError(file: file, kind: .badHeader, detail: "label column '\(name)' named, but the file has no header")
            }
            guard let index = columnNames.firstIndex(of: name) else {
                throw DataError(file: file, kind: .badHeader, detail: "no column named '\(name)' in header \(columnNames)")
            }
            labelIndex = index
        }
        guard labelIndex >= 0 && labelIndex < columnCount else {
            throw DataError(file: file, kind: .sizeMismatch, detail: "label column \(labelIndex) is not in 0..<\(columnCount) columns")
        }

        var features: [Float] = []
        features.reserveCapacity(rows.count * (columnCount - 1))
        var labels: [Int32] = []
        labels.reserveCapacity(rows.count)
        for row in rows {
            guard row.fields.count == columnCount else {
                throw DataError(file: file, kind: .sizeMismatch, detail: "line \(row.number) has \(row.fields.count) fields, expected \(columnCount)")
            }
            for (column, field) in row.fields.enumerated() {
                if column == labelIndex {
                    guard let label = Int32(field) ?? integralLabel(field), label >= 0 else {
                        throw DataError(file: file, kind: .badValue, detail: "line \(row.number), column \(column + 1): label '\(field)' is not a non-negative integer")
                    }
                    labels.append(label)
                } else {
                    guard let value = Float(field) else {
                        throw DataError(file: file, kind: .badValue, detail: "line \(row.number), column \(column + 1): '\(field)' is not a number")
                    }
                    features.append(value)
                }
            }
        }
        guard !labels.isEmpty else { throw DataError(file: file, kind: .badValue, detail: "no data rows") }
        return CSVTable(file: file, columnNames: columnNames, featureCount: columnCount - 1, features: features, labels: labels)
    }

    /// A label written as a whole float ("3.0"), as NumPy and pandas often write them.
    static func integralLabel(_ field: Substring) -> Int32? {
        guard let value = Double(field), value == value.rounded(), let label = Int32(exactly: value) else { return nil }
        return label
    }

    static func trim(_ field: Substring) -> Substring {
        var result = field
        while let c = result.first, c == " " || c == "\t" { result.removeFirst() }
        while let c = result.last, c == " " || c == "\t" { result.removeLast() }
        return result
    }
}
