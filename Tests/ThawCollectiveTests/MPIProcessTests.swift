// End-to-end tests of MPICollective across real processes: spawn `mpirun -np N thaw selftest-collective`.
//
// The `thaw` executable is found next to the test binary, in the same build folder (swift test
// builds every product first). mpirun runs in its own process group; if a job outlives the hang
// guard, the whole group is killed so that no rank is left running. The hang guard is generous
// and only turns a hang into a failure: nothing here asserts on timing.
//
// mpirun flags: --allow-run-as-root (containers run as root), --oversubscribe (more ranks than
// the 2 cores). Open MPI's default transports (shared memory and self) work in this container,
// so no --mca btl selection is passed.
import Foundation
import Testing
import ThawTesting

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite(.serialized) struct MPIProcessTests {
    @Test(arguments: [2, 3]) func selfTestPassesOnEveryRank(ranks: Int) throws {
        let result = try runSelfTest(ranks: ranks, extraArguments: [])
        #expect(!result.timedOut, "mpirun hung; output:\n\(result.output)")
        #expect(result.exitCode == 0, "output:\n\(result.output)")
        for rank in 0..<ranks {
            #expect(
                result.output.contains("rank \(rank): OK collective self-test passed on rank \(rank) of \(ranks)"),
                "rank \(rank) did not report success; output:\n\(result.output)")
        }
    }

    @Test(arguments: [2, 3]) func mismatchFailsOnEveryRank(ranks: Int) throws {
        let result = try runSelfTest(ranks: ranks, extraArguments: ["--mismatch"])
        #expect(!result.timedOut, "mpirun hung instead of failing; output:\n\(result.output)")
        #expect(result.exitCode != 0, "output:\n\(result.output)")
        let holders = ranks == 2 ? "0xaaaa on rank 0; 0xbbbb on rank 1" : "0xaaaa on ranks 0, 2; 0xbbbb on rank 1"
        for rank in 0..<ranks {
            let line = "rank \(rank): FAIL rank \(rank): ranks disagree on self-test deliberately mismatched value: \(holders)"
            #expect(result.output.contains(line), "rank \(rank) did not name the mismatch; output:\n\(result.output)")
        }
    }

    private func runSelfTest(ranks: Int, extraArguments: [String]) throws -> SpawnResult {
        let thaw = try #require(thawExecutablePath(), "no thaw executable next to the test binary; run `swift build` first")
        let mpirun = "/usr/bin/mpirun"
        try #require(FileManager.default.isExecutableFile(atPath: mpirun), "mpirun missing: apt-get install openmpi-bin")
        let arguments = localMPIRun + ["-np", String(ranks), thaw, "selftest-collective"] + extraArguments
        return try spawnProcessGroup(arguments, hangGuardSeconds: 120)
    }
}

