// Tests for LocalCollective and the shared error formatting: one rank, every operation an identity.
import Testing
import ThawCollective

@Suite struct LocalCollectiveTests {
    @Test func reportsOneRank() {
        let collective = LocalCollective()
        #expect(collective.rank == 0)
        #expect(collective.worldSize == 1)
    }

    @Test func operationsLeaveBuffersUnchanged() throws {
        let collective = LocalCollective()
        var floats: [Float] = [1.5, -2, 3]
        try floats.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        #expect(floats == [1.5, -2, 3])
        var doubles: [Double] = [0.25, 7]
        try doubles.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        #expect(doubles == [0.25, 7])
        var bytes: [UInt8] = [9, 8, 7]
        try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: 0) }
        #expect(bytes == [9, 8, 7])
        try collective.barrier()
        try collective.verifyAgreement(on: 42, describing: "anything")
    }

    @Test func nonblockingReductionIsCompleteAtOnce() throws {
        let collective = LocalCollective()
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: 4)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 2)
        let first = try collective.startAllReduceSum(buffer)
        let second = try collective.startAllReduceSum(buffer)
        #expect(first.id != second.id)
        #expect(try first.test())
        try second.wait()
        #expect(second.isComplete)
        #expect(Array(buffer) == [2, 2, 2, 2])
    }

    @Test func broadcastRejectsRootOutsideGroup() {
        let collective = LocalCollective()
        var bytes: [UInt8] = [1]
        #expect(throws: CollectiveError.invalidArgument(call: "broadcast", rank: 0, reason: "root 1 is not in 0..<1")) {
            try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: 1) }
        }
    }

    @Test func selfTestPassesOnOneRank() throws {
        let summary = try CollectiveSelfTest.run(collective: LocalCollective())
        #expect(summary.contains("passed on rank 0 of 1"))
    }

    @Test func disagreementNamesRanksByValue() {
        let error = CollectiveError.disagreement(what: "trainable set", rank: 1, values: [0xA, 0xB, 0xA, 0xC])
        #expect(error.description == "rank 1: ranks disagree on trainable set: 0xa on ranks 0, 2; 0xb on rank 1; 0xc on rank 3")
    }
}
