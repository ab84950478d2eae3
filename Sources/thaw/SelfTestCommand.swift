// thaw selftest-collective: checks MPI collectives across the ranks of an mpirun job.
// Used by the tests; also a quick way for users to check an MPI setup on a cluster.
import ArgumentParser
import ThawCollective

#if canImport(Glibc)
import Glibc
#endif

/// `mpirun -np N thaw selftest-collective [--mismatch]`: one OK or FAIL line per rank.
struct SelfTestCollectiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest-collective",
        abstract: "Check all-reduce, broadcast, barrier and agreement across the ranks of an mpirun job.")

    @Flag(help: "Make ranks disagree on purpose: every rank must fail with a message naming the ranks.")
    var mismatch = false

    func run() throws {
        let collective = try MPICollective()
        do {
            let summary = try CollectiveSelfTest.run(collective: collective, mismatch: mismatch)
            print("rank \(collective.rank): OK \(summary)")
            fflush(nil)
            try collective.finalize()
        } catch let error as CollectiveError {
            print("rank \(collective.rank): FAIL \(error)")
            fflush(nil)
            // A disagreement throws on every rank at the same point, so all ranks can finalize together.
            // Any other failure may leave ranks out of step: abort the whole job rather than hang.
            guard case .disagreement = error else { collective.abort(code: 1) }
            try? collective.finalize()
            throw ExitCode(1)
        } catch {
            print("rank \(collective.rank): FAIL \(error)")
            fflush(nil)
            collective.abort(code: 1)
        }
    }
}
