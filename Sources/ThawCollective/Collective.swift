// Collective: the few group operations data-parallel training needs, behind one small protocol.
//
// Two implementations: MPICollective (Open MPI, one process per rank) and LocalCollective
// (one in-process rank, for unit tests and single-process runs). Every operation is collective:
// all ranks must call it, in the same order, with buffers of the same length.
//
// Note: one thread. A collective is used from the thread that created it; MPI is initialized
// without thread support, so neither implementation is Sendable.

/// A group of `worldSize` ranks that sum buffers, share bytes and check that they agree.
///
/// All methods are collective: every rank calls them in the same order with same-length buffers.
/// Errors are thrown as ``CollectiveError``.
public protocol Collective: AnyObject {
    /// This process's index in the group, in `0..<worldSize`.
    var rank: Int { get }
    /// The number of ranks in the group.
    var worldSize: Int { get }

    /// Replaces `buffer` on every rank with the element-wise sum of all ranks' buffers.
    /// - Parameter buffer: The values to sum, overwritten in place; same length on every rank.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws

    /// Replaces `buffer` on every rank with the element-wise sum of all ranks' buffers (for metrics).
    /// - Parameter buffer: The values to sum, overwritten in place; same length on every rank.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws

    /// Copies `bytes` from rank `root` into `bytes` on every other rank.
    /// - Parameters:
    ///   - bytes: The source on `root`, the destination elsewhere; same length on every rank.
    ///   - root: The rank whose bytes are sent, in `0..<worldSize`.
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws

    /// Returns only when every rank has called it.
    func barrier() throws

    /// Starts summing `buffer` across ranks in place and returns at once.
    ///
    /// The caller's buffer must stay allocated, and must be neither read nor written, until the
    /// returned reduction's `test()` returns true or `wait()` returns. Use allocated memory, never
    /// an Array's temporary pointer.
    /// - Parameter buffer: The values to sum, overwritten in place; same length on every rank.
    /// - Returns: A handle to poll with `test()` or finish with `wait()`.
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction

    /// Checks that every rank holds the same `value`; throws the same error on every rank if not.
    ///
    /// Use it before the first all-reduce after a change every rank must apply identically
    /// (the trainable set, the parameter layout): a mismatch becomes a clear error, never a hang
    /// or a silently wrong sum.
    /// - Parameters:
    ///   - value: A hash of the thing that must agree.
    ///   - what: A short name for it, used in the error (for example "trainable set version 3").
    /// - Throws: ``CollectiveError/disagreement(what:rank:values:)`` naming each rank's value.
    func verifyAgreement(on value: UInt64, describing what: String) throws
}

/// An all-reduce in flight, returned by ``Collective/startAllReduceSum(_:)``.
///
/// Poll it with `test()` between pieces of compute (Open MPI makes progress only inside MPI calls),
/// or block with `wait()`. Finish every reduction you start: dropping an unfinished one blocks in
/// `deinit` until it completes, so that MPI never writes into freed memory.
public final class PendingReduction {
    /// A number unique among the reductions started by one collective, for logs.
    public let id: Int
    /// Whether the reduction has finished and its buffer holds the sum.
    public private(set) var isComplete: Bool
    /// Advances the reduction; blocks until done when its argument is true; returns completion.
    private let progress: ((_ block: Bool) throws -> Bool)?

    /// Creates a handle around an implementation's progress function.
    /// - Parameters:
    ///   - id: The reduction's number.
    ///   - progress: Advances the operation, blocking until done when its argument is true,
    ///     and returns whether it has completed. Nil for a reduction that is already complete.
    public init(id: Int, progress: ((_ block: Bool) throws -> Bool)?) {
        self.id = id
        self.progress = progress
        self.isComplete = progress == nil
    }

    /// Makes progress without blocking and returns whether the reduction has finished.
    public func test() throws -> Bool {
        if isComplete { return true }
        guard let progress else { return true }
        isComplete = try progress(false)
        return isComplete
    }

    /// Blocks until the reduction has finished.
    public func wait() throws {
        if isComplete { return }
        guard let progress else { return }
        isComplete = try progress(true)
    }

    deinit {
        if !isComplete, let progress { _ = try? progress(true) }
    }
}

/// A failed collective operation, with the rank and the call it happened in.
public enum CollectiveError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code.
    case mpiCall(call: String, rank: Int, code: Int32, message: String)
    /// Ranks hold different values of something that must agree; `values[r]` is rank r's value.
    case disagreement(what: String, rank: Int, values: [UInt64])
    /// An argument was invalid on this rank (such as a broadcast root out of range).
    case invalidArgument(call: String, rank: Int, reason: String)
    /// The collective was used after `finalize()`.
    case finalized(call: String)

    /// One line naming the call, the rank and what went wrong.
    public var description: String {
        switch self {
        case .mpiCall(let call, let rank, let code, let message):
            return "rank \(rank): \(call) failed with MPI error \(code): \(message)"
        case .disagreement(let what, let rank, let values):
            return "rank \(rank): ranks disagree on \(what): " + CollectiveError.groupByValue(values)
        case .invalidArgument(let call, let rank, let reason):
            return "rank \(rank): \(call): \(reason)"
        case .finalized(let call):
            return "\(call): MPI has already been finalized"
        }
    }

    /// "0x… on ranks 0, 2; 0x… on rank 1", values in order of first appearance.
    static func groupByValue(_ values: [UInt64]) -> String {
        var order: [UInt64] = []
        var ranks: [UInt64: [Int]] = [:]
        for (rank, value) in values.enumerated() {
            if ranks[value] == nil { order.append(value) }
            ranks[value, default: []].append(rank)
        }
        return order.map { value in
            let holders = ranks[value] ?? []
            let hex = "0x" + String(value, radix: 16)
            return "\(hex) on rank\(holders.count == 1 ? "" : "s") " + holders.map(String.init).joined(separator: ", ")
        }.joined(separator: "; ")
    }
}
