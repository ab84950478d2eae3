// MemoryEstimate: the bytes a run will hold, computed from shapes before anything is allocated,
// so that a run that cannot fit is refused with the key to change instead of dying in malloc.
//
// The terms are the memory report's (MemoryReport.swift, `RankMemory.estimate`): parameters and
// batch-norm state; gradients and optimizer state of the largest trainable set only (their buffers
// are zero pages until written, see docs/design.md "Note: memory of frozen groups"); activations;
// the feature cache within its budget. To those it adds the input batch and the dataset still to be
// loaded. Everything comes from the architecture's parameter declarations and the layers' output
// shapes (ModelZoo.groups builds layers, which allocate nothing until a Model binds them).
//
// The estimate leans low where it must guess (a layer's inner tensors are counted at the size of its
// output; attention scores are left out), so it refuses only runs that surely cannot fit.
import Foundation
import ThawTrainer
import ThawPlan
import ThawKernels
import ThawNN
import ThawOptim

/// What a run will hold in memory per rank, in bytes, from shapes alone.
public struct MemoryEstimate: Equatable, Sendable {
    /// One term, with the configuration key that sizes it.
    public struct Part: Equatable, Sendable {
        /// What the bytes hold, for people.
        public var name: String
        /// Bytes (Int.max when the sizes overflow).
        public var bytes: Int
        /// The configuration key to change to make it smaller.
        public var key: String
        /// Why it is this large, naming the shape or value behind it.
        public var detail: String
    }

    /// Parameters and batch-norm state (all resident, frozen or not).
    public var parameters: Int
    /// Gradients of the largest trainable set.
    public var trainableGradients: Int
    /// Optimizer state of the largest trainable set.
    public var optimizerState: Int
    /// The input batch, every layer's output for it, and the trainable layers' input gradients.
    public var activations: Int
    /// The feature caches' rows held in memory (at most `training.feature_cache.memory_mb`).
    public var featureCache: Int
    /// The dataset still to be loaded (0 when it is already resident or unknown).
    public var dataset: Int
    /// Every term with its key, largest first.
    public var parts: [Part]

    /// The sum of every term (saturating at Int.max).
    public var total: Int { saturatingSum([parameters, trainableGradients, optimizerState, activations, featureCache, dataset]) }

    /// Estimates a run of `config` on samples of `sampleShape`.
    /// - Parameters:
    ///   - config: The validated configuration.
    ///   - sampleShape: One sample's shape.
    ///   - samples: Samples the feature caches may hold rows for (all splits), or nil when unknown.
    ///   - datasetBytes: The dataset's bytes still to be loaded (0 once it is resident).
    ///   - worldSize: The number of ranks sharing each global batch.
    ///   - bertConfiguration: For `bert`, its sizes; nil reads them as ``ModelZoo`` would.
    /// - Throws: What ``ModelZoo/build(_:sampleShape:seed:)`` throws for a shape the architecture rejects.
    public static func make(config: TrainingConfig, sampleShape: [Int], samples: Int?, datasetBytes: Int, worldSize: Int,
                            bertConfiguration: BERTConfiguration? = nil) throws -> MemoryEstimate {
        let float = MemoryLayout<Float>.stride
        let bert = try ModelZoo.architecture(config.model.architecture).readsTokenIds
            ? try bertConfiguration ?? ModelZoo.bertConfiguration(config.model) : nil
        let groups = try ModelZoo.groups(config.model, sampleShape: sampleShape, seed: config.run.seed, bertConfiguration: bert)
        let sizes = groups.map(GroupSize.init)
        // Layer outputs per sample, threaded through the groups as Model.init does.
        var shape = [1] + sampleShape
        var outputs: [Int] = []        // floats of each group's output, per sample
        var activations: [Int] = []    // floats of every layer output inside each group, per sample
        for group in groups {
            let (floats, output) = try outputFloats(group.body, input: shape)
            activations.append(floats)
            outputs.append(CheckedSize.product(output) ?? Int.max)
            shape = output
        }
        let trainable = largestTrainableCount(config, groupCount: groups.count)
        // Under adapters only each group's adapters (or biases) train; the head trains whole.
        let placement = AdapterAssembly.placement(config.model.adapters, groups: groups)
        let trainableParameters = saturatingSum(groups.indices.suffix(trainable).map { index in
            guard case .adapters(let trains) = placement, index < groups.count - 1 else { return sizes[index].parameters }
            return saturatingSum(groups[index].body.parameterSpecs.filter { trains("\(groups[index].name).\($0.name)") }.map { $0.elementCount ?? Int.max })
        })
        // The sampler's local batch capacity: ceil(micro-batch / ranks) (sizes validated, so no overflow).
        let microBatch = config.training.batchSize / max(config.training.accumulationSteps, 1), ranks = max(worldSize, 1)
        let capacity = microBatch / ranks + (microBatch % ranks == 0 ? 0 : 1)
        let sampleFloats = CheckedSize.product(sampleShape) ?? Int.max
        let perSample = saturatingSum([sampleFloats, saturatingSum(activations), saturatingSum(activations.suffix(trainable))])
        var estimate = MemoryEstimate(
            parameters: saturatingProduct([saturatingSum(sizes.map { saturatingSum([$0.parameters, $0.state]) }), float]),
            trainableGradients: saturatingProduct([trainableParameters, float]),
            optimizerState: saturatingProduct([trainableParameters, UpdateRule(config.optimizer).stateNames.count, float]),
            activations: saturatingProduct([perSample, capacity, float]),
            featureCache: featureCacheBytes(config, rowFloats: outputs, trainable: trainable, samples: samples),
            dataset: datasetBytes, parts: [])
        let largest = sizes.compactMap(\.largest).max { ($0.spec.elementCount ?? Int.max) < ($1.spec.elementCount ?? Int.max) }
        estimate.parts = estimate.describe(config, largest: largest, headGroup: groups.last?.name ?? "", capacity: capacity,
                                           perSample: saturatingProduct([perSample, float]))
        return estimate
    }

