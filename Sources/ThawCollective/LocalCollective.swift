// LocalCollective: a group of one rank inside this process.
//
// With one rank a sum is the buffer itself, a broadcast copies nothing and everyone agrees,
// so every operation is an identity. Used by unit tests and single-process training.

/// A one-rank collective (rank 0 of 1) whose operations leave their buffers unchanged.
public final class LocalCollective: Collective {
    /// Always 0.
    public let rank = 0
    /// Always 1.
    public let worldSize = 1
    private var nextReductionID = 0

    /// Creates a one-rank group.
    public init() {}

    /// Leaves `buffer` unchanged: the sum over one rank.
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}

    /// Leaves `buffer` unchanged: the sum over one rank.
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}

    /// Leaves `bytes` unchanged; `root` must be 0.
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard root == 0 else {
            throw CollectiveError.invalidArgument(call: "broadcast", rank: 0, reason: "root \(root) is not in 0..<1")
        }
    }

    /// Returns at once.
    public func barrier() throws {}

    /// Returns an already completed reduction; `buffer` is unchanged.
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction {
        nextReductionID += 1
        return PendingReduction(id: nextReductionID, progress: nil)
    }

    /// Always passes: one rank agrees with itself.
    public func verifyAgreement(on value: UInt64, describing what: String) throws {}
}
