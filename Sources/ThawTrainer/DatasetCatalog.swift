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
    public static let names = ["fashion-mnist"]

    /// Loads and splits the dataset.
    /// - Throws: ``DataError`` naming the file, or ``TrainingError`` for an unknown name or bad sizes.
    public static func load(_ section: DataSection) throws -> DatasetSplits {
        switch section.dataset {
        case "fashion-mnist":
            let directory = section.directory.isEmpty ? FashionMNIST.defaultDirectory : section.directory
            let fullTrain = try FashionMNIST.load(.train, directory: directory)
            let test = try FashionMNIST.load(.test, directory: directory)
            return try split(train: fullTrain, test: test, section)
        default:
            throw TrainingError.unknown(key: "data.dataset", value: section.dataset, choices: names)
        }
    }

    /// Applies `validation_size`, `train_limit` and `test_limit`: validation is the end of the
    /// training file, so the training limit never overlaps it.
    static func split(train: some Dataset, test: some Dataset, _ section: DataSection) throws -> DatasetSplits {
        guard section.validationSize < train.count else {
            throw TrainingError.dataMismatch("data.validation_size (\(section.validationSize)) must be smaller than the \(train.count) training samples")
        }
        let trainCount = train.count - section.validationSize
        let trainIndices = Array(0..<(section.trainLimit > 0 ? min(section.trainLimit, trainCount) : trainCount))
        let validation: (any Dataset)? = section.validationSize > 0 ? train.subset(Array(trainCount..<train.count)) : nil
        let testSet: any Dataset = section.testLimit > 0 ? test.prefix(min(section.testLimit, test.count)) : test
        return DatasetSplits(train: train.subset(trainIndices), validation: validation, test: testSet)
    }
}
