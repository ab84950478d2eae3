// ConfigInput: bounds on the configuration text and on `--set` overrides, checked before any YAML
// parser sees them, and the duplicate-key check YAML asks for and Yams does not make.
//
// Yams' parser and composer recurse once per nesting level, so text nested a few thousand levels
// deep overflows the stack (SIGSEGV) before any error can be thrown. So the text is scanned first:
// indentation levels, `- ` sequence entries and flow brackets `[`/`{` add up to a nesting depth,
// which may not pass `maximumDepth`. The scan only has to be safe, not a YAML parser: it errs towards
// counting more (a bracket inside an unusual plain scalar), which only matters past 64 levels, far
// beyond any real configuration. The file, each override and the override's key path are bounded too.
//
// A mapping that repeats a key is an error in YAML 1.2, but Yams keeps the last value silently, so
// the composed node tree is walked once for repeats (and for size: aliases can make a small text
// expand to a huge tree, so the walk stops past `maximumNodes`).
import Foundation
import ThawTrainer
import ThawPlan
import Yams

/// The input bounds of the configuration loader.
enum ConfigInput {
    /// The largest configuration file, in bytes (real ones are a few kilobytes).
    static let maximumBytes = 1 << 20
    /// The deepest nesting of mappings, sequences and flow collections (real configurations use 3).
    static let maximumDepth = 64
    /// The longest `--set` override, in bytes.
    static let maximumOverrideBytes = 16 << 10
    /// The most `--set` overrides.
    static let maximumOverrides = 1024
    /// The most parts of a `--set` key path (real ones have 2 to 4).
    static let maximumKeyParts = 32
    /// The most nodes (keys, values, entries) a configuration may compose to.
    static let maximumNodes = 100_000

    /// Reads a configuration file, refusing one that is too large before reading it.
    /// - Throws: ``ConfigError`` naming the file and the operating system's reason.
    static func read(_ path: String) throws(ConfigError) -> String {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw ConfigError(file: path, key: "", message: "cannot read the file: \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) != S_IFDIR else { throw ConfigError(file: path, key: "", message: "is a directory, not a configuration file") }
        guard status.st_size <= maximumBytes else {
            throw ConfigError(file: path, key: "", message: "is \(status.st_size) bytes; a configuration file may have at most \(maximumBytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, key: "", message: "cannot read the file: \(String(cString: strerror(errno)))")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw ConfigError(file: path, key: "", message: "is not UTF-8 text") }
        return text
    }

    /// Checks the text and the overrides against every bound, and the text for repeated keys.
    /// - Throws: ``ConfigError`` naming `file` (with the line) or `--set` (with the override's key path).
    static func check(_ text: String, file: String, overrides: [String]) throws(ConfigError) {
        guard text.utf8.count <= maximumBytes else {
            throw ConfigError(file: file, key: "", message: "is \(text.utf8.count) bytes; a configuration may have at most \(maximumBytes)")
        }
        if let line = firstLineTooDeep(text) {
            throw ConfigError(file: file, key: "", message: "line \(line): nested more than \(maximumDepth) levels deep")
        }
        guard overrides.count <= maximumOverrides else {
            throw ConfigError(file: "--set", key: "", message: "\(overrides.count) overrides; at most \(maximumOverrides) are accepted")
        }
        for override in overrides { try checkOverride(override) }
        try checkRepeatedKeys(text, file: file)
    }

    /// Checks one `key.path=value` override.
    static func checkOverride(_ override: String) throws(ConfigError) {
        let shown = String(override.prefix(80))
        guard override.utf8.count <= maximumOverrideBytes else {
            throw ConfigError(file: "--set", key: shown, message: "is \(override.utf8.count) bytes; an override may have at most \(maximumOverrideBytes)")
        }
        guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
            throw ConfigError(file: "--set", key: shown, message: "expected key.path=value")
        }
        let parts = override[..<equals].split(separator: ".", omittingEmptySubsequences: false)
        let key = String(override[..<equals].prefix(80))
        guard parts.count <= maximumKeyParts else {
            throw ConfigError(file: "--set", key: key, message: "a key path of \(parts.count) parts; at most \(maximumKeyParts) are accepted")
        }
        guard parts.allSatisfy({ !$0.isEmpty && !$0.contains(where: \.isWhitespace) }) else {
            throw ConfigError(file: "--set", key: key, message: "expected key.path=value with non-empty parts and no spaces in the key path")
        }
        if firstLineTooDeep(String(override[override.index(after: equals)...])) != nil {
            throw ConfigError(file: "--set", key: key, message: "the value is nested more than \(maximumDepth) levels deep")
        }
    }

    /// The first line (from 1) at which the nesting passes `maximumDepth`, or nil.
    static func firstLineTooDeep(_ text: String) -> Int? {
        var scanner = NestingScanner()
        var number = 0
        // Split the bytes, not the characters: "\r\n" is one Character.
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            if scanner.depth(afterLine: line) > maximumDepth { return number }
        }
        return nil
    }

    /// Throws for a mapping that repeats a key, naming its key path and both lines.
    static func checkRepeatedKeys(_ text: String, file: String) throws(ConfigError) {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw ConfigError(file: file, key: "", message: "not valid YAML or JSON: \(error)")
        }
        guard let root else { return }
        var pending: [(node: Node, path: String)] = [(root, "")]
        var visited = 0
        while let (node, path) = pending.popLast() {
            visited += 1
            guard visited <= maximumNodes else {
                throw ConfigError(file: file, key: "", message: "composes to more than \(maximumNodes) values (YAML aliases expanding?)")
            }
            switch node {
            case .mapping(let mapping):
                var firstLine: [String: Int] = [:]
                for (key, value) in mapping {
                    let name = key.string ?? "\(key.any)"
                    let child = path.isEmpty ? name : "\(path).\(name)"
                    let line = key.mark?.line ?? 0
                    if name != "<<", let first = firstLine[name] {
                        throw ConfigError(file: file, key: String(child.prefix(200)), message: "line \(line): repeats the key of line \(first)")
                    }
                    firstLine[name] = line
                    pending.append((value, child))
                }
            case .sequence(let sequence):
                for (index, element) in sequence.enumerated() { pending.append((element, "\(path)[\(index)]")) }
            default:
                break
            }
        }
    }
}

