// BatchAssembler: copies the samples of a local batch into caller-owned batch buffers.
//
// A local batch is a list of dataset indices with nil padding (from ShardedSampler or
// EvaluationSharder). Row i of the feature buffer gets sample indices[i]; its weight is 1.
// Padding rows are zero-filled, get label 0 (a valid class, so loss kernels never index out of
// range) and weight 0, so they add nothing to losses, gradients or metrics.
// An unlabelled sample (a target-domain sample in domain adaptation) is a real row, weight 1, but
// its label is never read: it gets label 0 and label weight 0, so it adds nothing to the label loss.

/// Fills batch buffers from a dataset and a padded list of indices.
public enum BatchAssembler {
    /// Copies the samples at `indices` into `features`, `labels` and `weights`, row by row.
    /// - Parameters:
    ///   - dataset: Where the samples come from.
    ///   - indices: One entry per row: a dataset index, or nil for a padding row.
    ///   - features: Room for `indices.count * dataset.sampleSize` values, laid out [row, sampleShape...].
    ///   - labels: Room for `indices.count` labels.
    ///   - weights: Room for `indices.count` weights: 1 for a real row, 0 for padding.
    ///   - labelWeights: Optional room for `indices.count` label weights: 1 for a labelled real row, else 0.
    ///   - domains: Optional room for `indices.count` domains (0 source, 1 target; 0 for padding).
    /// - Returns: The number of real (non-padding) rows.
    @discardableResult
    public static func fill(
        from dataset: some Dataset, indices: [Int?], features: UnsafeMutablePointer<Float>,
        labels: UnsafeMutableBufferPointer<Int32>, weights: UnsafeMutableBufferPointer<Float>,
        labelWeights: UnsafeMutableBufferPointer<Float>? = nil, domains: UnsafeMutableBufferPointer<Int32>? = nil
    ) -> Int {
        precondition(labels.count >= indices.count && weights.count >= indices.count
                     && (labelWeights?.count ?? indices.count) >= indices.count && (domains?.count ?? indices.count) >= indices.count,
                     "label and weight buffers hold \(labels.count) and \(weights.count), need \(indices.count)")
        let sampleSize = dataset.sampleSize
        for (row, index) in indices.enumerated() {
            let destination = features + row * sampleSize
            if let index { dataset.copySample(index, into: destination) } else { destination.update(repeating: 0, count: sampleSize) }
        }
        return fillTargets(from: dataset, indices: indices, labels: labels, weights: weights, labelWeights: labelWeights, domains: domains)
    }

    /// Fills only the target buffers of `fill(from:indices:features:labels:weights:labelWeights:domains:)`
    /// (for batches whose features come from elsewhere, such as the frozen-prefix cache).
    /// - Returns: The number of real (non-padding) rows.
    @discardableResult
    public static func fillTargets(
        from dataset: some Dataset, indices: [Int?], labels: UnsafeMutableBufferPointer<Int32>, weights: UnsafeMutableBufferPointer<Float>,
        labelWeights: UnsafeMutableBufferPointer<Float>? = nil, domains: UnsafeMutableBufferPointer<Int32>? = nil
    ) -> Int {
        var realCount = 0
        for (row, index) in indices.enumerated() {
            if let index {
                let labelled = dataset.isLabelled(index)
                labels[row] = labelled ? dataset.label(index) : 0
                weights[row] = 1
                labelWeights?[row] = labelled ? 1 : 0
                domains?[row] = dataset.domain(index)
                realCount += 1
            } else {
                labels[row] = 0
                weights[row] = 0
                labelWeights?[row] = 0
                domains?[row] = 0
            }
        }
        return realCount
    }
}
