// DatasetCatalog: dataset names in the configuration → train, validation and test sets.
import Foundation
import ThawTrainer
import ThawData
import ThawPlan

/// The splits of one dataset as the configuration asks for them.
public struct DatasetSplits {
    /// Training samples.
    public var train: any Dataset
    /// Validation samples held out of the training set, if `data.validation_size` > 0.
    public var validation: (any Dataset)?
    /// Test samples (with `data.target`: the target domain's test split).
    public var test: (any Dataset)?
    /// With `data.target`: the target domain's training images. Only ``sourceAndTarget()`` uses them,
    /// and it never reads their labels.
    public var targetTrain: (any Dataset)? = nil

    /// The split a command-line option names.
    /// - Throws: ``ConfigError`` for a split the configuration lacks.
    public func named(_ name: SplitName) throws -> any Dataset {
        let chosen: (any Dataset)? = switch name {
        case .test: test
        case .validation: validation
        case .train: train
        }
        guard let chosen else {
            throw ConfigError(file: "", key: name == .validation ? "data.validation_size" : "data",
                              message: "the configuration has no \(name.rawValue) split" + (name == .validation ? " (set data.validation_size)" : ""))
        }
        return chosen
    }

    /// The training set of domain-adversarial training: the source training samples (labelled) and the
    /// target training images (unlabelled), interleaved by ``DomainMixture``.
    /// - Throws: ``ConfigError`` when there is no target.
    public func sourceAndTarget() throws -> any Dataset {
        guard let targetTrain else { throw ConfigError(file: "", key: "data.target", message: "domain adaptation needs a target dataset") }
        return mix(train, targetTrain)
    }

    private func mix<Source: Dataset, Target: Dataset>(_ source: Source, _ target: Target) -> any Dataset {
        DomainMixture(source: source, target: target)
    }
}

/// The splits a command-line option (`--split`) can name.
public enum SplitName: String, Sendable, CaseIterable {
    /// The test split.
    case test
    /// The validation split (`data.validation_size`, or a dataset's own).
    case validation
    /// The training split.
    case train
}

/// Loads the dataset a configuration names.
public enum DatasetCatalog {
    /// Where `scripts/fetch-data NAME` puts a dataset by default.
    public static func defaultDirectory(_ name: String) -> String {
        (FileManager.default.homeDirectoryForCurrentUser.path as NSString).appendingPathComponent(".cache/thaw/data/\(name)")
    }

    /// Loads and splits the dataset; with `data.target`, the test set is the target's test split and
    /// `targetTrain` holds the target's training images.
    /// - Throws: ``DataError`` naming the file, or ``ConfigError`` naming the key whose value does not fit the data.
    public static func load(_ section: DataSection) throws -> DatasetSplits {
        var splits = try loadSource(section)
        guard let targetName = section.target else { return splits }
        let target = try digits(targetName, directory: section.targetDirectory, imageSize: section.imageSize)
        guard target.train.sampleShape == splits.train.sampleShape else {
            throw ConfigError(file: "", key: "data.image_size",
                              message: "the source \(section.dataset.rawValue) gives \(splits.train.sampleShape) samples but the target "
                              + "\(targetName.rawValue) gives \(target.train.sampleShape): set data.image_size to bring both to one size")
        }
        splits.targetTrain = target.train
        splits.test = target.test
        return splits
    }

    /// The two digit datasets with their fixed splits: every 5th MNIST image (1,000 of 5,000) and every
    /// 2nd UCI image (898 of 1,797) is test, the rest train. Both files are ordered by writer or class, so
    /// interleaving keeps the classes balanced in both splits.
    static func digits(_ name: DigitsDataset, directory: String, imageSize: Int) throws
        -> (train: DatasetSubset<InMemoryDataset>, test: DatasetSubset<InMemoryDataset>) {
        let folder = directory.isEmpty ? defaultDirectory(name.rawValue) : directory
        let (file, format, testEvery) = name == .mnistMlxtend
            ? (HandwrittenDigits.mnistFileName, HandwrittenDigits.Format.mnist, 5)
            : (HandwrittenDigits.uciFileName, HandwrittenDigits.Format.uci, 2)
        let all = try HandwrittenDigits.load((folder as NSString).appendingPathComponent(file), format: format, size: imageSize)
        let indices = Array(0..<all.count)
        return (all.subset(indices.filter { $0 % testEvery != testEvery - 1 }), all.subset(indices.filter { $0 % testEvery == testEvery - 1 }))
    }

