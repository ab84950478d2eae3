// Processes: spawning real process groups (mpirun jobs, the coordinator) for tests and benchmarks,
// with a hang guard that kills the whole group, so no rank or server outlives a failing caller.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a spawned process group ended.
public struct SpawnResult {
    /// The exit code, or 128 + signal number if it was killed by a signal.
    public var exitCode: Int32
    /// Standard output and standard error, interleaved.
    public var output: String
    /// Whether the hang guard expired and the group was killed.
    public var timedOut: Bool
}

/// Open MPI's `mpirun`: the first on PATH, else Debian's.
public let mpirunPath: String = {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let candidate = (String(directory) as NSString).appendingPathComponent("mpirun")
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return "/usr/bin/mpirun"
}()

/// The `mpirun` command line tests use on one machine: as root, more ranks than cores allowed, and
/// without Open MPI's rtc/hwloc component, which now and then segfaults in hwloc_shmem_topology_write
/// (seen in CI; it only handles process binding).
public let localMPIRun = [mpirunPath] + (getuid() == 0 ? ["--allow-run-as-root"] : []) + ["--oversubscribe", "--mca", "rtc", "^hwloc"]

/// The `mpirun` options benchmarks and launch scripts run `ranks` local ranks with: the ring algorithm
/// for Open MPI's non-blocking all-reduce (the default was measured 2× slower, `thaw bench exchange`),
/// no rtc/hwloc, as root when root, oversubscribed only when there are more ranks than cores.
public func localMPIRunOptions(ranks: Int) -> [String] {
    var options = ["--mca", "coll_libnbc_iallreduce_algorithm", "1", "--mca", "rtc", "^hwloc"]
    if getuid() == 0 { options.append("--allow-run-as-root") }
    if ranks > ProcessInfo.processInfo.activeProcessorCount { options.append("--oversubscribe") }
    return options
}

/// Starts `arguments` in a new process group with output to `outputPath` and no standard input.
func startProcessGroup(_ arguments: [String], outputPath: String) throws -> pid_t {

    #if canImport(Glibc)
    var actions = posix_spawn_file_actions_t()
    var attributes = posix_spawnattr_t()
    #else
    var actions: posix_spawn_file_actions_t?
    var attributes: posix_spawnattr_t?
    #endif
    posix_spawn_file_actions_init(&actions)
    posix_spawnattr_init(&attributes)
    defer {
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attributes)
    }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // A new process group, an empty signal mask and default signal handlers: the test process may
    // block or ignore signals, and the child must still stop on SIGTERM/SIGINT.
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    posix_spawnattr_setpgroup(&attributes, 0)
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)

    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    // MPI_Init in this process (MPISingleRankTests) exports OMPI_/PMIX_ variables describing a
    // singleton job; a child mpirun that inherits them believes it runs inside that job and fails.
    let inherited = ProcessInfo.processInfo.environment.filter { key, _ in
        !["OMPI_", "PMIX_", "OPAL_", "ORTE_"].contains { key.hasPrefix($0) }
    }
    let envp: [UnsafeMutablePointer<CChar>?] = inherited.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let spawnCode = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
    guard spawnCode == 0 else {
        throw SpawnError(command: arguments.joined(separator: " "), code: spawnCode)
    }
    return pid
}

/// Runs `arguments` in a new process group, collecting its output; kills the whole group if it
/// is still running after `hangGuardSeconds`, and kills any leftover members once it has exited.
public func spawnProcessGroup(_ arguments: [String], hangGuardSeconds: Double) throws -> SpawnResult {
    let outputPath = FileManager.default.temporaryDirectory
        .appendingPathComponent("thaw-spawn-\(getpid())-\(UUID().uuidString).log").path
    defer { unlink(outputPath) }
    let pid = try startProcessGroup(arguments, outputPath: outputPath)

    var status: Int32 = 0
    var timedOut = false
    let deadline = Date().addingTimeInterval(hangGuardSeconds)
    while true {
        let waited = waitpid(pid, &status, WNOHANG)
        if waited == pid { break }
        if waited < 0 && errno != EINTR { break }
        if Date() > deadline {
            timedOut = true
            kill(-pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            break
        }
        usleep(20_000)
    }
    kill(-pid, SIGKILL)  // Anything left of the group (ESRCH when it is already empty).

    let signal = status & 0x7f
    let exitCode = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    return SpawnResult(exitCode: exitCode, output: output, timedOut: timedOut)
}

/// posix_spawn failed.
public struct SpawnError: Error, CustomStringConvertible {
    /// The command line.
    public var command: String
    /// The posix_spawn error code.
    public var code: Int32
    /// Creates the error for a command and a code.
    public init(command: String, code: Int32) {
        self.command = command
        self.code = code
    }

    /// One line naming the command and the error.
    public var description: String { "could not spawn \(command): \(String(cString: strerror(code)))" }
}

/// A process group running in the background for the length of a test or benchmark (a coordinator, say).
/// It is killed, with everything it started, by `stop()` or when the object goes away.
public final class BackgroundProcess {
    private let pid: pid_t
    /// The file its standard output and error go to.
    public let outputPath: String
    private let keepsOutput: Bool
    private var stopped = false

    /// Starts `arguments` in its own process group; with `outputPath`, its output goes to that file
    /// (kept afterwards), otherwise to a temporary file removed with the object.
    public init(_ arguments: [String], outputPath: String? = nil) throws {
        self.outputPath = outputPath ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("thaw-background-\(getpid())-\(UUID().uuidString).log").path
        keepsOutput = outputPath != nil
        pid = try startProcessGroup(arguments, outputPath: self.outputPath)
    }

    deinit {
        stop()
        if !keepsOutput { unlink(outputPath) }
    }

    /// Everything it has printed so far.
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// How it exited (128 + the signal number if a signal ended it), once it has been seen to exit.
    public private(set) var exitCode: Int32?

    /// Whether it is still running.
    public var isRunning: Bool {
        guard !stopped else { return false }
        var status: Int32 = 0
        let waited = waitpid(pid, &status, WNOHANG)
        if waited == pid { record(status) }
        return waited == 0
    }

    private func record(_ status: Int32) {
        stopped = true
        let signal = status & 0x7f
        exitCode = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Sends `signal` to the whole group.
    public func signal(_ signal: Int32) { kill(-pid, signal) }

    /// Waits up to `seconds` for it to exit by itself; returns whether it did.
    public func waitForExit(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var status: Int32 = 0
        while Date() < deadline {
            if stopped { return true }
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { record(status); return true }
            if waited < 0 && errno == ECHILD { stopped = true; return true }
            usleep(20_000)
        }
        return false
    }

    /// Kills the whole group and reaps it (idempotent).
    public func stop() {
        guard !stopped else { return }
        stopped = true
        kill(-pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }
}
