// ConfigSection: the one strict decoder of configuration sections. A section lists its keys once,
// each a name and a key path (`ConfigKey("batch_size", \.batchSize)`); decoding starts from the
// section's defaults, refuses any key the list lacks (naming the section's keys), decodes the keys
// present, and encodes every key back in the same spelling. Enum keys name their choices on error.
// Sections that are tagged unions (data, unfreezing) read their kind first and then the keys of that
// kind, with the same helpers.
import Foundation

/// How one key of section `Section` is read and written.
public struct ConfigKey<Section> {
    /// The key as the file spells it.
    public let name: String
    let decode: (inout Section, KeyedDecodingContainer<AnyCodingKey>) throws -> Void
    let encode: (Section, inout KeyedEncodingContainer<AnyCodingKey>) throws -> Void

    /// A key holding a plain value (a number, string, flag, list, or a nested section).
    public init<Value: Codable>(_ name: String, _ path: WritableKeyPath<Section, Value>) {
        self.name = name
        decode = { section, container in section[keyPath: path] = try container.decode(Value.self, forKey: AnyCodingKey(stringValue: name)) }
        encode = { section, container in try container.encode(section[keyPath: path], forKey: AnyCodingKey(stringValue: name)) }
    }

    /// A key that may be absent (nil when absent, and left out when written).
    public init<Value: Codable>(_ name: String, optional path: WritableKeyPath<Section, Value?>) {
        self.name = name
        decode = { section, container in section[keyPath: path] = try container.decode(Value.self, forKey: AnyCodingKey(stringValue: name)) }
        encode = { section, container in try container.encodeIfPresent(section[keyPath: path], forKey: AnyCodingKey(stringValue: name)) }
    }

    /// A key holding one of an enumeration's words; an unknown word is refused naming the choices.
    public init<Value: RawRepresentable & CaseIterable & Codable>(_ name: String, choice path: WritableKeyPath<Section, Value>)
        where Value.RawValue == String {
        self.name = name
        decode = { section, container in
            let key = AnyCodingKey(stringValue: name)
            let raw = try container.decode(String.self, forKey: key)
            guard let value = Value(rawValue: raw) else {
                throw ConfigError(file: "", key: (container.codingPath + [key]).map(\.stringValue).joined(separator: "."),
                                  message: "expected one of \(Value.allCases.map(\.rawValue).joined(separator: ", ")), got '\(raw.prefix(200))'")
            }
            section[keyPath: path] = value
        }
        encode = { section, container in try container.encode(section[keyPath: path].rawValue, forKey: AnyCodingKey(stringValue: name)) }
    }
}

/// A configuration section: defaults, its keys (each written once), and the checks of its values.
public protocol ConfigSection: Codable, Equatable, Sendable {
    /// The section with every default.
    init()
    /// Every key the section accepts.
    static var keys: [ConfigKey<Self>] { get }
    /// Checks the ranges and combinations of the section's own values; `keyPath` is the section's
    /// path in the file (`training`, `training.early_stopping`), for messages.
    func validate(keyPath: String, check: RangeCheck) throws(ConfigError)
}

extension ConfigSection {
    /// Decodes the keys present over the defaults; any other key is refused.
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        try refuseUnknownKeys(in: container, accepted: Self.keys.map(\.name))
        try decodeKeys(Self.keys, into: &self, from: container)
    }

    /// Encodes every key.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyCodingKey.self)
        try encodeKeys(Self.keys, of: self, into: &container)
    }
}

/// Refuses the first key (in sorted order) of `container` that `accepted` does not list, naming the
/// accepted keys (or `explanation`, when the key belongs to another kind of the section).
public func refuseUnknownKeys(in container: KeyedDecodingContainer<AnyCodingKey>, accepted: [String],
                              explanation: (String) -> String? = { _ in nil }) throws {
    let known = Set(accepted)
    guard let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) else { return }
    let prefix = container.codingPath.map(\.stringValue).joined(separator: ".")
    throw ConfigError(file: "", key: prefix.isEmpty ? unknown : "\(prefix).\(unknown)",
                      message: explanation(unknown) ?? "unknown key; expected one of \(accepted.sorted().joined(separator: ", "))")
}

/// Decodes each of `keys` present in `container` into `value`.
public func decodeKeys<Section>(_ keys: [ConfigKey<Section>], into value: inout Section, from container: KeyedDecodingContainer<AnyCodingKey>) throws {
    for key in keys where container.contains(AnyCodingKey(stringValue: key.name)) { try key.decode(&value, container) }
}

/// Encodes each of `keys` of `value` into `container`.
public func encodeKeys<Section>(_ keys: [ConfigKey<Section>], of value: Section, into container: inout KeyedEncodingContainer<AnyCodingKey>) throws {
    for key in keys { try key.encode(value, &container) }
}
