// GradientExchange: sums the trainable gradients over ranks, and nothing else.
//
// Two implementations with identical results:
// - `PlainExchange`: one blocking all-reduce of the whole trainable range after backward (the reference);
// - `BucketedExchange`: the trainable range is cut at group boundaries into buckets of about
//   `bucketBytes`, from the head down. As soon as backward has finished the lowest group of a
//   bucket, that bucket's non-blocking all-reduce starts; between groups, pending reductions are
//   tested so MPI makes progress while backward computes. `finish` starts any bucket not started
//   yet, in the same head-first order, so a rank that ran no backward in a step (no samples left for
//   it) still joins every reduction.
// Both work on a gradient buffer and its group ranges, not on a model, so tests drive them with
// `LocalCollective` or under mpirun with plain buffers. Frozen groups are outside the trainable
// range, so they send zero bytes.
import ThawCollective

/// Sums the trainable range of a flat gradient buffer over all ranks.
public protocol GradientExchange: AnyObject {
    /// Bytes this rank contributed to the last exchange (4 × trainable elements with several ranks).
    var bytesLastStep: Int { get }
    /// Records each all-reduce from start to completion (nil: no trace).
    var timeline: Timeline? { get set }
    /// Prepares for a new trainable boundary. Call after every change of the trainable set.
    func prepare(firstTrainableGroup: Int)
    /// Called by backward when group `index` has its final gradients.
    func groupFinished(_ index: Int) throws
    /// Completes the step's exchange of `trainableRange`.
    func finish(trainableRange: Range<Int>) throws
}

/// The reference exchange: one blocking all-reduce of the trainable range after backward.
public final class PlainExchange: GradientExchange {
    private let collective: any Collective
    private let gradients: UnsafeMutableBufferPointer<Float>
    /// Bytes this rank contributed to the last exchange.
    public private(set) var bytesLastStep = 0
    /// Records the all-reduce (nil: no trace).
    public var timeline: Timeline?

    /// Creates a plain exchange of `gradients`.
    public init(collective: any Collective, gradients: UnsafeMutableBufferPointer<Float>) {
        self.collective = collective
        self.gradients = gradients
    }

    /// Nothing to prepare.
    public func prepare(firstTrainableGroup: Int) {}

    /// Nothing to do until backward ends.
    public func groupFinished(_ index: Int) throws {}

    /// One all-reduce of `trainableRange`.
    public func finish(trainableRange: Range<Int>) throws {
        // A single rank exchanges nothing.
        bytesLastStep = collective.worldSize > 1 ? trainableRange.count * MemoryLayout<Float>.stride : 0
        guard !trainableRange.isEmpty else { return }
        try timeline.span("all-reduce", category: "exchange", arguments: ["bytes": bytesLastStep]) {
            try collective.allReduceSum(UnsafeMutableBufferPointer(rebasing: gradients[trainableRange]))
        }
    }
}

/// The overlapped exchange: buckets of whole groups, head first, each reduced as soon as backward has finished it.
public final class BucketedExchange: GradientExchange {
    /// One bucket: a contiguous range of the gradient buffer covering whole groups.
    public struct Bucket: Equatable, Sendable {
        /// The lowest group in the bucket; its completion starts the bucket's reduction.
        public var lowestGroup: Int
        /// The element range in the flat gradient buffer.
        public var range: Range<Int>
    }

    private let collective: any Collective
    private let gradients: UnsafeMutableBufferPointer<Float>
    private let groupRanges: [Range<Int>]
    private let bucketElements: Int
    /// The buckets for the current trainable set, head first.
    public private(set) var buckets: [Bucket] = []
    private var pending: [PendingReduction] = []
    /// How many of `buckets` (head first) have started reducing this step.
    private var startedBuckets = 0
    /// Bytes this rank contributed to the last exchange.
    public private(set) var bytesLastStep = 0
    /// Records each bucket's all-reduce from its start to the first test or wait that found it done (nil: no trace).
    public var timeline: Timeline?
    /// With a timeline: when each started bucket began, until its span is recorded.
    private var bucketStarts: [UInt64?] = []

    /// Creates a bucketed exchange.
    /// - Parameters:
    ///   - collective: The ranks to sum over.
    ///   - gradients: The flat gradient buffer (it must outlive the exchange's reductions).
    ///   - groupRanges: Each group's element range in it, input side first.
    ///   - bucketBytes: The target bucket size.
    public init(collective: any Collective, gradients: UnsafeMutableBufferPointer<Float>, groupRanges: [Range<Int>], bucketBytes: Int) {
        self.collective = collective
        self.gradients = gradients
        self.groupRanges = groupRanges
        self.bucketElements = max(1, bucketBytes / MemoryLayout<Float>.stride)
    }

    /// Cuts the trainable groups into buckets, head first.
    public func prepare(firstTrainableGroup: Int) {
        buckets = []
        startedBuckets = 0
        var top = groupRanges.last?.upperBound ?? 0
        var index = groupRanges.count - 1
        while index >= firstTrainableGroup {
            let bottom = groupRanges[index].lowerBound
            if top - bottom >= bucketElements || index == firstTrainableGroup {
                if top > bottom { buckets.append(Bucket(lowestGroup: index, range: bottom..<top)) }
                top = bottom
            }
            index -= 1
        }
    }

    /// Starts the bucket whose lowest group is `index`, and lets earlier buckets progress.
    public func groupFinished(_ index: Int) throws {
        for (bucket, reduction) in pending.enumerated() {
            if try reduction.test() { recordCompletion(bucket) }
        }
        if startedBuckets < buckets.count, buckets[startedBuckets].lowestGroup == index { try startNextBucket() }
    }

    private func startNextBucket() throws {
        let buffer = UnsafeMutableBufferPointer(rebasing: gradients[buckets[startedBuckets].range])
        if let timeline { bucketStarts.append(timeline.now()) }
        pending.append(try collective.startAllReduceSum(buffer))
        startedBuckets += 1
    }

    /// Records bucket `bucket`'s span the first time it is seen complete.
    private func recordCompletion(_ bucket: Int) {
        guard let timeline, bucket < bucketStarts.count, let start = bucketStarts[bucket] else { return }
        bucketStarts[bucket] = nil
        let range = buckets[bucket].range
        timeline.record("all-reduce bucket \(bucket)", category: "exchange", from: start, to: timeline.now(),
                        arguments: ["bucket": bucket, "bytes": range.count * MemoryLayout<Float>.stride, "lowest_group": buckets[bucket].lowestGroup])
    }

    /// Starts the buckets backward did not reach (all of them on a rank that ran no backward this
    /// step) and waits for every bucket.
    public func finish(trainableRange: Range<Int>) throws {
        bytesLastStep = collective.worldSize > 1 ? trainableRange.count * MemoryLayout<Float>.stride : 0
        while startedBuckets < buckets.count { try startNextBucket() }
        for (bucket, reduction) in pending.enumerated() {
            try reduction.wait()
            recordCompletion(bucket)
        }
        pending.removeAll(keepingCapacity: true)
        bucketStarts.removeAll(keepingCapacity: true)
        startedBuckets = 0
    }
}
