// Objective: what training minimizes, given the model's output rows for one local batch.
//
// The trainer computes the loss and d(loss)/d(output) through one `TrainingObjective`, chosen once
// from the configuration (`TrainingObjectives.make`), so the loop has no mode flags:
// - `ClassificationObjective`: softmax cross-entropy over all output columns.
// - `DomainAdversarialObjective` (DANN): cross-entropy over the label columns for labelled rows,
//   plus cross-entropy over the 2 domain columns (see "Note: domain-adversarial output") for
//   every real row. The gradient reversal itself is a layer in the model.
//
// Both terms are sums divided by *global* counts of the step (labelled samples for the label term,
// real samples for the domain term), so summing gradients over ranks gives one process's gradient.
import ThawCollective
import ThawKernels

/// One local batch's per-row targets, as BatchAssembler fills them.
public struct BatchTargets {
    /// Class labels (0 for padding and unlabelled rows, whose labels are never read).
    public var labels: UnsafePointer<Int32>
    /// 1 for a labelled real row, else 0.
    public var labelWeights: UnsafePointer<Float>
    /// 1 for a real row, 0 for padding.
    public var sampleWeights: UnsafePointer<Float>
    /// 0 source, 1 target.
    public var domains: UnsafePointer<Int32>
    /// The number of rows.
    public var rows: Int

    /// Creates the targets of `rows` rows.
    public init(labels: UnsafePointer<Int32>, labelWeights: UnsafePointer<Float>, sampleWeights: UnsafePointer<Float>,
                domains: UnsafePointer<Int32>, rows: Int) {
        self.labels = labels
        self.labelWeights = labelWeights
        self.sampleWeights = sampleWeights
        self.domains = domains
        self.rows = rows
    }
}

/// The global counts of one optimizer step that its summed losses are divided by.
public struct StepNormalizers: Equatable, Sendable {
    /// Labelled samples in the step over all ranks (the label loss's divisor).
    public var labelled: Float
    /// Real samples in the step over all ranks (the domain loss's divisor).
    public var samples: Float

    /// Creates normalizers; each is used as at least 1.
    public init(labelled: Float, samples: Float) {
        self.labelled = labelled
        self.samples = samples
    }
}

/// The unnormalized sums of one batch, or of many: they add up, and sum over ranks.
public struct ObjectiveResult: Codable, Equatable, Sendable {
    /// Σ label weight × label cross-entropy.
    public var labelLossSum: Double = 0
    /// Σ label weight × [argmax of the label columns == label].
    public var labelCorrect: Double = 0
    /// Σ label weight.
    public var labelled: Double = 0
    /// Σ domain cross-entropy over real rows (0 without a domain term).
    public var domainLossSum: Double = 0
    /// Real rows whose domain the domain columns predict.
    public var domainCorrect: Double = 0
    /// Real rows scored by the domain term (0 without one).
    public var domainRows: Double = 0
    /// Real rows (labelled or not).
    public var rows: Double = 0

    /// All zeros.
    public init() {}

    /// The sums as one list, in a fixed order (for an all-reduce).
    var values: [Double] { [labelLossSum, labelCorrect, labelled, domainLossSum, domainCorrect, domainRows, rows] }

    /// Sums from `values` (the order of ``values``; missing trailing entries are 0, as in older checkpoints).
    init(values: [Double]) {
        func at(_ index: Int) -> Double { index < values.count ? values[index] : 0 }
        labelLossSum = at(0); labelCorrect = at(1); labelled = at(2)
        domainLossSum = at(3); domainCorrect = at(4); domainRows = at(5); rows = at(6)
    }

    /// Adds another batch's sums.
    public static func += (total: inout ObjectiveResult, batch: ObjectiveResult) {
        total = ObjectiveResult(values: zip(total.values, batch.values).map { $0 + $1 })
    }

    /// These sums added over every rank (one all-reduce); every rank gets the same totals.
    public func summed(over collective: any Collective) throws -> ObjectiveResult {
        var values = self.values
        try values.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        return ObjectiveResult(values: values)
    }

    /// Mean label loss and label accuracy.
    public var labelEvaluation: Evaluation {
        Evaluation(loss: labelLossSum / max(labelled, 1), accuracy: labelCorrect / max(labelled, 1), samples: Int(labelled))
    }

    /// The domain classifier's loss and accuracy, when there is a domain term.
    public var domainEvaluation: Evaluation? {
        domainRows > 0 ? Evaluation(loss: domainLossSum / domainRows, accuracy: domainCorrect / domainRows, samples: Int(domainRows)) : nil
    }
}

