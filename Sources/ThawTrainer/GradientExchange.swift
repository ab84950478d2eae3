// GradientExchange: sums the trainable gradients over ranks, and nothing else.
//
// Two paths with identical results:
// - plain: one blocking all-reduce of the whole trainable range after backward (the reference);
// - bucketed: the trainable range is cut at group boundaries into buckets of about
//   `bucketBytes`, from the head down. As soon as backward has finished the lowest group
//   of a bucket, that bucket's non-blocking all-reduce starts; between groups, pending
//   reductions are tested so MPI makes progress while backward computes. `finish` starts any
//   bucket not started yet, in the same head-first order, so a rank that ran no backward in a
//   step (no samples left for it) still joins every reduction.
// Frozen groups are outside the trainable range, so they send zero bytes.
import ThawCollective
import ThawNN

/// Sums the trainable gradient range over all ranks, either in one call or in overlapped buckets.
public final class GradientExchange {
    /// One bucket: a contiguous range of the gradient buffer covering whole groups.
    public struct Bucket: Equatable, Sendable {
        /// The lowest group in the bucket; its completion starts the bucket's reduction.
        public var lowestGroup: Int
        /// The element range in the flat gradient buffer.
        public var range: Range<Int>
    }

    private let collective: any Collective
    private let store: ParameterStore
    private let mode: ExchangeMode
    private let bucketElements: Int
    /// The buckets for the current trainable set, head first.
    public private(set) var buckets: [Bucket] = []
    private var pending: [PendingReduction] = []
    /// How many of `buckets` (head first) have started reducing this step.
    private var startedBuckets = 0
    /// Bytes this rank contributed to the last exchange (4 × trainable elements).
    public private(set) var bytesLastStep = 0

    /// Creates an exchange for a model's store.
    /// - Parameters:
    ///   - collective: The ranks to sum over.
    ///   - store: The flat buffers.
    ///   - mode: Plain or bucketed.
    ///   - bucketBytes: The target bucket size for the bucketed path.
    public init(collective: any Collective, store: ParameterStore, mode: ExchangeMode, bucketBytes: Int) {
        self.collective = collective
        self.store = store
        self.mode = mode
        self.bucketElements = max(1, bucketBytes / MemoryLayout<Float>.stride)
    }

    /// Rebuilds the buckets for a new trainable boundary. Call after every change of the trainable set.
    public func prepare(firstTrainableGroup: Int) {
        buckets = []
        startedBuckets = 0
        var top = store.parameterCount
        var index = store.groupRanges.count - 1
        while index >= firstTrainableGroup {
            let bottom = store.groupRanges[index].lowerBound
            if top - bottom >= bucketElements || index == firstTrainableGroup {
                if top > bottom { buckets.append(Bucket(lowestGroup: index, range: bottom..<top)) }
                top = bottom
            }
            index -= 1
        }
    }

    /// Called by backward when group `index` has final gradients: starts that bucket, and lets
    /// earlier buckets progress.
    public func groupFinished(_ index: Int) throws {
        guard mode == .bucketed else { return }
        for reduction in pending { _ = try reduction.test() }
        if startedBuckets < buckets.count, buckets[startedBuckets].lowestGroup == index { try startNextBucket() }
    }

    /// Starts the next bucket's non-blocking all-reduce.
    private func startNextBucket() throws {
        let buffer = UnsafeMutableBufferPointer(rebasing: store.gradients[buckets[startedBuckets].range])
        pending.append(try collective.startAllReduceSum(buffer))
        startedBuckets += 1
    }

    /// Completes the exchange: starts the buckets backward did not reach (all of them on a rank that
    /// ran no backward this step) and waits for every bucket, or runs the one plain all-reduce.
    /// - Parameter trainableRange: The range to sum on the plain path.
    public func finish(trainableRange: Range<Int>) throws {
        // A single rank exchanges nothing.
        bytesLastStep = collective.worldSize > 1 ? trainableRange.count * MemoryLayout<Float>.stride : 0
        switch mode {
        case .plain:
            guard !trainableRange.isEmpty else { return }
            try collective.allReduceSum(UnsafeMutableBufferPointer(rebasing: store.gradients[trainableRange]))
        case .bucketed:
            while startedBuckets < buckets.count { try startNextBucket() }
            for reduction in pending { try reduction.wait() }
            pending.removeAll(keepingCapacity: true)
            startedBuckets = 0
        }
    }
}