    static func loadSource(_ section: DataSection) throws -> DatasetSplits {
        switch section.source {
        case .digits(let name, let place):
            guard section.normalization == .dataset else {
                throw ConfigError(file: "", key: "data.normalization", message: "\(name.rawValue) images are 1 channel in [0, 1]; only 'dataset' applies")
            }
            let digits = try digits(name, directory: place.directory, imageSize: section.imageSize)
            return try split(train: digits.train, test: digits.test, section)
        case .fashionMNIST(let place):
            let directory = place.directory.isEmpty ? FashionMNIST.defaultDirectory : place.directory
            let fullTrain = try FashionMNIST.load(.train, directory: directory)
            let test = try FashionMNIST.load(.test, directory: directory)
            guard section.imageSize > 0 || section.normalization == .imagenet else {
                return try split(train: fullTrain, test: test, section)
            }
            // For pretrained backbones: resize, repeat to 3 channels, ImageNet statistics, per sample on access.
            let imageNet = section.normalization == .imagenet
            func transform(_ images: ByteImageDataset) -> TransformedImageDataset<ByteImageDataset> {
                TransformedImageDataset(
                    base: images, sourceNormalization: (FashionMNIST.mean, FashionMNIST.standardDeviation),
                    size: section.imageSize > 0 ? section.imageSize : 28, channels: imageNet ? 3 : 1,
                    normalization: imageNet ? .imageNet : PixelNormalization(mean: [FashionMNIST.mean], standardDeviation: [FashionMNIST.standardDeviation]))
            }
            return try split(train: transform(fullTrain), test: transform(test), section)
        case .npy(let arrays):
            guard !arrays.trainFeatures.isEmpty, !arrays.trainLabels.isEmpty else {
                throw ConfigError(file: "", key: "data.train_features", message: "the npy dataset needs data.train_features and data.train_labels")
            }
            let train = try loadArrays(features: arrays.trainFeatures, labels: arrays.trainLabels)
            guard !arrays.testFeatures.isEmpty else { return try split(train: train, test: nil as InMemoryDataset?, section) }
            let test = try loadArrays(features: arrays.testFeatures, labels: arrays.testLabels)
            return try split(train: train, test: test, section)
        case .rottenTomatoes(let place, let text):
            // Fixed splits (RottenTomatoes.swift); limits cut the texts before they are tokenized.
            let tokenizer = try WordPieceTokenizer(vocabularyFile: text.vocabulary)
            let directory = place.directory.isEmpty ? RottenTomatoes.defaultDirectory : place.directory
            func tokenized(_ split: RottenTomatoes.Split, limit: Int) throws -> TextClassificationDataset {
                var reviews = try RottenTomatoes.load(split, directory: directory)
                if limit > 0 && limit < reviews.count { reviews = reviews.subset(Array(0..<limit)) }
                return try TextClassificationDataset(reviews, tokenizer: tokenizer, maximumLength: text.maxLength,
                                                     classCount: RottenTomatoes.classNames.count)
            }
            return DatasetSplits(train: try tokenized(.train, limit: section.trainLimit),
                                 validation: try tokenized(.validation, limit: 0),
                                 test: try tokenized(.test, limit: section.testLimit))
        case .textCSV(let files, let text):
            let tokenizer = try WordPieceTokenizer(vocabularyFile: text.vocabulary)
            let trainTexts = try TextCSVReader.read(files.trainTexts)
            let testTexts = files.testTexts.isEmpty ? nil : try TextCSVReader.read(files.testTexts)
            // One class count for both files, so their labels mean the same outputs.
            let classCount = Int(max(trainTexts.labels.max() ?? 0, testTexts?.labels.max() ?? 0)) + 1
            let train = try TextClassificationDataset(trainTexts, tokenizer: tokenizer, maximumLength: text.maxLength, classCount: classCount)
            let test = try testTexts.map { texts throws(DataError) in
                try TextClassificationDataset(texts, tokenizer: tokenizer, maximumLength: text.maxLength, classCount: classCount)
            }
            return try split(train: train, test: test, section)
        }
    }