/// What training minimizes.
public protocol TrainingObjective {
    /// The label columns at the start of each output row (evaluation reads these only).
    var labelColumns: Int { get }
    /// The output width the model must have.
    var outputWidth: Int { get }
    /// The loss sums of a batch and, when `outputGradient` is given, d(loss)/d(outputs) written into it
    /// (resized to the outputs' shape). Without a gradient only the label term is needed and computed.
    func evaluate(outputs: Tensor, targets: BatchTargets, normalizers: StepNormalizers, outputGradient: Tensor?) -> ObjectiveResult
}

/// Softmax cross-entropy of the labelled rows over the first `classes` of each `rowStride`-wide output
/// row, divided by the step's labelled count: the label term both objectives share.
func labelTerm(outputs: Tensor, targets: BatchTargets, classes: Int, labelSmoothing: Float, normalizers: StepNormalizers,
               outputGradient: Tensor?, rowStride: Int) -> ObjectiveResult {
    let sums = CrossEntropy.forwardBackward(
        logitsGradient: outputGradient?.data, logits: outputs.data, labels: targets.labels, weights: targets.labelWeights,
        rows: targets.rows, classes: classes, labelSmoothing: labelSmoothing, normalizer: max(normalizers.labelled, 1), rowStride: rowStride)
    var result = ObjectiveResult()
    result.labelLossSum = sums.lossSum
    result.labelCorrect = sums.correct
    result.labelled = sums.weightSum
    result.rows = Double(targets.rows)
    return result
}

/// Softmax cross-entropy over every output column, with label smoothing.
public struct ClassificationObjective: TrainingObjective {
    /// The classes (the output width).
    public let classes: Int
    /// Label smoothing ε.
    public let labelSmoothing: Float

    /// Creates the objective.
    public init(classes: Int, labelSmoothing: Float = 0) {
        self.classes = classes
        self.labelSmoothing = labelSmoothing
    }

    /// All columns are labels.
    public var labelColumns: Int { classes }
    /// The classes.
    public var outputWidth: Int { classes }

    /// Cross-entropy of labelled rows, divided by the step's labelled count.
    public func evaluate(outputs: Tensor, targets: BatchTargets, normalizers: StepNormalizers, outputGradient: Tensor?) -> ObjectiveResult {
        outputGradient?.resize(to: outputs.shape)
        return labelTerm(outputs: outputs, targets: targets, classes: classes, labelSmoothing: labelSmoothing, normalizers: normalizers,
                         outputGradient: outputGradient, rowStride: classes)
    }
}

/// DANN's objective: label cross-entropy on labelled rows plus domain cross-entropy on every real row.
///
/// Output rows are `[label logits (classes), domain logits (2)]`. The domain term is not weighted:
/// how strongly it shapes the features is the gradient-reversal coefficient λ, a layer in the model.
public struct DomainAdversarialObjective: TrainingObjective {
    /// The classes.
    public let classes: Int
    /// Label smoothing ε for the label term (the domain term has none).
    public let labelSmoothing: Float

    /// Creates the objective.
    public init(classes: Int, labelSmoothing: Float = 0) {
        self.classes = classes
        self.labelSmoothing = labelSmoothing
    }

    /// The first `classes` columns.
    public var labelColumns: Int { classes }
    /// Classes plus the 2 domain logits.
    public var outputWidth: Int { classes + 2 }

    /// Σ label CE / labelled + Σ domain CE / samples; gradients of both terms land in their own columns.
    public func evaluate(outputs: Tensor, targets: BatchTargets, normalizers: StepNormalizers, outputGradient: Tensor?) -> ObjectiveResult {
        let width = outputWidth
        outputGradient?.resize(to: outputs.shape)
        var result = labelTerm(outputs: outputs, targets: targets, classes: classes, labelSmoothing: labelSmoothing, normalizers: normalizers,
                               outputGradient: outputGradient, rowStride: width)
        guard let outputGradient else { return result }
        let domain = CrossEntropy.forwardBackward(
            logitsGradient: outputGradient.data + classes, logits: outputs.data + classes, labels: targets.domains,
            weights: targets.sampleWeights, rows: targets.rows, classes: 2, normalizer: max(normalizers.samples, 1), rowStride: width)
        result.domainLossSum = domain.lossSum
        result.domainCorrect = domain.correct
        result.domainRows = domain.weightSum
        return result
    }
}
