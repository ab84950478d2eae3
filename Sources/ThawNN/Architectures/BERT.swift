// BERT-family encoders in the Hugging Face layout (BertModel), configured from a `config.json`,
// split into named groups that unfreeze from the top, with a new classification head.
//
// As for MobileNetV2, a Thaw name is `GROUP.` + the external (HF) name, except inside encoder
// layers, whose local names `TransformerEncoderLayer.huggingFaceName(for:)` translates:
//   embeddings.embeddings.word_embeddings.weight   ↔ embeddings.word_embeddings.weight
//   layer3.encoder.layer.3.attention.query.weight  ↔ encoder.layer.3.attention.self.query.weight
//   head.classifier.weight                         ↔ classifier.weight
// Groups: `embeddings` (padding mask from the ids, the three embeddings + LayerNorm, dropout),
// `layer0` … `layer{L-1}` (one encoder layer each), `head` (pooling, dropout, the new classifier).
//
// Files from Hugging Face come in several wrappings: BertModel (`embeddings.…`), BertForX
// (`bert.embeddings.…`, plus its own head) and sentence-transformers modules
// (`0.auto_model.embeddings.…`). `canonicalName(fileName:)` strips those prefixes before matching.
// The pooler (`pooler.dense.*`), pre-training heads (`cls.*`) and the `embeddings.position_ids`
// buffer are not part of this model by design: `isUnusedByDesign(_:)` names them, and a weight load
// reports them as ignored rather than unexpected.
//
// Note: frozen-prefix caching. The `embeddings` group's first layer sets the batch's padding mask,
// which every encoder layer and mean pooling read. The frozen-prefix cache skips the frozen groups,
// so that layer is a `RawInputObserver`: the trainer hands it each batch's raw ids through
// `Model.observeRawInput(_:belowGroup:)` before running the trainable groups on cached features.
import Foundation
import ThawKernels

/// A BERT configuration, read from a Hugging Face `config.json`.
public struct BERTConfiguration: Decodable, Equatable, Sendable {
    /// The number of token ids (HF `vocab_size`).
    public var vocabularySize: Int
    /// The model width (HF `hidden_size`).
    public var hiddenSize: Int
    /// The number of encoder layers (HF `num_hidden_layers`).
    public var layers: Int
    /// Attention heads per layer (HF `num_attention_heads`); must divide `hiddenSize`.
    public var heads: Int
    /// The feed-forward width (HF `intermediate_size`).
    public var intermediateSize: Int
    /// The position table's length: the longest sequence (HF `max_position_embeddings`).
    public var maximumPositions: Int
    /// The number of token types (HF `type_vocab_size`).
    public var typeVocabularySize: Int
    /// LayerNorm epsilon (HF `layer_norm_eps`).
    public var layerNormEpsilon: Float
    /// Dropout after the embeddings and each block's output (HF `hidden_dropout_prob`).
    public var hiddenDropout: Float
    /// Dropout on the attention probabilities (HF `attention_probs_dropout_prob`).
    public var attentionDropout: Float
    /// The padding id (HF `pad_token_id`).
    public var padTokenId: Int

    /// Creates a configuration from its values; `validate()` checks them.
    public init(vocabularySize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, maximumPositions: Int,
                typeVocabularySize: Int = 2, layerNormEpsilon: Float = 1e-12, hiddenDropout: Float = 0.1,
                attentionDropout: Float = 0.1, padTokenId: Int = 0) {
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.intermediateSize = intermediateSize
        self.maximumPositions = maximumPositions
        self.typeVocabularySize = typeVocabularySize
        self.layerNormEpsilon = layerNormEpsilon
        self.hiddenDropout = hiddenDropout
        self.attentionDropout = attentionDropout
        self.padTokenId = padTokenId
    }

