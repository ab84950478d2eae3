// RunObserver: how the trainer tells the rest of the world what happens, as typed events.
//
// The trainer calls every observer at three points of its straight line: after a plan is applied
// (each epoch boundary), after each optimizer step, and after each finished epoch (evaluated and
// checkpointed). The console, the metrics file, the per-rank log and the coordinator are observers;
// so are tests. A step's observer may answer with an operator command: rank 0's answer is agreed
// by every rank in the same step (`StepAgreement`), so all ranks stop at the same step.
import ThawPlan

/// One finished optimizer step, as observers see it.
public struct StepReport: Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// The step within the epoch, counted from 1.
    public var step: Int
    /// Steps in the epoch.
    public var steps: Int
    /// Optimizer steps of the run so far, this one included.
    public var globalStep: Int
    /// This rank's mean training loss so far in the epoch.
    public var loss: Double
    /// Training samples per second over all ranks, so far in the epoch.
    public var samplesPerSecond: Double
    /// Gradient bytes this rank sent in the step (4 × trainable parameters with several ranks).
    public var bytesExchanged: Int
}

/// Something that follows a run as it trains: every method has a default that does nothing.
public protocol RunObserver: AnyObject {
    /// A plan took effect at the start of an epoch, before optimizer step `step` of the run.
    func planApplied(_ plan: TrainingPlan, atStep step: Int)
    /// An optimizer step finished. Rank 0's answer, if any, is agreed by every rank: `.stop` ends the
    /// run after this step, with a checkpoint.
    func stepFinished(_ report: StepReport) -> OperatorCommand?
    /// An epoch finished: trained, evaluated, and checkpointed at `checkpoint` if one was written.
    func epochFinished(_ record: EpochRecord, checkpoint: String?)
    /// A note for people (the frozen-prefix cache built, dropped, or off and why).
    func note(_ text: String)
}

extension RunObserver {
    /// Does nothing.
    public func planApplied(_ plan: TrainingPlan, atStep step: Int) {}
    /// Answers nothing.
    public func stepFinished(_ report: StepReport) -> OperatorCommand? { nil }
    /// Does nothing.
    public func epochFinished(_ record: EpochRecord, checkpoint: String?) {}
    /// Does nothing.
    public func note(_ text: String) {}
}

extension [any RunObserver] {
    /// Tells every observer; the first command any of them answers.
    func stepFinished(_ report: StepReport) -> OperatorCommand? {
        var command: OperatorCommand?
        for observer in self { command = command ?? observer.stepFinished(report) }
        return command
    }
}
