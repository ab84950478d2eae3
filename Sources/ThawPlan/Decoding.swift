// Decoding: strict decoding shared by the configuration file and the wire messages.
//
// Both are JSON-shaped input from outside, so both reject unknown keys and name the
// key path and the expected value in every error.
import Foundation

/// A configuration problem: the file, the key path and what was expected.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The configuration file.
    public var file: String
    /// The dotted key path, such as `training.batch_size` (empty for whole-file problems).
    public var key: String
    /// What was wrong and what was expected.
    public var message: String

    /// Creates a configuration error.
    public init(file: String, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    /// Translates a decoding error into the key path and what was expected.
    ///
    /// The path is spelled as in the input: snake_case (a decoder with `.convertFromSnakeCase` reports
    /// a missing `run_name` as the Swift key `runName`) and indices in brackets, `data.classes[2]`.
    public init(file: String, decodingError: DecodingError) {
        func path(_ keys: [any CodingKey]) -> String {
            keys.reduce(into: "") { path, key in
                if let index = key.intValue {
                    path += "[\(index)]"
                } else {
                    path += (path.isEmpty ? "" : ".") + snakeCase(key.stringValue)
                }
            }
        }
        self.file = file
        switch decodingError {
        case .typeMismatch(let type, let context):
            key = path(context.codingPath)
            message = "expected \(describe(type)): \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            key = path(context.codingPath)
            message = "expected \(describe(type)), found nothing"
        case .keyNotFound(let missing, let context):
            key = path(context.codingPath + [missing])
            message = "required key is missing"
        case .dataCorrupted(let context):
            key = path(context.codingPath)
            message = context.debugDescription
        @unknown default:
            key = ""
            message = "\(decodingError)"
        }
    }

    /// `file: key: message`, leaving out an empty file or key (errors raised where the file is not
    /// known, such as the unfreezing planner's, have an empty file).
    public var description: String {
        [file, key, message].filter { !$0.isEmpty }.joined(separator: ": ")
    }
}

/// `runName` → `run_name`: a Swift property name as the input spells it. Only names that look like
/// camelCase identifiers (a lowercase first letter, letters and digits) change, so a key the user
/// wrote, such as a table entry, is shown as written.
func snakeCase(_ name: String) -> String {
    guard let first = name.unicodeScalars.first, ("a"..."z").contains(first),
          name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }),
          name.unicodeScalars.contains(where: { ("A"..."Z").contains($0) }) else { return name }
    return name.unicodeScalars.reduce(into: "") { result, scalar in
        if ("A"..."Z").contains(scalar) {
            result += "_" + String(scalar).lowercased()
        } else {
            result.unicodeScalars.append(scalar)
        }
    }
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is UInt64.Type: return "an integer"
    case is Float.Type, is Double.Type: return "a number"
    case is Bool.Type: return "true or false"
    case is String.Type: return "a string"
    default: return "\(type)"
    }
}

/// Any string key, to list every key a mapping holds.
public struct AnyCodingKey: CodingKey {
    /// The key.
    public var stringValue: String
    /// The index, for arrays.
    public var intValue: Int?
    /// A string key.
    public init(stringValue: String) { self.stringValue = stringValue }
    /// An integer key.
    public init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

/// FNV-1a over bytes: a small stable hash for agreement checks (not for security).
public func fnv1a<Bytes: Sequence>(_ bytes: Bytes, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where Bytes.Element == UInt8 {
    var hash = seed
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01B3
    }
    return hash
}
