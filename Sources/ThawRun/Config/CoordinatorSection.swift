// CoordinatorSection and ControlSection: how workers prove themselves to the coordinator, CURVE
// encryption of its traffic, and who may send it operator commands.
import ThawPlan

/// How workers prove themselves to the coordinator, and CURVE encryption of its traffic.
public struct CoordinatorSection: ConfigSection {
    /// The job secret every worker message is signed with (mode 0600); empty = `job.secret` in the
    /// run directory. `thaw coordinator` creates it when it is missing; workers wait for it.
    public var secretFile = ""
    /// Workers: the coordinator's CURVE public key file (from `thaw keygen`); empty = plain TCP.
    public var curvePublicKeyFile = ""
    /// The coordinator: its CURVE secret key file; empty = plain TCP.
    public var curveSecretKeyFile = ""

    /// The defaults.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<CoordinatorSection>] {
        [.init("secret_file", \.secretFile), .init("curve_public_key_file", \.curvePublicKeyFile),
         .init("curve_secret_key_file", \.curveSecretKeyFile)]
    }

    /// Paths of sane length.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        for (key, value) in [("secret_file", secretFile), ("curve_public_key_file", curvePublicKeyFile),
                             ("curve_secret_key_file", curveSecretKeyFile)] { try check.text(value, "\(keyPath).\(key)") }
    }
}

/// Who may send control commands (`thaw ctl`) to the coordinator.
public struct ControlSection: ConfigSection {
    /// A file holding the shared token; empty turns control off (status stays available).
    public var tokenFile = ""

    /// The defaults.
    public init() {}

    /// The key.
    public static var keys: [ConfigKey<ControlSection>] { [.init("token_file", \.tokenFile)] }

    /// A path of sane length.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) { try check.text(tokenFile, "\(keyPath).token_file") }
}