    /// all-MiniLM-L6-v2 (`nreimers/MiniLM-L6-H384-uncased`): 6 layers, width 384, 12 heads, 30522 ids.
    /// Used where a configuration is needed only for shapes (`thaw models`).
    public static let miniLML6 = BERTConfiguration(vocabularySize: 30522, hiddenSize: 384, layers: 6, heads: 12,
                                                   intermediateSize: 1536, maximumPositions: 512)

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabularySize = "vocab_size"
        case hiddenSize = "hidden_size"
        case layers = "num_hidden_layers"
        case heads = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case maximumPositions = "max_position_embeddings"
        case typeVocabularySize = "type_vocab_size"
        case layerNormEpsilon = "layer_norm_eps"
        case hiddenDropout = "hidden_dropout_prob"
        case attentionDropout = "attention_probs_dropout_prob"
        case padTokenId = "pad_token_id"
        case hiddenActivation = "hidden_act"
        case positionEmbeddingType = "position_embedding_type"
        case modelType = "model_type"
    }

    /// Decodes the keys Thaw uses; other keys of the file are ignored. Every listed key is required,
    /// `hidden_act` must be `gelu`, and `position_embedding_type` and `model_type`, when present, must
    /// be `absolute` and `bert` (other variants compute something else).
    /// - Throws: ``BERTConfigurationError`` naming the key (the file is filled in by `load(path:)`).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ type: T.Type, _ expected: String) throws -> T {
            let decoded: T?
            do { decoded = try c.decodeIfPresent(T.self, forKey: key) } catch {
                throw BERTConfigurationError(file: "", key: key.rawValue, message: "expected \(expected)")
            }
            guard let decoded else { throw BERTConfigurationError(file: "", key: key.rawValue, message: "required key is missing (expected \(expected))") }
            return decoded
        }
        vocabularySize = try value(.vocabularySize, Int.self, "an integer")
        hiddenSize = try value(.hiddenSize, Int.self, "an integer")
        layers = try value(.layers, Int.self, "an integer")
        heads = try value(.heads, Int.self, "an integer")
        intermediateSize = try value(.intermediateSize, Int.self, "an integer")
        maximumPositions = try value(.maximumPositions, Int.self, "an integer")
        typeVocabularySize = try value(.typeVocabularySize, Int.self, "an integer")
        layerNormEpsilon = try value(.layerNormEpsilon, Float.self, "a number")
        hiddenDropout = try value(.hiddenDropout, Float.self, "a number")
        attentionDropout = try value(.attentionDropout, Float.self, "a number")
        padTokenId = try value(.padTokenId, Int.self, "an integer")
        let activation = try value(.hiddenActivation, String.self, "a string")
        guard activation == "gelu" else {
            throw BERTConfigurationError(file: "", key: CodingKeys.hiddenActivation.rawValue,
                                         message: "Thaw's BERT implements only \"gelu\" (exact erf GELU), got \"\(activation)\"")
        }
        let positions = (try? c.decodeIfPresent(String.self, forKey: .positionEmbeddingType)) ?? "absolute"
        guard positions == "absolute" else {
            throw BERTConfigurationError(file: "", key: CodingKeys.positionEmbeddingType.rawValue,
                                         message: "Thaw's BERT implements only \"absolute\" position embeddings, got \"\(positions)\"")
        }
        let modelType = (try? c.decodeIfPresent(String.self, forKey: .modelType)) ?? "bert"
        guard modelType == "bert" else {
            throw BERTConfigurationError(file: "", key: CodingKeys.modelType.rawValue,
                                         message: "expected \"bert\" (BertModel's layout and position ids), got \"\(modelType)\"")
        }
        try validate()
    }

    /// Checks sizes and ranges.
    /// - Throws: ``BERTConfigurationError`` naming the first bad key.
    public func validate() throws(BERTConfigurationError) {
        func require(_ condition: Bool, _ key: CodingKeys, _ message: String) throws(BERTConfigurationError) {
            if !condition { throw BERTConfigurationError(file: "", key: key.rawValue, message: message) }
        }
        try require(vocabularySize >= 1, .vocabularySize, "expected an integer ≥ 1, got \(vocabularySize)")
        try require(vocabularySize <= 1 << 24, .vocabularySize, "expected at most 2^24 ids (ids travel as exact Float), got \(vocabularySize)")
        try require(hiddenSize >= 1, .hiddenSize, "expected an integer ≥ 1, got \(hiddenSize)")
        try require(layers >= 1, .layers, "expected an integer ≥ 1, got \(layers)")
        try require(heads >= 1 && hiddenSize % heads == 0, .heads,
                    "expected a divisor of hidden_size (\(hiddenSize)), got \(heads)")
        try require(intermediateSize >= 1, .intermediateSize, "expected an integer ≥ 1, got \(intermediateSize)")
        try require(maximumPositions >= 1, .maximumPositions, "expected an integer ≥ 1, got \(maximumPositions)")
        try require(typeVocabularySize >= 1, .typeVocabularySize, "expected an integer ≥ 1, got \(typeVocabularySize)")
        try require(layerNormEpsilon > 0, .layerNormEpsilon, "expected a number > 0, got \(layerNormEpsilon)")
        try require((0..<1).contains(hiddenDropout), .hiddenDropout, "expected a number in [0, 1), got \(hiddenDropout)")
        try require((0..<1).contains(attentionDropout), .attentionDropout, "expected a number in [0, 1), got \(attentionDropout)")
        try require((0..<vocabularySize).contains(padTokenId), .padTokenId,
                    "expected an id in 0..<vocab_size (\(vocabularySize)), got \(padTokenId)")
    }

    /// Reads and validates a Hugging Face `config.json`.
    /// - Throws: ``BERTConfigurationError`` naming the file and the key.
    public static func load(path: String) throws(BERTConfigurationError) -> BERTConfiguration {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw BERTConfigurationError(file: path, key: "", message: "cannot read the file: \(error.localizedDescription)")
        }
        return try parse(data, file: path)
    }

    /// Parses and validates `config.json` text.
    /// - Throws: ``BERTConfigurationError`` naming `file` and the key.
    public static func parse(_ data: Data, file: String) throws(BERTConfigurationError) -> BERTConfiguration {
        do {
            return try JSONDecoder().decode(BERTConfiguration.self, from: data)
        } catch let error as BERTConfigurationError {
            throw BERTConfigurationError(file: file, key: error.key, message: error.message)
        } catch {
            throw BERTConfigurationError(file: file, key: "", message: "not a JSON object: \(error)")
        }
    }
}

