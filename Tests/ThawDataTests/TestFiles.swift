// Helpers for ThawData tests: temporary files that remove themselves.
import Foundation

/// A file in the temporary folder holding given bytes, deleted when the value goes away.
final class TemporaryFile {
    let path: String

    init(_ bytes: [UInt8], suffix: String = "") throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("thaw-data-test-\(UUID().uuidString)\(suffix)").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    convenience init(text: String, suffix: String = ".csv") throws {
        try self.init(Array(text.utf8), suffix: suffix)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
