// UnfreezingSection: the `unfreezing` section of the configuration. The policy is a tagged union:
// each kind carries exactly the settings it uses, and the file may set only those (a key of another
// policy is refused by name, unless it holds its default, as checkpoints and state files written
// before the union did).
import Foundation

/// The policies' names, as `unfreezing.policy` spells them.
public enum UnfreezingPolicyKind: String, Codable, Sendable, CaseIterable {
    /// An explicit table from epoch to trainable groups.
    case fixed
    /// ULMFiT style: the head alone, then one more group every `every` epochs.
    case gradual
    /// Thaw the next group when validation loss has not improved by `delta` for `patience` epochs.
    case plateau
    /// Every group trains from the first epoch (ordinary training).
    case none
}

/// How the set of trainable groups changes over the run.
public enum UnfreezingPolicy: Equatable, Sendable {
    /// Every group trains from the first epoch.
    case none
    /// Epoch (0-based, as a string key) → the groups trainable from that epoch on.
    case fixed(table: [String: [String]])
    /// `initialGroups` top groups at the start, then one more every `every` epochs.
    case gradual(initialGroups: Int = 1, every: Int = 1)
    /// `initialGroups` top groups at the start; one more when validation loss has not improved by
    /// `delta` for `patience` epochs.
    case plateau(initialGroups: Int = 1, patience: Int = 1, delta: Float = 0.001)

    /// The policy's name.
    public var kind: UnfreezingPolicyKind {
        switch self {
        case .none: .none
        case .fixed: .fixed
        case .gradual: .gradual
        case .plateau: .plateau
        }
    }

    /// How many top groups train at the start, for the policies that say.
    public var initialGroups: Int? {
        switch self {
        case .gradual(let initialGroups, _), .plateau(let initialGroups, _, _): initialGroups
        case .none, .fixed: nil
        }
    }
}

/// Which groups train when, and at what relative rates.
public struct UnfreezingSection: Codable, Equatable, Sendable {
    /// The policy and its settings.
    public var policy: UnfreezingPolicy = .none
    /// Each lower group's learning rate is the rate of the group above divided by this (1 = off).
    public var discriminativeFactor: Float = 2.6
    /// Warmup steps for groups that were just thawed (0 = none).
    public var warmupSteps = 0

    /// The defaults: no unfreezing schedule.
    public init() {}

    /// Creates a section.
    public init(policy: UnfreezingPolicy, discriminativeFactor: Float = 2.6, warmupSteps: Int = 0) {
        self.policy = policy
        self.discriminativeFactor = discriminativeFactor
        self.warmupSteps = warmupSteps
    }

    /// Every key of the file's flat form, as one value per key (what is read and written).
    private struct Flat: ConfigSection {
        var policy: UnfreezingPolicyKind = .none
        var table: [String: [String]] = [:]
        var initialGroups = 1
        var every = 1
        var patience = 1
        var delta: Float = 0.001
        var discriminativeFactor: Float = 2.6
        var warmupSteps = 0

        static var keys: [ConfigKey<Flat>] {
            [.init("policy", choice: \.policy), .init("table", \.table), .init("initial_groups", \.initialGroups), .init("every", \.every),
             .init("patience", \.patience), .init("delta", \.delta), .init("discriminative_factor", \.discriminativeFactor),
             .init("warmup_steps", \.warmupSteps)]
        }

        func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {}
    }

    /// The keys each policy uses besides the common ones.
    private static func keys(of kind: UnfreezingPolicyKind) -> [String] {
        switch kind {
        case .none: []
        case .fixed: ["table"]
        case .gradual: ["initial_groups", "every"]
        case .plateau: ["initial_groups", "patience", "delta"]
        }
    }

