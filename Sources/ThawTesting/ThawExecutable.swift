// ThawExecutable: the `thaw` executable tests start, found beside the test binary.
@_exported import ThawProcesses
import Foundation

/// The `thaw` executable in the build folder that holds this test binary.
public func thawExecutablePath() -> String? {
    var candidates: [URL] = []
    if let executable = Bundle.main.executableURL {
        candidates.append(executable.resolvingSymlinksInPath().deletingLastPathComponent())
    }
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
    for directory in candidates {
        // On Linux the test binary sits in the build folder; on macOS it is inside an .xctest bundle.
        var folder = directory
        for _ in 0..<4 {
            let path = folder.appendingPathComponent("thaw").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
            folder.deleteLastPathComponent()
        }
    }
    return nil
}