    /// Refuses the run when `ranksOnHost` ranks of this estimate need more than `availableBytes`.
    /// - Throws: ``ConfigError`` whose key is the one to change for the biggest term (file left
    ///   empty: the caller knows it), with every term and the memory available in the message.
    public func check(availableBytes: Int, ranksOnHost: Int, source: String = "available") throws(ConfigError) {
        let needed = saturatingProduct([total, max(ranksOnHost, 1)])
        guard needed > availableBytes, let biggest = parts.first else { return }
        let ranks = ranksOnHost > 1 ? " (\(ranksOnHost) ranks × \(Self.format(total)))" : ""
        throw ConfigError(file: "", key: biggest.key, message:
            "the run needs about \(Self.format(needed)) on this host\(ranks), more than the \(Self.format(availableBytes)) \(source); "
            + "the largest part is \(biggest.name): \(Self.format(biggest.bytes)) (\(biggest.detail)). All parts per rank: "
            + parts.map { "\($0.name) \(Self.format($0.bytes))" }.joined(separator: ", "))
    }

    /// `412.3 GB`, `18 MB`: binary units as the memory report prints them.
    static func format(_ bytes: Int) -> String {
        guard bytes < Int.max else { return "more than 8 EB" }
        let gigabytes = Double(bytes) / 1_073_741_824
        if gigabytes >= 1024 { return String(format: "%.1f TB", gigabytes / 1024) }
        return gigabytes >= 1 ? String(format: "%.1f GB", gigabytes) : String(format: "%.0f MB", Double(bytes) / 1_048_576)
    }

    /// The terms as parts with their keys, largest first.
    private func describe(_ config: TrainingConfig, largest: (group: String, spec: ParameterSpec)?, headGroup: String,
                          capacity: Int, perSample: Int) -> [Part] {
        let model = saturatingSum([parameters, trainableGradients, optimizerState])
        var modelKey = Architecture.named(config.model.architecture)?.readsTokenIds == true ? "model.bert_config" : "model.architecture"
        var modelDetail = "model.architecture = \(config.model.architecture)"
        if let (group, spec) = largest {
            modelDetail = "its largest tensor \(group).\(spec.name) is \(spec.shape)"
            if group == headGroup && spec.shape.contains(config.model.classes) {
                modelKey = "model.classes"
                modelDetail += ": model.classes = \(config.model.classes)"
            } else if config.data.imageSize > 0 {
                modelKey = "data.image_size"
                modelDetail += " at data.image_size = \(config.data.imageSize)"
            }
        }
        let isText = config.data.source.text != nil
        let parts = [
            Part(name: "the model's parameters, trainable gradients and optimizer state", bytes: model, key: modelKey, detail: modelDetail),
            Part(name: "activations", bytes: activations, key: "training.batch_size",
                 detail: "\(capacity) samples per rank per micro-batch × \(Self.format(perSample)) per sample"
                    + (config.data.imageSize > 0 ? " at data.image_size = \(config.data.imageSize)" : "")),
            Part(name: "the feature cache", bytes: featureCache, key: "training.feature_cache.memory_mb",
                 detail: "training.feature_cache.memory_mb = \(config.training.featureCache.memoryMegabytes)"),
            Part(name: "the dataset", bytes: dataset, key: config.data.imageSize > 0 ? "data.image_size" : isText ? "data.max_length" : "data.dataset",
                 detail: "data.dataset = \(config.data.dataset.rawValue)" + (config.data.imageSize > 0 ? ", data.image_size = \(config.data.imageSize)" : "")),
        ]
        return parts.filter { $0.bytes > 0 }.sorted { $0.bytes > $1.bytes }
    }