    /// Decodes the flat form; a key of another policy is refused unless it holds its default.
    public init(from decoder: any Decoder) throws {
        let flat = try Flat(from: decoder)
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        let applicable = Set(["policy", "discriminative_factor", "warmup_steps"] + Self.keys(of: flat.policy))
        let defaults = Flat()
        for key in container.allKeys.map(\.stringValue).sorted() where !applicable.contains(key) {
            let isDefault = switch key {
            case "table": flat.table == defaults.table
            case "initial_groups": flat.initialGroups == defaults.initialGroups
            case "every": flat.every == defaults.every
            case "patience": flat.patience == defaults.patience
            default: flat.delta == defaults.delta
            }
            guard isDefault else {
                let users = UnfreezingPolicyKind.allCases.filter { Self.keys(of: $0).contains(key) }.map(\.rawValue)
                let prefix = container.codingPath.map(\.stringValue).joined(separator: ".")
                throw ConfigError(file: "", key: (prefix.isEmpty ? "" : prefix + ".") + key,
                                  message: "applies to the \(users.joined(separator: " and ")) polic\(users.count == 1 ? "y" : "ies"), "
                                  + "not \(flat.policy.rawValue)")
            }
        }
        switch flat.policy {
        case .none: policy = .none
        case .fixed: policy = .fixed(table: flat.table)
        case .gradual: policy = .gradual(initialGroups: flat.initialGroups, every: flat.every)
        case .plateau: policy = .plateau(initialGroups: flat.initialGroups, patience: flat.patience, delta: flat.delta)
        }
        discriminativeFactor = flat.discriminativeFactor
        warmupSteps = flat.warmupSteps
    }

    /// Encodes the common keys and the policy's own.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyCodingKey.self)
        func put<Value: Encodable>(_ value: Value, _ key: String) throws { try container.encode(value, forKey: AnyCodingKey(stringValue: key)) }
        try put(policy.kind.rawValue, "policy")
        switch policy {
        case .none: break
        case .fixed(let table): try put(table, "table")
        case .gradual(let initialGroups, let every):
            try put(initialGroups, "initial_groups")
            try put(every, "every")
        case .plateau(let initialGroups, let patience, let delta):
            try put(initialGroups, "initial_groups")
            try put(patience, "patience")
            try put(delta, "delta")
        }
        try put(discriminativeFactor, "discriminative_factor")
        try put(warmupSteps, "warmup_steps")
    }

    /// Checks the rates, counts and the table's shape (which groups it may name is known once the
    /// model is: `UnfreezingPlanner`).
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.number(discriminativeFactor, "\(keyPath).discriminative_factor", .atLeastOne(upTo: ConfigLimits.factor),
                         note: "1 turns discriminative rates off")
        try check.integer(warmupSteps, "\(keyPath).warmup_steps", 0...ConfigLimits.steps)
        switch policy {
        case .none: break
        case .fixed(let table):
            for (epoch, groups) in table.sorted(by: { $0.key < $1.key }) {
                let key = "\(keyPath).table.\(epoch.prefix(64))"
                try check.require(Int(epoch).map { (0..<ConfigLimits.epochs).contains($0) } ?? false, key,
                                  "expected an epoch number in 0..<\(ConfigLimits.epochs) as the key")
                try check.require(!groups.isEmpty && groups.count <= ConfigLimits.width, key, "expected a non-empty list of group names")
            }
            try check.require(table["0"] != nil, "\(keyPath).table", "the fixed policy needs an entry for epoch 0")
        case .gradual(let initialGroups, let every):
            try check.integer(initialGroups, "\(keyPath).initial_groups", 1...ConfigLimits.width)
            try check.integer(every, "\(keyPath).every", 1...ConfigLimits.epochs)
        case .plateau(let initialGroups, let patience, let delta):
            try check.integer(initialGroups, "\(keyPath).initial_groups", 1...ConfigLimits.width)
            try check.integer(patience, "\(keyPath).patience", 1...ConfigLimits.epochs)
            try check.number(delta, "\(keyPath).delta", .nonNegative(upTo: .greatestFiniteMagnitude))
        }
    }
}