/// A problem in a BERT `config.json`: the file, the key and what was expected.
public struct BERTConfigurationError: Error, CustomStringConvertible, Equatable {
    /// The configuration file.
    public var file: String
    /// The Hugging Face key, such as `hidden_act` (empty for whole-file problems).
    public var key: String
    /// What was wrong and what was expected.
    public var message: String

    /// Creates an error.
    public init(file: String, key: String, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    /// `file: key: message`.
    public var description: String { key.isEmpty ? "\(file): \(message)" : "\(file): \(key): \(message)" }
}

/// How a BERT model turns token vectors into one sentence vector.
public enum BERTPooling: String, Sendable, Codable, CaseIterable {
    /// The mean over real tokens (sentence-transformers' pooling, as all-MiniLM-L6-v2 is trained).
    case mean
    /// The vector at position 0 ([CLS]), without BERT's pooler dense layer.
    case cls
}

/// BERT (Devlin et al. 2019) encoders with Hugging Face's parameter names and a new classifier.
public enum BERT {
    /// The groups for `classes` outputs.
    ///
    /// The input is `[N, T]` token ids as Float, padded with `padTokenId`, T ≤ `maximumPositions`.
    /// - Parameters:
    ///   - configuration: Sizes and dropouts, as in HF's `config.json`.
    ///   - classes: The new head's outputs.
    ///   - pooling: Mean over real tokens, or the first token.
    ///   - headHidden: nil for a linear classifier (`classifier`); else the width of a hidden layer:
    ///     `classifier.0` (linear) → GELU → dropout → `classifier.3` (linear).
    ///   - dropout: Dropout on the pooled vector (and inside the MLP head).
    ///   - seed: Seed for the dropout generators (the trainer reseeds them every step).
    public static func groups(configuration: BERTConfiguration, classes: Int, pooling: BERTPooling = .mean,
                              headHidden: Int? = nil, dropout: Float = 0.1, seed: UInt64 = 0) -> [LayerGroup] {
        let c = configuration
        let mask = AttentionMask()
        var groups = [LayerGroup("embeddings", [
            (name: "mask", layer: PaddingMaskFromIds(attentionMask: mask, padTokenId: c.padTokenId, vocabularySize: c.vocabularySize)),
            (name: "embeddings", layer: BERTEmbeddings(vocabularySize: c.vocabularySize, hiddenSize: c.hiddenSize,
                                                       maximumPositions: c.maximumPositions, typeVocabularySize: c.typeVocabularySize,
                                                       padTokenId: c.padTokenId, layerNormEpsilon: c.layerNormEpsilon)),
            (name: "dropout", layer: Dropout(probability: c.hiddenDropout, seed: SplitMix64.mix(seed, 100))),
        ])]
        for index in 0..<c.layers {
            let layer = TransformerEncoderLayer(hiddenSize: c.hiddenSize, headCount: c.heads, intermediateSize: c.intermediateSize,
                                                attentionDropout: c.attentionDropout, hiddenDropout: c.hiddenDropout,
                                                layerNormEpsilon: c.layerNormEpsilon, attentionMask: mask,
                                                seed: SplitMix64.mix(seed, UInt64(index)))
            groups.append(LayerGroup("layer\(index)", [(name: "encoder.layer.\(index)", layer: layer)]))
        }
        var head: [(name: String, layer: any Layer)] = [
            (name: "pooling", layer: pooling == .mean ? MeanPooling(attentionMask: mask) : ClsPooling()),
            (name: "dropout", layer: Dropout(probability: dropout, seed: SplitMix64.mix(seed, 101))),
        ]
        if let headHidden {
            head += [(name: "classifier.0", layer: Linear(c.hiddenSize, headHidden)),
                     (name: "classifier.1", layer: GELU()),
                     (name: "classifier.2", layer: Dropout(probability: dropout, seed: SplitMix64.mix(seed, 102))),
                     (name: "classifier.3", layer: Linear(headHidden, classes))]
        } else {
            head.append((name: "classifier", layer: Linear(c.hiddenSize, classes)))
        }
        groups.append(LayerGroup("head", head))
        return groups
    }

