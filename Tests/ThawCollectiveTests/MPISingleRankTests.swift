// Tests for MPICollective inside the test process, run without mpirun: MPI starts as rank 0 of 1.
//
// MPI can be initialized only once per process and never again after MPI_Finalize, so these
// tests share one collective, run serially, and never finalize (the spawned multi-rank tests do).
import Testing
import ThawCollective

@Suite(.serialized) struct MPISingleRankTests {
    @Test func singleRankOperations() throws {
        let collective = try MPICollective()
        #expect(collective.rank == 0)
        #expect(collective.worldSize == 1)

        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 3)
        defer { buffer.deallocate() }
        _ = buffer.initialize(from: [1, -2, 0.5])
        try collective.allReduceSum(buffer)
        #expect(Array(buffer) == [1, -2, 0.5])
        let pending = try collective.startAllReduceSum(buffer)
        try pending.wait()
        #expect(try pending.test())
        #expect(Array(buffer) == [1, -2, 0.5])

        var doubles: [Double] = [3, 4]
        try doubles.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        #expect(doubles == [3, 4])

        var bytes: [UInt8] = [5, 6]
        try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: 0) }
        #expect(bytes == [5, 6])
        #expect(throws: CollectiveError.self) { try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: 1) } }

        try collective.barrier()
        try collective.verifyAgreement(on: 7, describing: "single rank")

        // A second collective in the same process shares the one MPI initialization.
        let again = try MPICollective()
        #expect(again.worldSize == 1)
        let summary = try CollectiveSelfTest.run(collective: again)
        #expect(summary.contains("passed on rank 0 of 1"))
    }
}
