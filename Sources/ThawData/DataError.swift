// DataError: the one error type of ThawData's file readers.
//
// Every error names the file it came from, says what kind of problem it was (so tests and
// callers can branch on it) and carries a one-line detail, plus a hint where one helps.

/// A dataset file that could not be read or did not have the expected contents.
public struct DataError: Error, CustomStringConvertible, Equatable {
    /// What kind of problem it was.
    public enum Kind: Sendable, Equatable {
        /// The file or directory does not exist.
        case notFound
        /// The file exists but could not be read.
        case unreadable
        /// Gzip data was corrupt.
        case corruptCompression
        /// The file does not start with the expected magic bytes.
        case badMagic
        /// The file ends before the data its header promises.
        case truncated
        /// Sizes disagree: extra bytes, dimensions that do not match, rows of different length.
        case sizeMismatch
        /// A header could not be parsed.
        case badHeader
        /// A well-formed file in a variant that is not supported (data type, byte order, layout).
        case unsupported
        /// A value could not be parsed or is out of range.
        case badValue
    }

    /// The file (or directory) the problem is in.
    public var file: String
    /// What kind of problem it was.
    public var kind: Kind
    /// One line saying what was wrong.
    public var detail: String
    /// What the user can do about it, if anything specific.
    public var hint: String?

    /// Creates an error.
    public init(file: String, kind: Kind, detail: String, hint: String? = nil) {
        self.file = file
        self.kind = kind
        self.detail = detail
        self.hint = hint
    }

    /// "file: detail (hint)".
    public var description: String {
        "\(file): \(detail)" + (hint.map { " (\($0))" } ?? "")
    }
}
