// DomainMixture: labelled source samples and unlabelled target samples as one training set, for
// domain adaptation. Even indices are source samples and odd indices target samples, each domain
// cycled to the length of the longer one, so a shuffled batch holds about as many of each and the
// existing sampler, sharding and padding work unchanged.
//
// Note: target labels. The mixture never calls `label` on the target dataset: target rows report
// `isLabelled == false` and label 0, so no code path can train on them (a test counts the calls).

/// Source and target samples interleaved; only source samples are labelled.
public struct DomainMixture<Source: Dataset, Target: Dataset>: Dataset {
    /// The labelled source-domain samples.
    public let source: Source
    /// The target-domain samples; their labels are never read.
    public let target: Target

    /// Mixes `source` and `target`, which must have the same sample shape and at least one sample each.
    public init(source: Source, target: Target) {
        precondition(source.sampleShape == target.sampleShape,
                     "DomainMixture: source samples \(source.sampleShape) and target samples \(target.sampleShape) differ")
        precondition(source.count > 0 && target.count > 0, "DomainMixture: both domains need samples")
        self.source = source
        self.target = target
    }

    /// Twice the larger domain: every sample of the larger one once, the smaller one cycled.
    public var count: Int { 2 * max(source.count, target.count) }
    /// The common sample shape.
    public var sampleShape: [Int] { source.sampleShape }
    /// The source's classes.
    public var classCount: Int { source.classCount }

    /// Copies source sample `(index / 2) % source.count` (even index) or the target's (odd index).
    public func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        if index % 2 == 0 {
            source.copySample((index / 2) % source.count, into: destination)
        } else {
            target.copySample((index / 2) % target.count, into: destination)
        }
    }

    /// The source label for even indices; 0 for target samples (their labels are never read).
    public func label(_ index: Int) -> Int32 {
        index % 2 == 0 ? source.label((index / 2) % source.count) : 0
    }

    /// Source samples are labelled (if the source says so); target samples never are.
    public func isLabelled(_ index: Int) -> Bool {
        index % 2 == 0 && source.isLabelled((index / 2) % source.count)
    }

    /// 0 for source samples, 1 for target samples.
    public func domain(_ index: Int) -> Int32 { Int32(index % 2) }
}
