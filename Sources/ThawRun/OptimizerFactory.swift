// OptimizerFactory: the configuration's optimizer and schedule sections → ThawOptim values.
import ThawTrainer
import ThawOptim

extension UpdateRule {
    /// The update rule an optimizer section describes.
    public init(_ section: OptimizerSection) {
        switch section.kind {
        case .sgd:
            self = .sgd(momentum: Double(section.momentum), nesterov: section.nesterov)
        case .adamw:
            self = .adamW(beta1: Double(section.beta1), beta2: Double(section.beta2), epsilon: Double(section.epsilon))
        }
    }
}

extension LearningRateSchedule {
    /// The schedule a schedule section describes.
    public init(_ section: ScheduleSection) {
        switch section.kind {
        case .constant: self = .constant
        case .warmup: self = section.warmupSteps > 0 ? .linearWarmup(steps: section.warmupSteps) : .constant
        case .cosine: self = .cosine(warmupSteps: section.warmupSteps, finalFraction: section.finalFraction)
        case .oneCycle: self = .oneCycle(peakFraction: section.peakFraction)
        case .slantedTriangular: self = .slantedTriangular(cutFraction: section.peakFraction, ratio: section.ratio)
        }
    }
}
