// AdapterSection: `model.adapters`, parameter-efficient fine-tuning. A tagged union: LoRA carries
// its rank, alpha, dropout and targets; BitFit (`kind: bias`) has no settings, and the file may not
// set LoRA's keys for it. Absent, every parameter of a trainable group trains (ordinary fine-tuning).
import ThawNN
import ThawPlan

/// The methods `model.adapters.kind` names.
public enum AdapterKind: String, Codable, Sendable, CaseIterable {
    /// LoRA: low-rank updates on chosen linear layers.
    case lora
    /// BitFit: the biases and the LayerNorms' parameters.
    case bias
}

/// The layers LoRA may adapt, as `model.adapters.targets` names them.
public enum AdapterTarget: String, Codable, Sendable, CaseIterable {
    /// BERT's attention query projection (HF `attention.self.query`).
    case query
    /// BERT's attention key projection (HF `attention.self.key`).
    case key
    /// BERT's attention value projection (HF `attention.self.value`).
    case value
    /// BERT's attention output projection (HF `attention.output.dense`).
    case attentionOutput = "attention_output"
    /// BERT's feed-forward expansion (HF `intermediate.dense`).
    case intermediate
    /// BERT's feed-forward contraction (HF `output.dense`).
    case output
    /// The linear layers outside the head of a network that is not a BERT encoder (VGG's classifier layers).
    case linear
    /// The 1×1, stride-1 convolutions of a CNN outside the head (MobileNetV2's expansions and projections).
    case pointwise
    /// Every layer the other targets name.
    case all

    /// Whether the layer at `path` is one this target names. A path is the layer's parameters' prefix
    /// (`layer3.encoder.layer.3.attention.query`); only linears and pointwise convolutions are ever asked.
    public func selects(_ path: String, _ layer: any Layer) -> Bool {
        let inEncoder = path.contains(".encoder.layer.")
        let isLinear = layer is Linear
        switch self {
        case .query: return isLinear && inEncoder && path.hasSuffix(".attention.query")
        case .key: return isLinear && inEncoder && path.hasSuffix(".attention.key")
        case .value: return isLinear && inEncoder && path.hasSuffix(".attention.value")
        case .attentionOutput: return isLinear && inEncoder && path.hasSuffix(".attention.output")
        case .intermediate: return isLinear && inEncoder && path.hasSuffix(".intermediate")
        case .output: return isLinear && inEncoder && path.hasSuffix(".output") && !path.hasSuffix(".attention.output")
        case .linear: return isLinear && !inEncoder
        case .pointwise: return layer is Conv2d && !inEncoder
        case .all: return true
        }
    }

    /// The PEFT `target_modules` entry for this target (the module name's last parts).
    public var peftModule: [String] {
        switch self {
        case .query: ["query"]
        case .key: ["key"]
        case .value: ["value"]
        case .attentionOutput: ["attention.output.dense"]
        case .intermediate: ["intermediate.dense"]
        case .output: ["output.dense"]
        case .linear, .pointwise, .all: []
        }
    }
}

/// LoRA's settings as the file spells them.
public struct LowRankSection: ConfigSection {
    /// The rank r of every update.
    public var rank = 8
    /// alpha; updates are scaled by alpha / rank.
    public var alpha: Float = 16
    /// Dropout on each adapter's input (PEFT's `lora_dropout`).
    public var dropout: Float = 0
    /// The layers to adapt.
    public var targets: [AdapterTarget] = [.query, .value]

    /// PEFT's defaults for BERT: rank 8, alpha 16, on query and value.
    public init() {}

    /// The keys.
    public static var keys: [ConfigKey<LowRankSection>] {
        [.init("rank", \.rank), .init("alpha", \.alpha), .init("dropout", \.dropout), .init("targets", \.targets)]
    }

    /// The settings for the layers.
    public var settings: LowRankSettings { LowRankSettings(rank: rank, alpha: alpha, dropout: dropout) }

    /// A positive rank, a finite alpha, a dropout probability and at least one target.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.integer(rank, "\(keyPath).rank", 1...ConfigLimits.width, note: "a layer's own width bounds it further")
        try check.number(alpha, "\(keyPath).alpha", .positive(upTo: ConfigLimits.factor))
        try check.number(dropout, "\(keyPath).dropout", .probability)
        try check.require(!targets.isEmpty, "\(keyPath).targets",
                          "name at least one of \(AdapterTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
}

/// Which parameters train inside the trainable groups.
public enum AdapterMethod: Equatable, Sendable {
    /// LoRA updates on the targeted layers (their base weights stay fixed).
    case lowRank(LowRankSection)
    /// The biases and LayerNorm parameters.
    case bias

    /// The method's name.
    public var kind: AdapterKind {
        switch self {
        case .lowRank: .lora
        case .bias: .bias
        }
    }
}

/// The `model.adapters` section.
public struct AdapterSection: Codable, Equatable, Sendable {
    /// The method and its settings.
    public var method: AdapterMethod = .lowRank(LowRankSection())

    /// LoRA with PEFT's defaults.
    public init() {}

    /// A section for `method`.
    public init(_ method: AdapterMethod) { self.method = method }

    /// Reads `kind` first (default `lora`), then that kind's keys; LoRA's keys are refused for BitFit by name.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        var holder = KindHolder()
        try decodeKeys(KindHolder.keys, into: &holder, from: container)
        let own = holder.kind == .lora ? LowRankSection.keys.map(\.name) : []
        try refuseUnknownKeys(in: container, accepted: ["kind"] + own) { key in
            LowRankSection.keys.contains { $0.name == key } ? "applies to kind lora, not \(holder.kind.rawValue)" : nil
        }
        switch holder.kind {
        case .lora:
            var section = LowRankSection()
            try decodeKeys(LowRankSection.keys, into: &section, from: container)
            method = .lowRank(section)
        case .bias:
            method = .bias
        }
    }

    /// Writes `kind` and the kind's own keys.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyCodingKey.self)
        try encodeKeys(KindHolder.keys, of: KindHolder(kind: method.kind), into: &container)
        if case .lowRank(let section) = method { try encodeKeys(LowRankSection.keys, of: section, into: &container) }
    }

    /// LoRA's settings in range.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        if case .lowRank(let section) = method { try section.validate(keyPath: keyPath, check: check) }
    }

    /// The `kind` key alone.
    private struct KindHolder {
        var kind = AdapterKind.lora
        static var keys: [ConfigKey<KindHolder>] { [.init("kind", choice: \.kind)] }
    }
}
