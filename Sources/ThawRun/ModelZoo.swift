// ModelZoo: architecture names in the configuration → models.
import Foundation
import ThawTrainer
import ThawPlan
import ThawData
import ThawKernels
import ThawNN

/// Builds the model a configuration names.
public enum ModelZoo {
    /// Builds an architecture by name with default settings, for tools that need only its shape.
    /// `bert`, which needs a `config.json` otherwise, takes all-MiniLM-L6-v2's sizes.
    /// - Parameter sampleShape: The input shape; nil takes the architecture's typical one.
    public static func build(architecture: String, sampleShape: [Int]? = nil, seed: UInt64 = 1) throws -> Model {
        var section = ModelSection()
        section.architecture = architecture
        let descriptor = try self.architecture(architecture)
        return try build(section, sampleShape: sampleShape ?? descriptor.typicalSampleShape, seed: seed,
                         bertConfiguration: descriptor.readsTokenIds ? .miniLML6 : nil)
    }

    /// The descriptor `model.architecture` names.
    /// - Throws: ``ConfigError`` listing the architectures for an unknown name.
    public static func architecture(_ name: String) throws(ConfigError) -> Architecture {
        guard let descriptor = Architecture.named(name) else {
            throw ConfigError(file: "", key: "model.architecture",
                              message: "unknown value '\(name.prefix(200))'; expected one of \(Architecture.all.map(\.name).joined(separator: ", "))")
        }
        return descriptor
    }

    /// Maps Thaw's tensor names to the architecture's standard (PyTorch) names; nil for a tensor the
    /// standard layout lacks. The small built-in networks have no other layout, so their names stay.
    public static func externalName(architecture: String) -> (String) -> String? {
        Architecture.named(architecture)?.externalName ?? { $0 }
    }

