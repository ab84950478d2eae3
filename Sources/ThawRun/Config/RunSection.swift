// RunSection: the `run` section: the run's name, seed and output directory.
import ThawPlan

/// Run identity, seed and where results go.
public struct RunSection: ConfigSection {
    /// A short name for logs and status.
    public var name = "thaw-run"
    /// The output directory: logs, metrics, checkpoints (default `runs/<name>`).
    public var output = "runs/thaw-run"
    /// The seed for initialization, shuffling, dropout and augmentation.
    public var seed: UInt64 = 42
    /// Whether every rank writes its own log file in the output directory.
    public var logPerRank = false

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<RunSection>] {
        [.init("name", \.name), .init("output", \.output), .init("seed", \.seed), .init("log_per_rank", \.logPerRank)]
    }

    /// Decodes the keys present; an absent `output` follows the name (`runs/<name>`).
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        try refuseUnknownKeys(in: container, accepted: Self.keys.map(\.name))
        try decodeKeys(Self.keys, into: &self, from: container)
        if !container.contains(AnyCodingKey(stringValue: "output")) { output = "runs/\(name)" }
    }

    /// A name and an output directory of sane length.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.require(!name.isEmpty, "\(keyPath).name", "expected a non-empty name")
        try check.require(!output.isEmpty, "\(keyPath).output", "expected a directory path")
        try check.text(name, "\(keyPath).name")
        try check.text(output, "\(keyPath).output")
    }
}
