// WeightLoading: pretrained weights into a model, by name, with a report of what matched.
//
// Each architecture maps Thaw's names to the names of a standard layout (torchvision, Hugging
// Face); the small built-in networks use Thaw's names as they are. Parameters and batch-norm state
// are both loaded. The new head is expected to be missing.

/// What a weight load found.
public struct WeightLoadReport: Sendable, Equatable, CustomStringConvertible {
    /// Thaw names that were loaded.
    public var loaded: [String] = []
    /// Thaw names with no tensor in the file (external name in parentheses).
    public var missing: [String] = []
    /// File tensors that no model tensor maps to.
    public var unexpected: [String] = []
    /// File tensors that the layout leaves out on purpose (BERT's pooler, `position_ids`): not an error.
    public var ignored: [String] = []
    /// Tensors present on both sides with different shapes.
    public var shapeMismatched: [String] = []
    /// Tensors of the new head whose pretrained counterparts had another shape (kept freshly initialized).
    public var replaced: [String] = []

    /// A summary, listing every name that did not load.
    public var description: String {
        var lines = ["loaded \(loaded.count) tensor(s)"]
        if !missing.isEmpty { lines.append("missing \(missing.count): " + missing.joined(separator: ", ")) }
        if !unexpected.isEmpty { lines.append("unexpected \(unexpected.count): " + unexpected.joined(separator: ", ")) }
        if !ignored.isEmpty { lines.append("ignored (not part of this model) \(ignored.count): " + ignored.joined(separator: ", ")) }
        if !shapeMismatched.isEmpty { lines.append("shape mismatch \(shapeMismatched.count): " + shapeMismatched.joined(separator: ", ")) }
        if !replaced.isEmpty { lines.append("new head (not loaded): " + replaced.joined(separator: ", ")) }
        return lines.joined(separator: "; ")
    }
}

/// A strict load that found problems; it names each of them.
public struct WeightLoadError: Error, CustomStringConvertible {
    /// The weights file.
    public var file: String
    /// What was found.
    public var report: WeightLoadReport
    /// One paragraph naming every problem.
    public var description: String { "\(file): strict load failed: \(report)" }
}

extension Model {
    /// Copies named tensors into the model's parameters and state.
    ///
    /// Nothing is written unless the load is acceptable: in strict mode any missing tensor outside
    /// `allowMissingGroups`, any unexpected tensor and any shape mismatch throws, naming each one.
    /// - Parameters:
    ///   - tensors: File tensors by external name, as (shape, values).
    ///   - file: The file, for messages.
    ///   - externalName: Maps a Thaw name (`stem.conv.weight`) to the file's name for it, or nil
    ///     for a tensor the layout does not have.
    ///   - strict: Whether problems are errors.
    ///   - allowMissingGroups: Groups expected to be new (the head), missing without complaint.
    ///   - isUnusedByDesign: File tensors the layout leaves out on purpose; reported as `ignored`,
    ///     never as unexpected. (`num_batches_tracked` counters are always dropped silently.)
    public func loadWeights(_ tensors: [String: (shape: [Int], values: [Float])], file: String,
                            externalName: (String) -> String? = { $0 }, strict: Bool,
                            allowMissingGroups: Set<String> = ["head"],
                            isUnusedByDesign: (String) -> Bool = { _ in false }) throws(WeightLoadError) -> WeightLoadReport {
        var report = WeightLoadReport()
        var used = Set<String>()
        var copies: [(entry: ParameterEntry, buffer: UnsafeMutableBufferPointer<Float>, values: [Float])] = []
        let entries = store.parameterEntries.map { ($0, store.parameters) } + store.stateEntries.map { ($0, store.state) }
        for (entry, buffer) in entries {
            guard let name = externalName(entry.name), let tensor = tensors[name] else {
                // Adapters are new by design: a pretrained file predates them (B = 0 keeps the base model).
                if !allowMissingGroups.contains(entry.group) && !LowRankAdapters.isAdapterParameter(entry.name) { report.missing.append(entry.name + (externalName(entry.name).map { " (\($0))" } ?? "")) }
                continue
            }
            used.insert(name)
            guard tensor.shape == entry.shape else {
                // A new head replaces the pretrained one (1000 ImageNet classes → the task's): expected.
                if allowMissingGroups.contains(entry.group) {
                    report.replaced.append(entry.name)
                } else {
                    report.shapeMismatched.append("\(entry.name) (file \(tensor.shape), model \(entry.shape))")
                }
                continue
            }
            copies.append((entry, buffer, tensor.values))
            report.loaded.append(entry.name)
        }
        let unused = tensors.keys.filter { !used.contains($0) && !$0.hasSuffix("num_batches_tracked") }.sorted()
        report.ignored = unused.filter(isUnusedByDesign)
        report.unexpected = unused.filter { !isUnusedByDesign($0) }
        if strict && (!report.missing.isEmpty || !report.unexpected.isEmpty || !report.shapeMismatched.isEmpty) {
            throw WeightLoadError(file: file, report: report)
        }
        for copy in copies {
            copy.values.withUnsafeBufferPointer { source in
                (copy.buffer.baseAddress! + copy.entry.offset).update(from: source.baseAddress!, count: copy.entry.count)
            }
        }
        return report
    }
}
