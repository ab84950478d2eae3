// CollectiveSelfTest: checks a live collective end to end, on every rank of a real job.
//
// The `thaw selftest-collective` subcommand runs it under mpirun, and the ThawCollective tests
// spawn that subcommand with 2 and 3 ranks. The data is built from small multiples of 1/64,
// so every sum is exact in Float and results are compared exactly.

/// A self-test of a ``Collective``: all-reduce, broadcast, barrier, non-blocking all-reduce, agreement.
public enum CollectiveSelfTest {
    /// A self-test check that did not hold on this rank.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        /// The rank that saw the failure.
        public var rank: Int
        /// Which check failed and how.
        public var check: String
        /// One line naming the rank and the check.
        public var description: String { "rank \(rank): self-test check failed: \(check)" }
    }

    /// Runs every check on this rank; every rank of the group must call it with the same arguments.
    /// - Parameters:
    ///   - collective: The group to test.
    ///   - mismatch: When true, ranks finally verify agreement on a value that differs between
    ///     ranks (even and odd ranks hold different values), which must throw on every rank.
    /// - Returns: One line summarizing what passed on this rank.
    /// - Throws: ``Failure`` for a wrong result, or the collective's own error
    ///   (``CollectiveError/disagreement(what:rank:values:)`` in the mismatch case).
    public static func run(collective: Collective, mismatch: Bool = false) throws -> String {
        let rank = collective.rank
        let worldSize = collective.worldSize
        let count = 4099

        // 1. Same seeded data on every rank: the sum is data * worldSize.
        let base = seededValues(count: count, seed: 17)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        _ = buffer.initialize(from: base)
        try collective.allReduceSum(buffer)
        for i in 0..<count where buffer[i] != base[i] * Float(worldSize) {
            throw Failure(rank: rank, check: "allReduceSum(Float) of equal data: element \(i) is \(buffer[i]), expected \(base[i] * Float(worldSize))")
        }

        // 2. Rank-dependent data: rank r contributes (r + 1) * base, the sum is base * W(W+1)/2.
        let triangle = Float(worldSize * (worldSize + 1) / 2)
        for i in 0..<count { buffer[i] = base[i] * Float(rank + 1) }
        try collective.allReduceSum(buffer)
        for i in 0..<count where buffer[i] != base[i] * triangle {
            throw Failure(rank: rank, check: "allReduceSum(Float) of rank-dependent data: element \(i) is \(buffer[i]), expected \(base[i] * triangle)")
        }

        // 3. Doubles, as metrics use them: rank r contributes r and 1.
        var metrics: [Double] = [Double(rank), 1]
        try metrics.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        let expectedMetrics = [Double(worldSize * (worldSize - 1) / 2), Double(worldSize)]
        guard metrics == expectedMetrics else {
            throw Failure(rank: rank, check: "allReduceSum(Double): got \(metrics), expected \(expectedMetrics)")
        }

        // 4. Broadcast from the last rank: everyone ends with its bytes.
        let root = worldSize - 1
        let pattern = (0..<257).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var bytes = rank == root ? pattern : [UInt8](repeating: UInt8(truncatingIfNeeded: rank), count: pattern.count)
        try bytes.withUnsafeMutableBytes { try collective.broadcast($0, root: root) }
        guard bytes == pattern else {
            throw Failure(rank: rank, check: "broadcast from rank \(root): bytes differ from the root's")
        }

        // 5. Barrier.
        try collective.barrier()

        // 6. Two non-blocking reductions in flight: one polled with test(), one finished with wait().
        let polled = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        let waited = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer {
            polled.deallocate()
            waited.deallocate()
        }
        _ = polled.initialize(from: base)
        for i in 0..<count { waited[i] = base[i] * Float(rank + 1) }
        let first = try collective.startAllReduceSum(polled)
        let second = try collective.startAllReduceSum(waited)
        while try !first.test() {}
        try second.wait()
        guard try first.test(), try second.test() else {
            throw Failure(rank: rank, check: "non-blocking all-reduce: finished reductions report incomplete")
        }
        for i in 0..<count where polled[i] != base[i] * Float(worldSize) || waited[i] != base[i] * triangle {
            throw Failure(rank: rank, check: "non-blocking all-reduce: element \(i) is \(polled[i]) / \(waited[i])")
        }

        // 7. Agreement on a common value passes; on a rank-dependent one it throws everywhere.
        try collective.verifyAgreement(on: 0x7468_6177_5f6f_6b21, describing: "self-test common value")
        if mismatch {
            let value: UInt64 = rank % 2 == 0 ? 0xAAAA : 0xBBBB
            try collective.verifyAgreement(on: value, describing: "self-test deliberately mismatched value")
            throw Failure(rank: rank, check: "agreement on a mismatched value did not throw")
        }
        return "collective self-test passed on rank \(rank) of \(worldSize): allreduce, broadcast, barrier, nonblocking, agreement"
    }

    /// Values k/64 for integers k in -4096...4096, drawn from a seeded SplitMix64 stream.
    static func seededValues(count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Int(z % 8193) - 4096) / 64
        }
    }
}