    /// Applies `validation_size`, `classes`, `train_limit`, `train_per_class` and `test_limit`: validation is
    /// the end of the training file, so the training subset never overlaps it; `classes` filters every split
    /// before the limits apply.
    /// Loads a features array [N, ...] and a labels array [N] into memory.
    static func loadArrays(features: String, labels: String) throws -> InMemoryDataset {
        let x = try NPYReader.read(features)
        let y = try NPYReader.read(labels)
        guard x.shape.count >= 2 else {
            throw DataError(file: features, kind: .sizeMismatch, detail: "features have shape \(x.shape); expected [N, ...sample shape]")
        }
        guard let labelValues = y.integerValues(), y.shape == [x.shape[0]] else {
            throw DataError(file: labels, kind: .sizeMismatch, detail: "labels must be integers shaped [\(x.shape[0])]; got \(y.dataType) \(y.shape)")
        }
        if let bad = labelValues.firstIndex(where: { $0 < 0 || $0 > Int64(Int32.max) }) {
            throw DataError(file: labels, kind: .badValue, detail: "label \(labelValues[bad]) at index \(bad) is negative or too large")
        }
        let classCount = Int(labelValues.max() ?? 0) + 1
        return InMemoryDataset(features: x.floatValues(), labels: labelValues.map { Int32($0) },
                               sampleShape: Array(x.shape.dropFirst()), classCount: classCount)
    }

    static func split<Train: Dataset, Test: Dataset>(train: Train, test: Test?, _ section: DataSection) throws -> DatasetSplits {
        guard section.validationSize < train.count else {
            throw ConfigError(file: "", key: "data.validation_size", message: "\(section.validationSize) must be smaller than the \(train.count) training samples")
        }
        let trainCount = train.count - section.validationSize
        if let unknown = section.classes.first(where: { $0 >= train.classCount }) {
            throw ConfigError(file: "", key: "data.classes", message: "unknown class \(unknown); the dataset's classes are 0...\(train.classCount - 1)")
        }
        let kept = Set(section.classes)
        func keep<Data: Dataset>(_ data: Data, _ indices: [Int]) -> [Int] {
            kept.isEmpty ? indices : indices.filter { kept.contains(Int(data.label($0))) }
        }
        var trainIndices = keep(train, Array(0..<trainCount))
        if section.trainLimit > 0 { trainIndices = Array(trainIndices.prefix(section.trainLimit)) }
        if section.trainPerClass > 0 {
            // The first N of each class in file order: class-balanced when every class has N samples.
            var taken = [Int](repeating: 0, count: train.classCount)
            trainIndices = trainIndices.filter { index in
                let label = Int(train.label(index))
                guard taken[label] < section.trainPerClass else { return false }
                taken[label] += 1
                return true
            }
        }
        let validation: (any Dataset)? = section.validationSize > 0 ? train.subset(keep(train, Array(trainCount..<train.count))) : nil
        var testSet: (any Dataset)? = test
        if let test, section.testLimit > 0 || !kept.isEmpty {
            let indices = keep(test, Array(0..<test.count))
            testSet = test.subset(section.testLimit > 0 ? Array(indices.prefix(section.testLimit)) : indices)
        }
        return DatasetSplits(train: train.subset(trainIndices), validation: validation, test: testSet)
    }
}