    /// The Hugging Face name for a Thaw name (`layer3.encoder.layer.3.attention.query.weight` →
    /// `encoder.layer.3.attention.self.query.weight`), or nil for a name outside the layout.
    public static func huggingFaceName(_ thawName: String) -> String? {
        guard let dot = thawName.firstIndex(of: ".") else { return nil }
        let group = thawName[..<dot]
        let rest = String(thawName[thawName.index(after: dot)...])
        switch group {
        case "embeddings":
            return rest.hasPrefix("embeddings.") ? rest : nil
        case "head":
            return rest.hasPrefix("classifier.") ? rest : nil
        default:
            guard group.hasPrefix("layer"), let index = Int(group.dropFirst("layer".count)) else { return nil }
            let prefix = "encoder.layer.\(index)."
            guard rest.hasPrefix(prefix), let local = TransformerEncoderLayer.huggingFaceName(for: String(rest.dropFirst(prefix.count))) else {
                return nil
            }
            return prefix + local
        }
    }

    /// The Thaw name for a Hugging Face name (the inverse of `huggingFaceName(_:)`), or nil for a name
    /// this model does not have. Accepts canonical names (see `canonicalName(fileName:)`).
    public static func thawName(huggingFace name: String) -> String? {
        if name.hasPrefix("embeddings.") { return "embeddings." + name }
        if name.hasPrefix("classifier.") { return "head." + name }
        let parts = name.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "encoder", parts[1] == "layer", let index = Int(parts[2]) else { return nil }
        let hf = String(parts[3])
        for entry in TransformerEncoderLayer.huggingFaceNames where hf.hasPrefix(entry.huggingFace) {
            return "layer\(index).encoder.layer.\(index)." + entry.local + hf.dropFirst(entry.huggingFace.count)
        }
        return nil
    }

    /// The wrapper prefixes `canonicalName(fileName:)` strips: BertForX's `bert.` and
    /// sentence-transformers' `0.auto_model.`.
    public static let wrapperPrefixes = ["bert.", "0.auto_model."]

    /// A file's tensor name without a wrapper prefix (`bert.encoder.layer.0.…` → `encoder.layer.0.…`).
    public static func canonicalName(fileName: String) -> String {
        for prefix in wrapperPrefixes where fileName.hasPrefix(prefix) { return String(fileName.dropFirst(prefix.count)) }
        return fileName
    }

    /// Whether a canonical file name belongs to parts of a checkpoint this model leaves out on purpose:
    /// BERT's pooler (`pooler.*`, unused: pooling is mean or plain [CLS]), the pre-training heads
    /// (`cls.*`) and the `embeddings.position_ids` buffer (positions are always 0..<T).
    public static func isUnusedByDesign(_ canonicalName: String) -> Bool {
        canonicalName.hasPrefix("pooler.") || canonicalName.hasPrefix("cls.") || canonicalName == "embeddings.position_ids"
    }
}
