// DataFiles: real datasets for tests, fetched once with the repository's scripts/fetch-data into
// the test cache (not the user's ~/.cache/thaw), and shared by every test that needs them.
import Foundation

/// Real dataset folders for tests.
public enum DataFiles {
    private static let lock = NSLock()

    /// The folder holding the Rotten Tomatoes reviews.csv, made by
    /// `scripts/fetch-data rotten-tomatoes <test cache>/rotten-tomatoes` (checksums verified there).
    /// - Parameter filePath: Any file inside the package, to find scripts/ from.
    public static func rottenTomatoes(filePath: String = #filePath) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let directory = PretrainedFiles.cache + "/rotten-tomatoes"
        var root = URL(fileURLWithPath: filePath)
        while root.path != "/" && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            root.deleteLastPathComponent()
        }
        let script = root.appendingPathComponent("scripts/fetch-data").path
        let fetch = try spawnProcessGroup([script, "rotten-tomatoes", directory], hangGuardSeconds: 600)
        guard fetch.exitCode == 0 else {
            throw SpawnError(command: "scripts/fetch-data rotten-tomatoes: \(fetch.output)", code: fetch.exitCode)
        }
        return directory
    }
}
