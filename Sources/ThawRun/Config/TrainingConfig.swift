// TrainingConfig: the one configuration file (YAML or JSON) that describes a run, as its sections
// (one file each under Config/). Every section rejects keys it does not know and every error names
// the file, the key path and what was expected, so a typo never silently falls back to a default.
// README.md's "Configuration" lists every key; keep it in step with the sections.
import Foundation
import ThawPlan
import Yams

/// A whole run's configuration.
public struct TrainingConfig: ConfigSection {
    /// Run identity, seed and output directory.
    public var run = RunSection()
    /// Architecture, class count and frozen batch-norm policy.
    public var model = ModelSection()
    /// Dataset and subsets.
    public var data = DataSection()
    /// Epochs, batch size and gradient handling.
    public var training = TrainingSection()
    /// The optimizer.
    public var optimizer = OptimizerSection()
    /// The learning-rate schedule.
    public var schedule = ScheduleSection()
    /// Which groups train when.
    public var unfreezing = UnfreezingSection()
    /// When checkpoints are written and how many are kept.
    public var checkpoint = CheckpointSection()
    /// Who may send control commands to the coordinator.
    public var control = ControlSection()
    /// Worker authentication and encryption of coordinator traffic.
    public var coordinator = CoordinatorSection()

    /// A configuration with every default.
    public init() {}

    /// The sections; a missing section takes its defaults.
    public static var keys: [ConfigKey<TrainingConfig>] {
        [.init("run", \.run), .init("model", \.model), .init("data", \.data), .init("training", \.training), .init("optimizer", \.optimizer),
         .init("schedule", \.schedule), .init("unfreezing", \.unfreezing), .init("checkpoint", \.checkpoint), .init("control", \.control),
         .init("coordinator", \.coordinator)]
    }

    /// Checks every section's values, then what sections say about each other.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try run.validate(keyPath: "run", check: check)
        try model.validate(keyPath: "model", check: check)
        try data.validate(keyPath: "data", check: check)
        try training.validate(keyPath: "training", check: check)
        try optimizer.validate(keyPath: "optimizer", check: check)
        try schedule.validate(keyPath: "schedule", check: check)
        try unfreezing.validate(keyPath: "unfreezing", check: check)
        try checkpoint.validate(keyPath: "checkpoint", check: check)
        try control.validate(keyPath: "control", check: check)
        try coordinator.validate(keyPath: "coordinator", check: check)
        if model.domainAdaptation != nil {
            try check.require(data.target != nil, "data.target", "model.domain_adaptation needs a target dataset (for example uci-digits)")
        }
    }

    /// Checks every value's range and the combinations that decoding cannot.
    /// - Throws: ``ConfigError`` naming `file`, the key path, the expected range and the value.
    public func validate(file: String = "<config>") throws(ConfigError) {
        try validate(keyPath: "", check: RangeCheck(file: file))
    }

    /// Loads and validates a YAML or JSON file, then applies `key.path=value` overrides.
    /// - Parameters:
    ///   - path: The file; nil means every default.
    ///   - overrides: Command-line overrides such as `training.epochs=2`; values are read as YAML scalars.
    /// - Throws: ``ConfigError`` naming the file, the key path and what was expected.
    public static func load(path: String?, overrides: [String] = []) throws(ConfigError) -> TrainingConfig {
        let text = try path.map { path throws(ConfigError) in try ConfigInput.read(path) } ?? ""
        return try parse(text, file: path ?? "<defaults>", overrides: overrides)
    }

    /// Parses and validates configuration text, then applies `key.path=value` overrides.
    public static func parse(_ text: String, file: String = "<config>", overrides: [String] = []) throws(ConfigError) -> TrainingConfig {
        try ConfigInput.check(text, file: file, overrides: overrides)   // bounds, nesting and repeated keys, before Yams parses
        let config: TrainingConfig
        do {
            var source = text
            if !overrides.isEmpty {
                var tree = (try Yams.load(yaml: text) as? [String: Any]) ?? [:]
                for override in overrides {
                    guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                        throw ConfigError(file: "--set", key: override, message: "expected key.path=value")
                    }
                    let path = override[..<equals].split(separator: ".").map(String.init)
                    let value = try Yams.load(yaml: String(override[override.index(after: equals)...])) ?? ""
                    tree = setting(tree, path: path[...], to: value)
                }
                source = try Yams.dump(object: tree)
            }
            config = try YAMLDecoder().decode(TrainingConfig.self, from: source.isEmpty ? "{}" : source)
        } catch let error as DecodingError {
            // Yams wraps errors thrown by our own init(from:) as "not valid YAML"; unwrap them.
            if case .dataCorrupted(let context) = error, let inner = context.underlyingError as? ConfigError {
                throw ConfigError(file: file, key: inner.key, message: inner.message)
            }
            throw ConfigError(file: file, decodingError: error)
        } catch let error as ConfigError {
            throw ConfigError(file: file, key: error.key, message: error.message)
        } catch {
            throw ConfigError(file: file, key: "", message: "not valid YAML or JSON: \(error)")
        }
        try config.validate(file: file)
        return config
    }

    private static func setting(_ tree: [String: Any], path: ArraySlice<String>, to value: Any) -> [String: Any] {
        var tree = tree
        guard let key = path.first else { return tree }
        if path.count == 1 {
            tree[key] = value
        } else {
            tree[key] = setting(tree[key] as? [String: Any] ?? [:], path: path.dropFirst(), to: value)
        }
        return tree
    }

    /// The job secret's file: `coordinator.secret_file`, or `job.secret` in the run directory.
    public var jobSecretPath: String {
        coordinator.secretFile.isEmpty ? (run.output as NSString).appendingPathComponent("job.secret") : coordinator.secretFile
    }

    /// The configuration as JSON with sorted keys (what the digest hashes, and checkpoints record).
    public var canonicalJSON: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// A stable digest of the configuration, used to check that every rank runs the same one.
    public var digest: UInt64 { fnv1a(canonicalJSON) }
}
