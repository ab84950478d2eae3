// GradientReversal: the layer behind domain-adversarial training (DANN, Ganin & Lempitsky 2015).
//
// Forward is the identity; backward multiplies the gradient by −λ. Put in front of a domain
// classifier, it lets that classifier learn to tell the domains apart while the features below it
// are pushed to make them indistinguishable. λ follows training progress p ∈ [0, 1] with the DANN
// schedule λ_p = λ_max · (2 / (1 + exp(−γ·p)) − 1): 0 at the start, when the domain classifier is
// still noise, rising to λ_max.
import Foundation
import ThawKernels

/// A layer whose behaviour follows the fraction of training done. The trainer tells every such
/// layer (found by traversing the model) the progress before each optimizer step; the value is a
/// function of the global step alone, so every rank and a resumed run see the same one.
public protocol ProgressScheduledLayer: AnyObject {
    /// Sets the fraction of training done, in [0, 1].
    func setTrainingProgress(_ fraction: Double)
}

/// The DANN schedule of the gradient-reversal coefficient.
public struct ReversalSchedule: Sendable, Equatable, Codable {
    /// γ: how fast λ rises (10 in the DANN paper).
    public var gamma: Double
    /// λ_max: the value λ approaches at the end of training.
    public var maximum: Double

    /// Creates a schedule.
    public init(gamma: Double = 10, maximum: Double = 1) {
        self.gamma = gamma
        self.maximum = maximum
    }

    /// λ_p = λ_max · (2 / (1 + exp(−γ·p)) − 1) at progress `fraction` (clamped to [0, 1]).
    public func coefficient(progress fraction: Double) -> Double {
        let p = min(max(fraction, 0), 1)
        return maximum * (2 / (1 + exp(-gamma * p)) - 1)
    }
}

/// Identity forward; backward returns −λ × the output gradient. No parameters.
public final class GradientReversal: Layer, ProgressScheduledLayer {
    /// How λ follows training progress.
    public let schedule: ReversalSchedule
    /// The current λ (the schedule's value at the last progress set; 0 before any).
    public private(set) var coefficient: Float
    private let inputGradient = Tensor(shape: [0])
    private var inputShape: [Int]?

    /// Creates the layer with λ = 0 until progress is set.
    public init(schedule: ReversalSchedule = ReversalSchedule()) {
        self.schedule = schedule
        self.coefficient = Float(schedule.coefficient(progress: 0))
    }

    /// Sets λ from the schedule.
    public func setTrainingProgress(_ fraction: Double) {
        coefficient = Float(schedule.coefficient(progress: fraction))
    }

    /// Sets λ directly (tests, or a fixed coefficient).
    public func setCoefficient(_ value: Float) { coefficient = value }

    /// Any non-empty shape, unchanged.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard !inputShape.isEmpty else { throw ShapeError(layer: "GradientReversal", shape: inputShape, expected: "[N, ...]") }
        return inputShape
    }

    /// Returns the input itself: the identity needs no copy, and later layers only read it.
    public func forward(_ x: Tensor, mode: LayerMode) -> Tensor {
        inputShape = mode == .training ? x.shape : nil
        return x
    }

    /// dX = −λ · dY.
    public func backward(_ dY: Tensor, computeInputGradient: Bool) -> Tensor? {
        guard let shape = inputShape else { preconditionFailure("GradientReversal.backward without a training forward") }
        guard computeInputGradient else { return nil }
        inputGradient.resize(to: shape)
        let scale = -coefficient
        let source = dY.data, destination = inputGradient.data
        for i in 0..<inputGradient.count { destination[i] = scale * source[i] }
        return inputGradient
    }
}