/// Counts nesting line by line: the block indentation levels open at the line, its `- ` entries,
/// and the flow collections open in it, carried over lines. Quoted scalars, comments and block
/// scalars (`|`, `>`) are skipped, so brackets in them do not count.
struct NestingScanner {
    /// Indentation columns of the open block levels.
    private var indents: [Int] = []
    /// Open `[` and `{` (flow collections can span lines).
    private var flowDepth = 0
    /// The quote a quoted scalar that spans lines is waiting for.
    private var openQuote: UInt8?
    /// While in a block scalar: the indentation of the line that started it.
    private var blockScalarParent: Int?

    private static let space = UInt8(ascii: " "), dash = UInt8(ascii: "-"), hash = UInt8(ascii: "#"), colon = UInt8(ascii: ":")
    private static let openers: Set<UInt8> = [UInt8(ascii: "["), UInt8(ascii: "{")]
    private static let closers: Set<UInt8> = [UInt8(ascii: "]"), UInt8(ascii: "}")]
    private static let quotes: Set<UInt8> = [UInt8(ascii: "\""), UInt8(ascii: "'")]
    private static let blockIndicators: Set<UInt8> = [UInt8(ascii: "|"), UInt8(ascii: ">")]

    /// The deepest nesting within `line`.
    mutating func depth(afterLine line: Substring.UTF8View) -> Int {
        let bytes = Array(line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...])
        let indent = bytes.prefix { $0 == Self.space }.count
        let blank = indent == bytes.count || bytes[indent] == Self.hash
        if let parent = blockScalarParent {
            if blank || indent > parent { return indents.count }
            blockScalarParent = nil
        }
        if blank && openQuote == nil { return indents.count + flowDepth }
        var index = indent
        var entries = 0
        if flowDepth == 0 && openQuote == nil {
            while let top = indents.last, top > indent { indents.removeLast() }
            if indents.last != indent { indents.append(indent) }
            // `- - x`: each sequence entry on the line opens a level.
            while index < bytes.count, bytes[index] == Self.dash, index + 1 == bytes.count || bytes[index + 1] == Self.space {
                entries += 1
                index += 1
                while index < bytes.count, bytes[index] == Self.space { index += 1 }
            }
        }
        var deepest = indents.count + entries + flowDepth
        var atValueStart = true
        while index < bytes.count {
            let byte = bytes[index]
            if let quote = openQuote {
                if byte == quote {
                    // '' inside a single-quoted scalar is an escaped quote.
                    if quote == UInt8(ascii: "'"), index + 1 < bytes.count, bytes[index + 1] == quote { index += 2; continue }
                    openQuote = nil
                } else if byte == UInt8(ascii: "\\"), quote == UInt8(ascii: "\"") {
                    index += 1
                }
                index += 1
                continue
            }
            if byte == Self.hash, index == 0 || bytes[index - 1] == Self.space { break }
            if byte == Self.space { index += 1; continue }
            if atValueStart && Self.quotes.contains(byte) {
                openQuote = byte
            } else if Self.openers.contains(byte) && (flowDepth > 0 || atValueStart) {
                flowDepth += 1
                deepest = max(deepest, indents.count + entries + flowDepth)
            } else if Self.closers.contains(byte) && flowDepth > 0 {
                flowDepth -= 1
            } else if atValueStart && flowDepth == 0 && Self.blockIndicators.contains(byte) {
                blockScalarParent = indent
                break
            }
            // A value starts after `key: `, and in flow collections after `[`, `{` and `,`.
            let next = index + 1 < bytes.count ? bytes[index + 1] : Self.space
            atValueStart = (byte == Self.colon && next == Self.space)
                || (flowDepth > 0 && (Self.openers.contains(byte) || byte == UInt8(ascii: ",") || byte == Self.colon))
            index += 1
        }
        return deepest
    }
}
