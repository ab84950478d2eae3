// thaw: the command-line entry point (a plain placeholder until the ArgumentParser CLI lands).
//
// `thaw selftest-collective [--mismatch]` runs CollectiveSelfTest on MPICollective, one line per
// rank, exiting 0 on success and 1 on failure. Start it under mpirun for several ranks.
import ThawCollective

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs the collective self-test and returns the process exit code.
func runCollectiveSelfTest(mismatch: Bool) -> Int32 {
    let collective: MPICollective
    do {
        collective = try MPICollective()
    } catch {
        print("selftest-collective: FAIL \(error)")
        return 1
    }
    do {
        let summary = try CollectiveSelfTest.run(collective: collective, mismatch: mismatch)
        print("rank \(collective.rank): OK \(summary)")
        fflush(nil)
        try collective.finalize()
        return 0
    } catch let error as CollectiveError {
        print("rank \(collective.rank): FAIL \(error)")
        fflush(nil)
        // A disagreement throws on every rank at the same point, so all ranks can finalize together.
        // Any other failure may leave ranks out of step: abort the whole job rather than hang.
        if case .disagreement = error {
            try? collective.finalize()
            return 1
        }
        collective.abort(code: 1)
    } catch {
        print("rank \(collective.rank): FAIL \(error)")
        fflush(nil)
        collective.abort(code: 1)
    }
}

let arguments = CommandLine.arguments
if arguments.count >= 2 && arguments[1] == "selftest-collective" {
    exit(runCollectiveSelfTest(mismatch: arguments.dropFirst(2).contains("--mismatch")))
}
print("thaw")