    /// The most groups that ever train at once under the unfreezing policy (operators' thaws aside).
    static func largestTrainableCount(_ config: TrainingConfig, groupCount: Int) -> Int {
        switch config.unfreezing.policy {
        case .none, .plateau:
            return groupCount
        case .gradual(let initialGroups, let every):
            let grown = saturatingSum([initialGroups, (config.training.epochs - 1) / max(every, 1)])
            return min(groupCount, max(grown, 1))
        case .fixed(let table):
            return min(groupCount, max(1, table.values.map { Set($0).count }.max() ?? 1))
        }
    }

    /// Rows the feature caches hold at the largest boundary the schedule may cache, within the budget.
    static func featureCacheBytes(_ config: TrainingConfig, rowFloats outputs: [Int], trainable: Int, samples: Int?) -> Int {
        let training = config.training, data = config.data
        guard training.featureCache.enabled, config.unfreezing.policy != .none, let samples,
              data.cropPadding == 0, !data.horizontalFlip, config.model.frozenBatchNorm == .runningStatistics else { return 0 }
        let first: Int = switch config.unfreezing.policy {
        case .fixed(let table): Set(table["0"] ?? []).count
        default: config.unfreezing.policy.initialGroups ?? 1
        }
        let frozenAtMost = outputs.count - max(first, 1)
        let frozenAtLeast = outputs.count - trainable
        guard frozenAtMost >= max(frozenAtLeast, 1) else { return 0 }
        // A boundary b caches the input of group b, the output of group b − 1.
        let row = (max(frozenAtLeast, 1)...frozenAtMost).map { outputs[$0 - 1] }.max() ?? 0
        let budget = Int(training.featureCache.memoryMegabytes * 1_048_576)   // ≤ 16 TB, validated
        return min(budget, saturatingProduct([row, samples, MemoryLayout<Float>.stride]))
    }

    /// Floats every layer inside `layer` holds as output for one sample, and the output shape.
    /// A composite layer other than Sequential counts its output once per leaf layer inside it.
    static func outputFloats(_ layer: any Layer, input: [Int]) throws -> (floats: Int, output: [Int]) {
        if let sequential = layer as? Sequential {
            var shape = input
            var total = 0
            for child in sequential.namedLayers {
                let (floats, output) = try outputFloats(child.layer, input: shape)
                total = saturatingSum([total, floats])
                shape = output
            }
            return (total, shape)
        }
        let output: [Int]
        do { output = try layer.outputShape(for: input) } catch { throw ModelError.shape(error) }
        return (saturatingProduct([CheckedSize.product(output) ?? Int.max, max(leafCount(layer), 1)]), output)
    }

    private static func leafCount(_ layer: any Layer) -> Int {
        layer.children.isEmpty ? 1 : layer.children.reduce(0) { $0 + leafCount($1) }
    }
}

/// One group's parameter and state element counts, from its declarations.
private struct GroupSize {
    var parameters: Int
    var state: Int
    /// The group's largest parameter declaration.
    var largest: (group: String, spec: ParameterSpec)?

    init(_ group: LayerGroup) {
        let specs = group.body.parameterSpecs
        switch ParameterStore.layoutSize(groups: [(name: group.name, parameters: specs, state: group.body.stateSpecs)]) {
        case .success(let counts): (parameters, state) = counts
        case .failure: (parameters, state) = (Int.max, 0)   // beyond any machine: the check refuses it
        }
        largest = specs.max { ($0.elementCount ?? Int.max) < ($1.elementCount ?? Int.max) }.map { (group.name, $0) }
    }
}

/// The memory this machine can give a run now.
public enum MachineMemory {
    /// The bytes available and where the figure comes from: the smaller of MemAvailable
    /// (/proc/meminfo) and the cgroup's remaining limit, or the physical memory where neither is known.
    public static func available() -> (bytes: Int, source: String) {
        var best = (bytes: Int(clamping: ProcessInfo.processInfo.physicalMemory), source: "of physical memory")
        if let available = kilobytes(field: "MemAvailable:", in: "/proc/meminfo") {
            best = (saturatingProduct([available, 1024]), "available (MemAvailable)")
        }
        if let limit = number(in: "/sys/fs/cgroup/memory.max"), let used = number(in: "/sys/fs/cgroup/memory.current"), limit - used < best.bytes {
            best = (max(limit - used, 0), "left under this cgroup's memory.max")
        }
        return best
    }

    /// A "Name:   123 kB" line's number (stdio: /proc files report a size of 0).
    private static func kilobytes(field: String, in path: String) -> Int? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard line.hasPrefix(field) else { continue }
            return line.dropFirst(field.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
        }
        return nil
    }

    /// The single number a cgroup file holds, or nil (absent, or `max`).
    private static func number(in path: String) -> Int? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        return Int(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// The sum, or Int.max when it does not fit.
func saturatingSum<Values: Sequence>(_ values: Values) -> Int where Values.Element == Int { CheckedSize.sum(values) ?? Int.max }

/// The product, or Int.max when it does not fit.
func saturatingProduct(_ values: [Int]) -> Int { CheckedSize.product(values) ?? Int.max }
