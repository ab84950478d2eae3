// MPICollective: the Collective protocol over Open MPI's COMM_WORLD.
//
// MPI is initialized once per process (MPI_Init(nil, nil)); a binary started without mpirun
// becomes rank 0 of 1. COMM_WORLD is switched to MPI_ERRORS_RETURN so that failures come back
// as return codes, and every code goes through `check`, which turns it into a CollectiveError
// naming the call, the rank and MPI's own error string.
//
// Note: one thread. MPI is initialized without thread support, so all calls (including
// PendingReduction.test/wait) must come from the thread that created the collective.

import CMPI
import Foundation

/// The ``Collective`` protocol over Open MPI: one process per rank, launched by `mpirun`.
public final class MPICollective: Collective {
    /// This process's rank in COMM_WORLD.
    public let rank: Int
    /// The number of processes in COMM_WORLD.
    public let worldSize: Int
    private let communicator: MPI_Comm
    private var isFinalized = false
    private var nextReductionID = 0

    /// MPI counts are Int32; longer buffers are reduced in chunks of this many elements.
    static let maximumChunk = Int(Int32.max)

    /// Initializes MPI if this process has not yet done so and joins COMM_WORLD.
    /// - Throws: ``CollectiveError`` if MPI was already finalized or any setup call fails.
    public init() throws {
        var flag: Int32 = 0
        try MPICollective.check(MPI_Finalized(&flag), "MPI_Finalized", rank: -1)
        if flag != 0 { throw CollectiveError.finalized(call: "MPICollective.init") }
        try MPICollective.check(MPI_Initialized(&flag), "MPI_Initialized", rank: -1)
        if flag == 0 {
            try MPICollective.check(MPI_Init(nil, nil), "MPI_Init", rank: -1)
        }
        communicator = thaw_mpi_comm_world()
        try MPICollective.check(MPI_Comm_set_errhandler(communicator, thaw_mpi_errors_return()), "MPI_Comm_set_errhandler", rank: -1)
        var value: Int32 = 0
        try MPICollective.check(MPI_Comm_rank(communicator, &value), "MPI_Comm_rank", rank: -1)
        rank = Int(value)
        try MPICollective.check(MPI_Comm_size(communicator, &value), "MPI_Comm_size", rank: rank)
        worldSize = Int(value)
    }

    /// Shuts MPI down for this process (MPI_Finalize). Call once, after the last collective operation,
    /// on every rank; later operations throw ``CollectiveError/finalized(call:)``.
    public func finalize() throws {
        guard !isFinalized else { return }
        var flag: Int32 = 0
        try check(MPI_Finalized(&flag), "MPI_Finalized")
        isFinalized = true
        if flag == 0 { try check(MPI_Finalize(), "MPI_Finalize") }
    }

    /// Runs `body` as one job of MPI ranks and finalizes MPI after it. An error on a rank of several
    /// is printed with the rank (after `onFailure`, which may tell others) and aborts the whole job, so
    /// no other rank is left waiting in a collective; a single rank throws it. `exitCode` tells the
    /// code the aborted job exits with (launchers retry runtime failures, not configuration errors).
    public static func runJob<Result>(_ body: (MPICollective) throws -> Result,
                                      onFailure: (any Error, MPICollective) -> Void = { _, _ in },
                                      exitCode: (any Error) -> Int32 = { _ in 1 }) throws -> Result {
        let collective = try MPICollective()
        do {
            let result = try body(collective)
            try? collective.finalize()
            return result
        } catch {
            onFailure(error, collective)
            guard collective.worldSize > 1 else { throw error }
            FileHandle.standardError.write(Data("thaw: rank \(collective.rank) of \(collective.worldSize): error: \(error)\n".utf8))
            collective.abort(code: exitCode(error))
        }
    }

    /// Ends every rank of the job at once (MPI_Abort), for failures that leave ranks out of step.
    /// - Parameter code: The exit code `mpirun` reports.
    public func abort(code: Int32) -> Never {
        _ = MPI_Abort(communicator, code)
        fatalError("MPI_Abort returned")
    }

