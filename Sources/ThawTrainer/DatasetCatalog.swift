// DatasetCatalog: dataset names in the configuration → train, validation and test sets.
import ThawData

/// The splits of one dataset as the configuration asks for them.
public struct DatasetSplits {
    /// Training samples.
    public var train: any Dataset
    /// Validation samples held out of the training set, if `data.validation_size` > 0.
    public var validation: (any Dataset)?
    /// Test samples.
    public var test: (any Dataset)?
}

/// Loads the dataset a configuration names.
public enum DatasetCatalog {
    /// The dataset names `data.dataset` accepts.
    public static let names = ["fashion-mnist", "rotten-tomatoes", "npy", "text-csv"]

    /// Loads and splits the dataset.
    /// - Throws: ``DataError`` naming the file, or ``TrainingError`` for an unknown name or bad sizes.
    public static func load(_ section: DataSection) throws -> DatasetSplits {
        switch section.dataset {
        case "fashion-mnist":
            let directory = section.directory.isEmpty ? FashionMNIST.defaultDirectory : section.directory
            let fullTrain = try FashionMNIST.load(.train, directory: directory)
            let test = try FashionMNIST.load(.test, directory: directory)
            guard section.imageSize > 0 || section.normalization == "imagenet" else {
                return try split(train: fullTrain, test: test, section)
            }
            // For pretrained backbones: resize, repeat to 3 channels, ImageNet statistics, per sample on access.
            let imageNet = section.normalization == "imagenet"
            func transform(_ images: ByteImageDataset) -> TransformedImageDataset<ByteImageDataset> {
                TransformedImageDataset(
                    base: images, sourceNormalization: (FashionMNIST.mean, FashionMNIST.standardDeviation),
                    size: section.imageSize > 0 ? section.imageSize : 28, channels: imageNet ? 3 : 1,
                    normalization: imageNet ? .imageNet : PixelNormalization(mean: [FashionMNIST.mean], standardDeviation: [FashionMNIST.standardDeviation]))
            }
            return try split(train: transform(fullTrain), test: transform(test), section)
        case "npy":
            guard !section.trainFeatures.isEmpty, !section.trainLabels.isEmpty else {
                throw TrainingError.dataMismatch("data.train_features and data.train_labels: the npy dataset needs both paths")
            }
            let train = try loadArrays(features: section.trainFeatures, labels: section.trainLabels)
            guard !section.testFeatures.isEmpty else { return try split(train: train, test: nil as InMemoryDataset?, section) }
            let test = try loadArrays(features: section.testFeatures, labels: section.testLabels)
            return try split(train: train, test: test, section)
        case "rotten-tomatoes":
            // Fixed splits (RottenTomatoes.swift); limits cut the texts before they are tokenized.
            let tokenizer = try WordPieceTokenizer(vocabularyFile: section.vocabulary)
            let directory = section.directory.isEmpty ? RottenTomatoes.defaultDirectory : section.directory
            func tokenized(_ split: RottenTomatoes.Split, limit: Int) throws -> TextClassificationDataset {
                var reviews = try RottenTomatoes.load(split, directory: directory)
                if limit > 0 && limit < reviews.count { reviews = reviews.subset(Array(0..<limit)) }
                return try TextClassificationDataset(reviews, tokenizer: tokenizer, maximumLength: section.maxLength,
                                                     classCount: RottenTomatoes.classNames.count)
            }
            return DatasetSplits(train: try tokenized(.train, limit: section.trainLimit),
                                 validation: try tokenized(.validation, limit: 0),
                                 test: try tokenized(.test, limit: section.testLimit))
        case "text-csv":
            guard !section.trainTexts.isEmpty else {
                throw TrainingError.dataMismatch("data.train_texts: the text-csv dataset needs a label,text training file")
            }
            let tokenizer = try WordPieceTokenizer(vocabularyFile: section.vocabulary)
            let trainTexts = try TextCSVReader.read(section.trainTexts)
            let testTexts = section.testTexts.isEmpty ? nil : try TextCSVReader.read(section.testTexts)
            // One class count for both files, so their labels mean the same outputs.
            let classCount = Int(max(trainTexts.labels.max() ?? 0, testTexts?.labels.max() ?? 0)) + 1
            let train = try TextClassificationDataset(trainTexts, tokenizer: tokenizer, maximumLength: section.maxLength, classCount: classCount)
            let test = try testTexts.map { texts throws(DataError) in
                try TextClassificationDataset(texts, tokenizer: tokenizer, maximumLength: section.maxLength, classCount: classCount)
            }
            return try split(train: train, test: test, section)
        default:
            throw TrainingError.unknown(key: "data.dataset", value: section.dataset, choices: names)
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
            throw TrainingError.dataMismatch("data.validation_size (\(section.validationSize)) must be smaller than the \(train.count) training samples")
        }
        let trainCount = train.count - section.validationSize
        if let unknown = section.classes.first(where: { $0 >= train.classCount }) {
            throw TrainingError.dataMismatch("data.classes: unknown class \(unknown); the dataset's classes are 0...\(train.classCount - 1)")
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
