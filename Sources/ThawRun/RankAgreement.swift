// RankAgreement: checks, before anything else is done, that every rank was started alike (the
// launch options that change the sequence of collectives, and the configuration), and says what
// differs in words: the option or the first differing configuration key, and each rank's value.
import Foundation
import ThawTrainer
import ThawCollective
import ThawPlan

/// Ranks that were started differently, with each rank's value of what differs.
public struct RankDisagreement: Error, CustomStringConvertible, Equatable {
    /// What differs, such as `launch option --coordinator` or `configuration key training.epochs`.
    public var what: String
    /// Each rank's value, by rank.
    public var values: [String]

    /// "ranks disagree on X: A on ranks 0, 2; B on rank 1".
    public var description: String {
        var order: [String] = []
        var ranks: [String: [Int]] = [:]
        for (rank, value) in values.enumerated() {
            if ranks[value] == nil { order.append(value) }
            ranks[value, default: []].append(rank)
        }
        let groups = order.map { value -> String in
            let holders = ranks[value] ?? []
            return "\(value) on rank\(holders.count == 1 ? "" : "s") " + holders.map(String.init).joined(separator: ", ")
        }
        return "ranks disagree on \(what): " + groups.joined(separator: "; ")
    }
}

/// Cross-rank checks of how the ranks were started.
public enum RankAgreement {
    /// Checks that every rank has the same value of each named launch option, in order; on the first
    /// that differs, every rank throws the same ``RankDisagreement`` naming the option and each rank's value.
    /// - Parameter options: Option names (such as `--coordinator`) with this rank's value (`none` when absent).
    public static func verifyLaunchOptions(_ options: [(name: String, value: String)], collective: any Collective) throws {
        for option in options {
            guard let values = try gatherIfDifferent(option.value, collective: collective) else { continue }
            throw RankDisagreement(what: "launch option \(option.name)", values: values)
        }
    }

    /// Checks that every rank has the same configuration; if not, every rank throws the same
    /// ``RankDisagreement`` naming the first key (in sorted order) whose values differ.
    public static func verifyConfiguration(_ config: TrainingConfig, collective: any Collective) throws {
        let mine = flattened(config)
        let text = mine.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
        guard let texts = try gatherIfDifferent(text, collective: collective) else { return }
        let configs = texts.map { Dictionary($0.split(separator: "\n").map { line -> (String, String) in
            let parts = line.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }, uniquingKeysWith: { first, _ in first }) }
        let keys = Set(configs.flatMap(\.keys)).sorted()
        let key = keys.first { key in configs.contains { $0[key] != configs[0][key] } } ?? ""
        throw RankDisagreement(what: "configuration key \(key)", values: configs.map { $0[key] ?? "(absent)" })
    }

    /// The configuration as sorted `key.path → JSON value` pairs, one per leaf (arrays stay whole).
    static func flattened(_ config: TrainingConfig) -> [(key: String, value: String)] {
        flattened(json: config.canonicalJSON)
    }

    /// A JSON object as sorted `key.path → JSON value` pairs, one per leaf (arrays stay whole).
    static func flattened(json: Data) -> [(key: String, value: String)] {
        guard let object = try? JSONSerialization.jsonObject(with: json) else { return [] }
        var pairs: [(key: String, value: String)] = []
        func walk(_ value: Any, _ path: String) {
            if let mapping = value as? [String: Any], !mapping.isEmpty {
                for key in mapping.keys.sorted() { walk(mapping[key] as Any, path.isEmpty ? key : path + "." + key) }
            } else {
                let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])) ?? Data()
                pairs.append((path, String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\n", with: " ")))
            }
        }
        walk(object, "")
        return pairs
    }

    /// Nil when every rank holds `value`; otherwise every rank's value, by rank, on every rank.
    ///
    /// One all-gather of hashes decides. Only on a difference does the first rank of each distinct
    /// value broadcast its text, so every rank can describe the difference in the same words.
    private static func gatherIfDifferent(_ value: String, collective: any Collective) throws -> [String]? {
        let hashes: [UInt64]
        do {
            try collective.verifyAgreement(on: fnv1a(Array(value.utf8)), describing: "")
            return nil
        } catch CollectiveError.disagreement(_, _, let values) {
            hashes = values
        }
        var texts = [String](repeating: "", count: collective.worldSize)
        for rank in hashes.indices where hashes.firstIndex(of: hashes[rank]) == rank {
            var bytes = collective.rank == rank ? Array(value.utf8.prefix(1 << 24)) : []
            var length = UInt64(bytes.count)
            try withUnsafeMutableBytes(of: &length) { try collective.broadcast($0, root: rank) }
            if collective.rank != rank { bytes = [UInt8](repeating: 0, count: Int(min(length, 1 << 24))) }
            try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: rank) }
            let text = String(decoding: bytes, as: UTF8.self)
            for holder in hashes.indices where hashes[holder] == hashes[rank] { texts[holder] = text }
        }
        return texts
    }
}