    /// The weights file for `model.pretrained`: the path itself, or `model.safetensors` inside a directory.
    public static func weightsFile(_ path: String) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return path }
        return (path as NSString).appendingPathComponent("model.safetensors")
    }

    /// Loads pretrained weights (safetensors or PyTorch `.pth`, or a directory holding `model.safetensors`)
    /// into `model` under the architecture's standard names, returning the report. Strict mode throws
    /// naming every problem.
    ///
    /// For `bert`, file names lose a wrapper prefix (`bert.`, `0.auto_model.`) before matching, and the
    /// pooler, pre-training heads and `embeddings.position_ids` are reported as ignored (see BERT.swift).
    ///
    /// A PEFT LoRA directory (holding `adapter_config.json`) loads its base model first, then the
    /// adapters and the head, once its rank, alpha and targets are checked against `adapters`.
    public static func loadPretrained(_ path: String, into model: Model, architecture: String, strict: Bool,
                                      adapters: AdapterSection? = nil) throws -> WeightLoadReport {
        if PEFTAdapter.isAdapterDirectory(path) {
            return try loadAdapterDirectory(path, into: model, architecture: architecture, strict: strict, adapters: adapters)
        }
        let file = weightsFile(path)
        var raw: [String: (shape: [Int], values: [Float])] = [:]
        // The format is told by the file's structure, not its name (see TensorFileFormat).
        for (name, tensor) in try TensorFileFormat.readTensors(file) { raw[name] = (tensor.shape, tensor.values) }
        switch try self.architecture(architecture).weightNaming {
        case .standard:
            return try model.loadWeights(raw, file: file, externalName: externalName(architecture: architecture), strict: strict)
        case .huggingFaceBERT:
            var tensors: [String: (shape: [Int], values: [Float])] = [:]
            for name in raw.keys.sorted() {
                // A name present both with and without a prefix keeps its prefixed copy apart (then unexpected).
                let canonical = BERT.canonicalName(fileName: name)
                let key = canonical != name && raw[canonical] != nil ? name : canonical
                tensors[key] = raw[name]
            }
            return try model.loadWeights(tensors, file: file, externalName: BERT.huggingFaceName, strict: strict,
                                         isUnusedByDesign: { BERT.isUnusedByDesign(BERT.canonicalName(fileName: $0)) })
        }
    }

    /// A PEFT adapter directory: the base model's weights, then the adapters and the head.
    /// - Throws: ``PEFTAdapterError`` naming the file and field that do not match the configuration.
    static func loadAdapterDirectory(_ path: String, into model: Model, architecture name: String, strict: Bool,
                                     adapters: AdapterSection?) throws -> WeightLoadReport {
        let settings = try PEFTAdapter.readSettings(directory: path)
        guard case .lowRank(let lora) = adapters?.method else {
            throw PEFTAdapterError(file: (path as NSString).appendingPathComponent(PEFTAdapter.configFileName), field: nil,
                                   message: "is a LoRA adapter (r \(settings.rank), alpha \(settings.alpha), targets \(settings.targetModules)); "
                                    + "set model.adapters to kind lora with the same rank, alpha and targets to load it")
        }
        let descriptor = try architecture(name)
        let adapted = PEFTAdapter.adaptedModules(model.store.parameterEntries.map(\.name), architecture: descriptor)
        try PEFTAdapter.check(settings, against: lora, adaptedModules: adapted, directory: path)
        var report = try loadPretrained(PEFTAdapter.basePath(settings, directory: path), into: model, architecture: name, strict: strict)
        let loaded = try PEFTAdapter.loadAdapters(directory: path, into: model, architecture: descriptor)
        report.replaced.removeAll(where: loaded.contains)
        report.loaded += loaded
        return report
    }

    /// The BERT configuration a model section names: `model.bert_config`, else `config.json` in the
    /// `model.pretrained` directory (for a PEFT adapter directory, in its base model's directory).
    /// - Throws: ``ConfigError`` when neither is given, ``BERTConfigurationError`` for a bad file.
    public static func bertConfiguration(_ section: ModelSection) throws -> BERTConfiguration {
        if !section.bertConfig.isEmpty { return try BERTConfiguration.load(path: section.bertConfig) }
        var isDirectory: ObjCBool = false
        var directory = section.pretrained
        if PEFTAdapter.isAdapterDirectory(directory) {
            directory = try PEFTAdapter.basePath(PEFTAdapter.readSettings(directory: directory), directory: directory)
        }
        if !directory.isEmpty, FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue {
            return try BERTConfiguration.load(path: (directory as NSString).appendingPathComponent("config.json"))
        }
        throw ConfigError(file: "", key: "model.bert_config",
                          message: "architecture bert needs a Hugging Face config.json: set model.bert_config, or model.pretrained to a directory holding config.json and model.safetensors")
    }

    /// Checks every sample of `dataset` for what the model's forward pass cannot report: token ids of
    /// a `bert` model must be integers in its vocabulary. Other models accept any values.
    /// - Throws: ``ModelZooError/tokenId(dataset:sample:position:id:vocabularySize:)`` naming the dataset, the sample, the id and its position.
    public static func validateInputs(_ dataset: any Dataset, for model: Model, name: String) throws {
        let checks = model.allLayers.compactMap { $0 as? PaddingMaskFromIds }
        guard !checks.isEmpty else { return }
        let sample = Tensor(shape: [1] + dataset.sampleShape)
        for index in 0..<dataset.count {
            dataset.copySample(index, into: sample.data)
            for check in checks {
                do { try check.validate(ids: sample) } catch {
                    throw ModelZooError.tokenId(dataset: name, sample: index, position: error.position.last ?? 0, id: error.id,
                                                vocabularySize: error.vocabularySize)
                }
            }
        }
    }

    /// Builds and initializes the model for `sampleShape` inputs.
    /// - Throws: ``ConfigError`` for an unknown architecture, or a ``ModelZooError`` when the input
    ///   shape does not suit it.
    public static func build(_ section: ModelSection, sampleShape: [Int], seed: UInt64) throws -> Model {
        try build(section, sampleShape: sampleShape, seed: seed, bertConfiguration: nil)
    }

    static func build(_ section: ModelSection, sampleShape: [Int], seed: UInt64, bertConfiguration given: BERTConfiguration?) throws -> Model {
        let groups = try groups(section, sampleShape: sampleShape, seed: seed, bertConfiguration: given)
        let model = try Model(groups: groups, sampleShape: sampleShape, seed: seed,
                              placement: AdapterAssembly.placement(section.adapters, groups: groups))
        model.frozenBatchNormPolicy = section.frozenBatchNorm
        return model
    }

    /// The architecture's layer groups for `sampleShape` inputs, without a parameter store: layers
    /// declare their parameters' shapes but allocate nothing until a ``Model`` binds them, so this is
    /// the shape-only path the memory estimate uses (MemoryEstimate.swift).
    /// - Throws: As ``build(_:sampleShape:seed:)``.
    static func groups(_ section: ModelSection, sampleShape: [Int], seed: UInt64, bertConfiguration given: BERTConfiguration?) throws -> [LayerGroup] {
        guard sampleShape.allSatisfy({ $0 >= 1 }), CheckedSize.product(sampleShape) != nil else {
            throw ModelZooError.input(architecture: section.architecture, expected: "a sample shape of positive extents whose product fits in an Int",
                                      got: sampleShape)
        }
        var groups = try architecture(section.architecture).makeGroups(section, sampleShape, seed, given)
        if let adaptation = section.domainAdaptation {
            groups = try domainAdversarial(groups, adaptation: adaptation, classes: section.classes, sampleShape: sampleShape)
        }
        try AdapterAssembly.attach(section.adapters, to: groups, architecture: section.architecture, seed: seed)
        return groups
    }

    /// The same groups with the head wrapped in a ``DomainAdversarialHead``: the head becomes its label
    /// branch (parameters `head.adversarial.label.*`) and a domain classifier reads the head's input
    /// (`head.adversarial.domain.*`). The group stays the unit of freezing, so unfreezing plans apply unchanged.
    static func domainAdversarial(_ groups: [LayerGroup], adaptation: DomainAdaptationSection, classes: Int,
                                  sampleShape: [Int]) throws -> [LayerGroup] {
        guard let head = groups.last else { return groups }
        var shape = [1] + sampleShape
        for group in groups.dropLast() {
            do { shape = try group.body.outputShape(for: shape) } catch { throw ModelError.shape(error) }
        }
        guard let features = CheckedSize.product(shape.dropFirst()) else {
            throw ModelZooError.input(architecture: "the domain classifier", expected: "a head input whose size fits in an Int", got: shape)
        }
        let adversarial = DomainAdversarialHead(
            labelBranch: head.body, labelOutputs: classes, features: features,
            domainHidden: adaptation.domainHidden, schedule: ReversalSchedule(gamma: adaptation.lambdaGamma, maximum: adaptation.lambdaMax))
        return groups.dropLast() + [LayerGroup(head.name, [(name: "adversarial", layer: adversarial)])]
    }
}