    /// Sums `buffer` across ranks in place (MPI_Allreduce with MPI_IN_PLACE).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try allReduceSum(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: thaw_mpi_float(), size: 4)
    }

    /// Sums `buffer` across ranks in place (MPI_Allreduce with MPI_IN_PLACE).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        try allReduceSum(UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count, type: thaw_mpi_double(), size: 8)
    }

    private func allReduceSum(_ base: UnsafeMutableRawPointer?, count: Int, type: MPI_Datatype, size: Int) throws {
        try ensureActive("MPI_Allreduce")
        guard let base, count > 0 else { return }
        var start = 0
        while start < count {
            let length = min(MPICollective.maximumChunk, count - start)
            try check(MPI_Allreduce(thaw_mpi_in_place(), base + start * size, Int32(length), type, thaw_mpi_sum(), communicator), "MPI_Allreduce")
            start += length
        }
    }

    /// Copies `bytes` from `root` to every rank (MPI_Bcast).
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try ensureActive("MPI_Bcast")
        guard root >= 0 && root < worldSize else {
            throw CollectiveError.invalidArgument(call: "MPI_Bcast", rank: rank, reason: "root \(root) is not in 0..<\(worldSize)")
        }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var start = 0
        while start < bytes.count {
            let length = min(MPICollective.maximumChunk, bytes.count - start)
            try check(MPI_Bcast(base + start, Int32(length), thaw_mpi_byte(), Int32(root), communicator), "MPI_Bcast")
            start += length
        }
    }

    /// Waits for every rank (MPI_Barrier).
    public func barrier() throws {
        try ensureActive("MPI_Barrier")
        try check(MPI_Barrier(communicator), "MPI_Barrier")
    }

    /// Starts an in-place sum (MPI_Iallreduce); see ``Collective/startAllReduceSum(_:)``.
    ///
    /// The buffer must stay valid and untouched until the reduction's `test()` returns true or
    /// `wait()` returns. Buffers longer than Int32.max elements are refused.
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction {
        try ensureActive("MPI_Iallreduce")
        nextReductionID += 1
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            return PendingReduction(id: nextReductionID, progress: nil)
        }
        guard buffer.count <= MPICollective.maximumChunk else {
            throw CollectiveError.invalidArgument(
                call: "MPI_Iallreduce", rank: rank, reason: "\(buffer.count) elements exceed the MPI count limit \(Int32.max)")
        }
        let request = RequestBox()
        try check(
            MPI_Iallreduce(thaw_mpi_in_place(), base, Int32(buffer.count), thaw_mpi_float(), thaw_mpi_sum(), communicator, request.pointer),
            "MPI_Iallreduce")
        return PendingReduction(id: nextReductionID) { [self] block in
            if block {
                try ensureActive("MPI_Wait")
                try check(MPI_Wait(request.pointer, thaw_mpi_status_ignore()), "MPI_Wait")
                return true
            }
            try ensureActive("MPI_Test")
            var flag: Int32 = 0
            try check(MPI_Test(request.pointer, &flag, thaw_mpi_status_ignore()), "MPI_Test")
            return flag != 0
        }
    }

    /// Gathers every rank's `value` (MPI_Allgather) and throws on every rank if any differ.
    public func verifyAgreement(on value: UInt64, describing what: String) throws {
        try ensureActive("MPI_Allgather")
        var mine = value
        var values = [UInt64](repeating: 0, count: worldSize)
        try values.withUnsafeMutableBufferPointer { all in
            try check(
                MPI_Allgather(&mine, 1, thaw_mpi_uint64(), all.baseAddress, 1, thaw_mpi_uint64(), communicator), "MPI_Allgather")
        }
        if values.contains(where: { $0 != values[0] }) {
            throw CollectiveError.disagreement(what: what, rank: rank, values: values)
        }
    }

    private func ensureActive(_ call: String) throws {
        if isFinalized { throw CollectiveError.finalized(call: call) }
    }

    private func check(_ code: Int32, _ call: String) throws {
        try MPICollective.check(code, call, rank: rank)
    }

    /// The one place MPI return codes are checked: anything but MPI_SUCCESS becomes a CollectiveError.
    static func check(_ code: Int32, _ call: String, rank: Int) throws {
        guard code != MPI_SUCCESS else { return }
        var text = [CChar](repeating: 0, count: Int(thaw_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        let message: String
        if MPI_Error_string(code, &text, &length) == MPI_SUCCESS {
            message = String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            message = "unknown error"
        }
        throw CollectiveError.mpiCall(call: call, rank: rank, code: code, message: message)
    }
}

/// An MPI_Request at a stable address, freed when the last pending reduction using it goes away.
private final class RequestBox {
    let pointer: UnsafeMutablePointer<MPI_Request?>

    init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: thaw_mpi_request_null())
    }

    deinit { pointer.deallocate() }
}
