// RunPreflight: what `thaw train` checks before it allocates anything large: that `run.output`
// can be written, and that the run fits in this machine's memory (MemoryEstimate.swift). The
// memory check runs twice: before the data is loaded, from what the configuration tells (a
// built-in dataset's sample shape and size; resizing digits to data.image_size allocates while
// loading), and again once the data is loaded, with its real sample shape and sample counts, just
// before the model is built. Both name the key to change.
import Foundation
import ThawTrainer
import ThawPlan
import ThawNN

/// Checks that run before the data and the model are allocated.
public enum RunPreflight {
    /// Before loading the data: `run.output` is usable, and the run fits as far as the configuration tells.
    /// - Parameters:
    ///   - config: The validated configuration.
    ///   - worldSize: The number of ranks.
    ///   - ranksOnHost: The ranks on this host, which share its memory.
    /// - Throws: ``ConfigError`` naming `run.output` or the key that makes the run too large.
    public static func beforeLoading(_ config: TrainingConfig, worldSize: Int, ranksOnHost: Int) throws {
        try checkOutputDirectory(config.run.output)
        let planned = plannedData(config.data)
        var estimate = MemoryEstimate.datasetOnly(config, bytes: planned.bytes)
        if let shape = planned.sampleShape {
            // A shape the architecture rejects is reported after loading, with the data's real shape.
            estimate = (try? MemoryEstimate.make(config: config, sampleShape: shape, samples: planned.samples, datasetBytes: planned.bytes,
                                                 worldSize: worldSize)) ?? estimate
        }
        let machine = MachineMemory.available()
        try estimate.check(availableBytes: machine.bytes, ranksOnHost: ranksOnHost, source: machine.source)
    }

    /// After loading the data, before building the model: the run fits with the data's sample shape and counts.
    /// - Throws: ``ConfigError`` naming the key that makes the run too large, or what ``ModelZoo`` throws
    ///   for a sample shape the architecture rejects.
    public static func beforeBuilding(_ config: TrainingConfig, data: DatasetSplits, worldSize: Int, ranksOnHost: Int) throws {
        let samples = [data.train.count, data.validation?.count ?? 0, data.test?.count ?? 0, data.targetTrain?.count ?? 0].reduce(0, +)
        let estimate = try MemoryEstimate.make(config: config, sampleShape: data.train.sampleShape, samples: samples, datasetBytes: 0,
                                               worldSize: worldSize)
        let machine = MachineMemory.available()
        try estimate.check(availableBytes: machine.bytes, ranksOnHost: ranksOnHost, source: machine.source)
    }

    /// What the configuration tells about the data before it is loaded.
    struct PlannedData: Equatable {
        /// One sample's shape, or nil when only the files tell (npy).
        var sampleShape: [Int]?
        /// Samples of every split, or nil when unknown.
        var samples: Int?
        /// Bytes the loaded dataset will hold (0 when unknown).
        var bytes: Int
    }

    /// The sample shape, sample count and loaded bytes of the configured dataset, from its known sizes.
    static func plannedData(_ section: DataSection) -> PlannedData {
        let float = MemoryLayout<Float>.stride
        // Digits load as floats at their own size, then resize to data.image_size (HandwrittenDigits.load).
        func digits(_ name: DigitsDataset?) -> PlannedData? {
            guard let name else { return nil }
            let (count, native) = name == .mnistMlxtend ? (5000, 28) : (1797, 8)
            let side = section.imageSize > 0 ? section.imageSize : native
            let floats = native * native + (section.imageSize > 0 ? side * side : 0)
            return PlannedData(sampleShape: [1, side, side], samples: count, bytes: saturatingProduct([count, floats, float]))
        }
        var planned: PlannedData
        switch section.source {
        case .fashionMNIST:
            // Bytes as stored; resizing and ImageNet normalization happen per sample on access.
            planned = PlannedData(sampleShape: [section.normalization == .imagenet ? 3 : 1, section.imageSize > 0 ? section.imageSize : 28,
                                                section.imageSize > 0 ? section.imageSize : 28], samples: 70_000, bytes: 70_000 * 784)
        case .digits(let name, _):
            planned = digits(name) ?? PlannedData(sampleShape: nil, samples: nil, bytes: 0)
        case .rottenTomatoes(_, let text):
            // 12,751 reviews, token ids stored as floats.
            planned = PlannedData(sampleShape: [text.maxLength], samples: 12_751, bytes: saturatingProduct([12_751, text.maxLength, float]))
        case .textCSV(_, let text):
            planned = PlannedData(sampleShape: [text.maxLength], samples: nil, bytes: 0)
        case .npy:
            planned = PlannedData(sampleShape: nil, samples: nil, bytes: 0)
        }
        if let target = digits(section.target) {
            planned.samples = planned.samples.map { $0 + (target.samples ?? 0) }
            planned.bytes = saturatingSum([planned.bytes, target.bytes])
        }
        return planned
    }

    /// Throws unless `path` is a writable directory or can be created as one.
    /// - Throws: ``ConfigError`` for `run.output` naming the path and the operating system's reason.
    static func checkOutputDirectory(_ path: String) throws(ConfigError) {
        func failure(_ message: String) -> ConfigError { ConfigError(file: "", key: "run.output", message: message) }
        var current = path
        while true {
            var status = stat()
            if stat(current, &status) == 0 {
                guard (status.st_mode & S_IFMT) == S_IFDIR else {
                    throw failure(current == path ? "\(path) exists and is not a directory"
                                                  : "cannot create \(path): \(current) is a file, not a directory")
                }
                guard access(current, W_OK | X_OK) == 0 else {
                    throw failure("cannot write in \(current)\(current == path ? "" : " to create \(path)"): \(String(cString: strerror(errno)))")
                }
                return
            }
            guard errno == ENOENT || errno == ENOTDIR else { throw failure("cannot use \(path): \(String(cString: strerror(errno)))") }
            let parent = (current as NSString).deletingLastPathComponent
            let next = parent.isEmpty ? "." : parent
            guard next != current else { return }
            current = next
        }
    }
}

extension MemoryEstimate {
    /// An estimate of the dataset alone (when the model's part cannot be known before loading).
    static func datasetOnly(_ config: TrainingConfig, bytes: Int) -> MemoryEstimate {
        MemoryEstimate(parameters: 0, trainableGradients: 0, optimizerState: 0, activations: 0, featureCache: 0, dataset: bytes,
                       parts: bytes > 0 ? [Part(name: "the dataset", bytes: bytes, key: config.data.imageSize > 0 ? "data.image_size" : "data.dataset",
                                                detail: "data.dataset = \(config.data.dataset)")] : [])
    }
}
