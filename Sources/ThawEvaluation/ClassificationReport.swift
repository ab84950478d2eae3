// ClassificationReport: accuracy, per-class precision, recall and F1, and the confusion matrix of
// a model on a dataset, as `thaw eval` prints it (a table, or JSON).
import Foundation
import ThawRun
import ThawTrainer
import ThawData
import ThawKernels
import ThawNN

/// One class's scores.
public struct ClassScores: Codable, Equatable, Sendable {
    /// The class index.
    public var classIndex: Int
    /// Of the samples predicted as this class, the fraction that are (0 when none were predicted).
    public var precision: Double
    /// Of the samples of this class, the fraction predicted as it (0 when the class has none).
    public var recall: Double
    /// The harmonic mean of precision and recall (0 when both are 0).
    public var f1: Double
    /// Samples of this class.
    public var support: Int

    enum CodingKeys: String, CodingKey {
        case classIndex = "class", precision, recall, f1, support
    }
}

/// The evaluation of a classifier on a labelled dataset.
public struct ClassificationReport: Codable, Equatable, Sendable {
    /// Samples evaluated.
    public var samples: Int
    /// Fraction classified correctly.
    public var accuracy: Double
    /// Mean cross-entropy loss.
    public var loss: Double
    /// Unweighted mean of the per-class F1 scores over classes with support.
    public var macroF1: Double
    /// Per-class scores, by class index.
    public var classes: [ClassScores]
    /// `confusion[true][predicted]` counts.
    public var confusion: [[Int]]

    enum CodingKeys: String, CodingKey {
        case samples, accuracy, loss, classes, confusion
        case macroF1 = "macro_f1"
    }

    /// Derives every score from a confusion matrix (`confusion[true][predicted]`) and a summed loss.
    public init(confusion: [[Int]], lossSum: Double) {
        let classCount = confusion.count
        self.confusion = confusion
        samples = confusion.reduce(0) { $0 + $1.reduce(0, +) }
        let correct = (0..<classCount).reduce(0) { $0 + confusion[$1][$1] }
        accuracy = samples > 0 ? Double(correct) / Double(samples) : 0
        loss = samples > 0 ? lossSum / Double(samples) : 0
        classes = (0..<classCount).map { k in
            let truePositives = Double(confusion[k][k])
            let predicted = Double((0..<classCount).reduce(0) { $0 + confusion[$1][k] })
            let support = confusion[k].reduce(0, +)
            let precision = predicted > 0 ? truePositives / predicted : 0
            let recall = support > 0 ? truePositives / Double(support) : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            return ClassScores(classIndex: k, precision: precision, recall: recall, f1: f1, support: support)
        }
        let present = classes.filter { $0.support > 0 }
        macroF1 = present.isEmpty ? 0 : present.reduce(0) { $0 + $1.f1 } / Double(present.count)
    }

    /// Runs `model` in inference mode over every sample of `dataset`, `batchSize` at a time.
    /// - Parameter outputWidth: The model's output width; nil means `classCount`. A domain-adversarial
    ///   model has `classCount + 2` outputs, of which only the first `classCount` (the labels) are read.
    public static func evaluate(model: Model, dataset: any Dataset, classCount: Int, outputWidth: Int? = nil,
                                batchSize: Int = 64) throws -> ClassificationReport {
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classCount), count: classCount)
        var lossSum = 0.0
        let input = Tensor(shape: [batchSize] + dataset.sampleShape)
        let labels = UnsafeMutableBufferPointer<Int32>.allocate(capacity: batchSize)
        let weights = UnsafeMutableBufferPointer<Float>.allocate(capacity: batchSize)
        defer { labels.deallocate(); weights.deallocate() }
        var start = 0
        while start < dataset.count {
            let indices = Array(start..<min(start + batchSize, dataset.count))
            input.resize(to: [indices.count] + dataset.sampleShape)
            BatchAssembler.fill(from: dataset, indices: indices.map { Optional($0) }, features: input.data, labels: labels, weights: weights)
            let logits = try model.forward(input, training: false)
            let width = logits.shape.last ?? 1
            guard width == (outputWidth ?? classCount) else {
                throw EvaluationError.outputWidth(model: width, expected: outputWidth ?? classCount, classes: classCount)
            }
            let result = CrossEntropy.forwardBackward(logitsGradient: nil, logits: logits.data, labels: labels.baseAddress!,
                                                      weights: weights.baseAddress!, rows: indices.count, classes: classCount,
                                                      labelSmoothing: 0, normalizer: 1, rowStride: width)
            lossSum += result.lossSum
            for row in 0..<indices.count {
                let scores = logits.data + row * width
                var best = 0
                for k in 1..<classCount where scores[k] > scores[best] { best = k }
                let truth = Int(labels[row])
                guard truth >= 0, truth < classCount else {
                    throw EvaluationError.label(sample: indices[row], label: truth, classes: classCount)
                }
                confusion[truth][best] += 1
            }
            start += batchSize
        }
        return ClassificationReport(confusion: confusion, lossSum: lossSum)
    }

    /// The report as a table; `names` labels the classes when given.
    public func table(names: [String]? = nil) -> String {
        func name(_ k: Int) -> String {
            let text = names.flatMap { k < $0.count ? $0[k] : nil } ?? String(k)
            return text.count > 14 ? String(text.prefix(14)) : text + String(repeating: " ", count: 14 - text.count)
        }
        var lines = [String(format: "%d samples   accuracy %.2f%%   loss %.4f   macro F1 %.4f", samples, accuracy * 100, loss, macroF1)]
        lines.append("class           precision  recall     F1   support")
        for scores in classes {
            lines.append(name(scores.classIndex) + String(format: "  %9.4f  %6.4f  %6.4f  %7d", scores.precision, scores.recall, scores.f1, scores.support))
        }
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        let width = max(5, String(confusion.flatMap { $0 }.max() ?? 0).count + 1)
        lines.append(String(repeating: " ", count: 6) + (0..<confusion.count).map { String(repeating: " ", count: width - String($0).count) + String($0) }.joined())
        for (k, row) in confusion.enumerated() {
            lines.append(String(repeating: " ", count: 4 - String(k).count) + String(k) + "  "
                         + row.map { String(repeating: " ", count: width - String($0).count) + String($0) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}

/// A model or a dataset that an evaluation cannot score.
public enum EvaluationError: Error, CustomStringConvertible, Equatable {
    /// The model's output row has another width than the report expects.
    case outputWidth(model: Int, expected: Int, classes: Int)
    /// A sample's label is not one of the model's classes.
    case label(sample: Int, label: Int, classes: Int)
    /// A comparison needs a test set.
    case noTestSet

    /// What does not fit, naming the sample or the width.
    public var description: String {
        switch self {
        case .outputWidth(let model, let expected, let classes):
            return "the model has \(model) outputs but the report is for \(classes) classes" + (expected != classes ? " (\(expected) outputs)" : "")
        case .label(let sample, let label, let classes):
            return "sample \(sample) has label \(label), outside the model's \(classes) classes"
        case .noTestSet:
            return "thaw compare needs a test set to compare on (data.test_features for npy data)"
        }
    }
}
