// Prediction: a model's logits on every sample of a dataset, in batches, and the top classes of
// each sample by softmax probability. `thaw predict` writes the logits as NPY and the top classes
// as JSON; tests compare them with `thaw eval` and with a single forward pass.
import Foundation
import ThawRun
import ThawTrainer
import ThawData
import ThawKernels
import ThawNN

/// The logits of `count` samples over `classCount` outputs, row-major.
public struct Predictions: Sendable, Equatable {
    /// The logits, `[count, classCount]` row-major.
    public var logits: [Float]
    /// The number of samples.
    public var count: Int
    /// The number of outputs per sample.
    public var classCount: Int

    /// One class of a sample's ranking.
    public struct RankedClass: Sendable, Equatable, Codable {
        /// The class index.
        public var index: Int
        /// Its softmax probability.
        public var probability: Double
    }

    /// The `k` most probable classes of sample `row`, most probable first (ties keep class order).
    public func top(_ k: Int, row: Int) -> [RankedClass] {
        let start = row * classCount
        let values = logits[start..<(start + classCount)]
        let largest = values.max() ?? 0
        let exponentials = values.map { exp(Double($0 - largest)) }
        let total = exponentials.reduce(0, +)
        let ranked = exponentials.indices.sorted { exponentials[$0] > exponentials[$1] || (exponentials[$0] == exponentials[$1] && $0 < $1) }
        return ranked.prefix(k).map { RankedClass(index: $0, probability: exponentials[$0] / total) }
    }

    /// The most probable class of every sample.
    public var predictedClasses: [Int] { (0..<count).map { top(1, row: $0).first?.index ?? 0 } }

    /// Runs `model` in inference mode over every sample of `dataset`, `batchSize` at a time.
    /// - Parameters:
    ///   - labelColumns: Keep only the first this many outputs of each sample (a domain-adversarial
    ///     model's output ends with its 2 domain logits, which are not classes); nil keeps all.
    /// - Throws: ``ShapeError`` when the samples do not fit the model.
    public static func evaluate(model: Model, dataset: any Dataset, batchSize: Int, labelColumns: Int? = nil) throws -> Predictions {
        precondition(batchSize > 0, "batch size must be positive")
        let sampleSize = dataset.sampleShape.reduce(1, *)
        let batch = Tensor(shape: [min(batchSize, max(dataset.count, 1))] + dataset.sampleShape)
        var logits: [Float] = []
        let modelOutputs = model.outputSampleShape.reduce(1, *)
        var classCount = min(labelColumns ?? modelOutputs, modelOutputs)
        logits.reserveCapacity(dataset.count * classCount)
        var start = 0
        while start < dataset.count {
            let rows = min(batchSize, dataset.count - start)
            batch.resize(to: [rows] + dataset.sampleShape)
            for row in 0..<rows { dataset.copySample(start + row, into: batch.data + row * sampleSize) }
            let output = try model.forward(batch, training: false)
            let outputs = output.count / rows
            classCount = min(labelColumns ?? outputs, outputs)
            for row in 0..<rows {
                logits.append(contentsOf: UnsafeBufferPointer(start: output.data + row * outputs, count: classCount))
            }
            start += rows
        }
        return Predictions(logits: logits, count: dataset.count, classCount: classCount)
    }
}
