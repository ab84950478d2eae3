// PythonEnvironment: a virtual environment with a few PyPI packages, for tests that check Thaw
// against Python tools (pyzmq, kubernetes-validate). Created once per name under the temporary
// directory and reused; no system Python is changed. A failed setup throws: tests never skip.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Cached virtual environments for tests.
public enum PythonEnvironment {
    private static let lock = NSLock()

    /// The python of the environment `name`, with `packages` installed (pip requirement strings).
    /// `probe` is a Python statement that succeeds once the packages import.
    public static func python(name: String, packages: [String], probe: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-test-\(name)").path
        let python = directory + "/bin/python"
        // Another test process may be building the same environment: an exclusive file lock.
        let descriptor = open(directory + ".lock", O_CREAT | O_RDWR, 0o644)
        guard descriptor >= 0 else { throw SpawnError(command: "open \(directory).lock", code: errno) }
        defer { close(descriptor) }
        flock(descriptor, LOCK_EX)
        defer { flock(descriptor, LOCK_UN) }
        if FileManager.default.isExecutableFile(atPath: python),
           try spawnProcessGroup([python, "-c", probe], hangGuardSeconds: 60).exitCode == 0 {
            return python
        }
        try? FileManager.default.removeItem(atPath: directory)
        let create = try spawnProcessGroup(["/usr/bin/env", "python3", "-m", "venv", directory], hangGuardSeconds: 120)
        guard create.exitCode == 0 else { throw SpawnError(command: "python3 -m venv \(directory): \(create.output)", code: create.exitCode) }
        let install = try spawnProcessGroup([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + packages,
                                            hangGuardSeconds: 600)
        guard install.exitCode == 0 else {
            throw SpawnError(command: "pip install \(packages.joined(separator: " ")): \(install.output)", code: install.exitCode)
        }
        return python
    }
}
