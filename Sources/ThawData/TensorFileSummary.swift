// TensorFileSummary: what a weight file holds (names, dtypes, shapes, parameter counts), for
// `thaw inspect`. Safetensors files are summarised from their validated header alone; PyTorch
// checkpoints are read fully. Files Thaw writes carry `__metadata__` "groups" (the model's layer
// groups, comma-separated, input side first) and name tensors `group.layer...`, so counts are also
// given per group.
import Foundation

/// A summary of a safetensors file or PyTorch checkpoint.
public struct TensorFileSummary: Sendable, Codable, Equatable {
    /// One tensor: name, dtype (safetensors spelling), shape and element count.
    public struct Tensor: Sendable, Codable, Equatable {
        /// The tensor's name.
        public var name: String
        /// The element type in the file (`F32`, `BF16`, `I64`, ...).
        public var dtype: String
        /// The tensor's shape.
        public var shape: [Int]
        /// The number of elements.
        public var parameters: Int

        /// Creates a tensor line.
        public init(name: String, dtype: String, shape: [Int], parameters: Int) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.parameters = parameters
        }
    }

    /// Totals for one layer group named in the `groups` metadata.
    public struct Group: Sendable, Codable, Equatable {
        /// The group's name.
        public var name: String
        /// How many tensors belong to it.
        public var tensors: Int
        /// How many elements they hold.
        public var parameters: Int

        /// Creates a group line.
        public init(name: String, tensors: Int, parameters: Int) {
            self.name = name
            self.tensors = tensors
            self.parameters = parameters
        }
    }

    /// The file's path.
    public var file: String
    /// `safetensors`, `torch-zip` or `torch-legacy`.
    public var format: String
    /// The safetensors `__metadata__` (empty for PyTorch files).
    public var metadata: [String: String]
    /// The tensors in file order.
    public var tensors: [Tensor]
    /// The sum of all tensors' element counts.
    public var totalParameters: Int
    /// Per-group totals, in the order of the `groups` metadata (empty without it). Tensors that match
    /// no group are counted under "(other)".
    public var groups: [Group]
    /// PyTorch entries that are not tensors (left out of `tensors`).
    public var skipped: [String]

    /// Summarises the file at `path`, telling the formats apart by their structure (see
    /// ``TensorFileFormat``).
    /// - Throws: ``DataError`` naming the file if it is not a valid safetensors file or PyTorch checkpoint.
    public static func inspect(_ path: String) throws(DataError) -> TensorFileSummary {
        let storage = try MappedFile(path: path)
        let format = try TensorFileFormat.detect(storage, file: path)
        guard format == .safetensors else {
            let checkpoint = try TorchCheckpoint.load(storage, file: path)
            let tensors = checkpoint.names.compactMap { name in
                checkpoint.tensors[name].map { Tensor(name: name, dtype: $0.dtype, shape: $0.shape, parameters: $0.values.count) }
            }
            return TensorFileSummary(file: path, format: format.rawValue, metadata: [:], tensors: tensors, skipped: checkpoint.skipped)
        }
        let file = try SafeTensorsFile(storage: storage, file: path)
        var tensors: [Tensor] = []
        for name in file.names {
            let info = try file.info(name)
            tensors.append(Tensor(name: name, dtype: info.dtype, shape: info.shape, parameters: info.elementCount))
        }
        return TensorFileSummary(file: path, format: "safetensors", metadata: file.metadata, tensors: tensors, skipped: [])
    }

    /// Builds a summary, computing the totals and the per-group counts from `metadata["groups"]`.
    public init(file: String, format: String, metadata: [String: String], tensors: [Tensor], skipped: [String]) {
        self.file = file
        self.format = format
        self.metadata = metadata
        self.tensors = tensors
        self.skipped = skipped
        self.totalParameters = tensors.reduce(0) { $0 + $1.parameters }
        let groupNames = (metadata["groups"] ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !groupNames.isEmpty else {
            self.groups = []
            return
        }
        var groups = groupNames.map { Group(name: $0, tensors: 0, parameters: 0) }
        var other = Group(name: "(other)", tensors: 0, parameters: 0)
        for tensor in tensors {
            if let index = groupNames.firstIndex(where: { tensor.name == $0 || tensor.name.hasPrefix($0 + ".") }) {
                groups[index].tensors += 1
                groups[index].parameters += tensor.parameters
            } else {
                other.tensors += 1
                other.parameters += tensor.parameters
            }
        }
        self.groups = groups + (other.tensors > 0 ? [other] : [])
    }

    /// A readable table: one line per tensor, then totals and per-group counts.
    public func text() -> String {
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }
        let nameWidth = min(max(tensors.map(\.name.count).max() ?? 4, 4), 60)
        var lines = ["\(file): \(format), \(tensors.count) tensors, \(totalParameters) parameters"]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { lines.append("  metadata \(key) = \(value)") }
        lines.append("  " + pad("name", nameWidth) + "  " + pad("dtype", 5) + "  " + pad("shape", 20) + "  parameters")
        for tensor in tensors {
            lines.append("  " + pad(tensor.name, nameWidth) + "  " + pad(tensor.dtype, 5) + "  "
                         + pad("[" + tensor.shape.map(String.init).joined(separator: ", ") + "]", 20) + "  \(tensor.parameters)")
        }
        if !groups.isEmpty {
            lines.append("  groups:")
            let groupWidth = groups.map(\.name.count).max() ?? 0
            for group in groups { lines.append("    " + pad(group.name, groupWidth) + "  \(group.tensors) tensors, \(group.parameters) parameters") }
        }
        if let share = trainableShare { lines.append("  trainable at the end: \(share) with 2 or more ranks") }
        if !skipped.isEmpty { lines.append("  not tensors (skipped): " + skipped.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    /// What trained when the file was written, from the `trainable_parameters` and `total_parameters`
    /// metadata Thaw writes into checkpoints and model.safetensors (nil for other files).
    public var trainableShare: TrainableShare? {
        guard let trainable = metadata["trainable_parameters"].flatMap({ Int($0) }), let total = metadata["total_parameters"].flatMap({ Int($0) }),
              trainable >= 0, total >= trainable, total <= Int.max / 8 else { return nil }
        return TrainableShare(trainable: trainable, total: total, worldSize: 2)
    }

    /// The summary as pretty-printed JSON with sorted keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
