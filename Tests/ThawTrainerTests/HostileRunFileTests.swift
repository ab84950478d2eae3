// Run-level hostile-file cases (issue 15): pretrained weights are read by their structure, not their
// name (a Thaw safetensors file whose header length starts with 0x80, PROTO's opcode, under any
// name), and the `*.safetensors.tmp-PID` files that killed writes leave are removed by checkpoint
// pruning and at run start when their writer is dead, never when it is alive.
import Foundation
import Testing
import ThawData
import ThawTesting
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

#if canImport(Glibc)
import Glibc
#endif

@Suite struct HostileRunFileTests {
    /// The safetensors header length of the file at `path`.
    static func headerLength(_ path: String) throws -> UInt64 {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)).prefix(8)).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    @Test func pretrainedWeightsWhoseHeaderLengthStartsWith0x80LoadUnderAnyName() throws {
        let scratch = try ScratchRun()
        var section = ModelSection()
        section.architecture = "mlp"
        section.classes = 3
        let source = try ModelZoo.build(section, sampleShape: [6], seed: 1)
        let store = source.store
        let tensors = store.parameterEntries.map { entry in
            (name: entry.name, shape: entry.shape, values: UnsafeBufferPointer(rebasing: store.parameters[entry.range]))
        }
        // Pad a metadata value so that Thaw's writer gives a header length of 0x80 modulo 256.
        let path = scratch.path("weights.safetensors")
        try SafeTensors.write(tensors, metadata: ["padding": ""], to: path)
        let padding = Int((0x80 &- (try Self.headerLength(path))) & 0xFF)
        try SafeTensors.write(tensors, metadata: ["padding": String(repeating: " ", count: padding)], to: path)
        try #require(try Self.headerLength(path) & 0xFF == 0x80)
        let renamed = scratch.path("weights.bin")
        try FileManager.default.copyItem(atPath: path, toPath: renamed)
        for file in [path, renamed] {
            let model = try ModelZoo.build(section, sampleShape: [6], seed: 2)
            let report = try ModelZoo.loadPretrained(file, into: model, architecture: "mlp", strict: true)
            #expect(report.missing.isEmpty && report.unexpected.isEmpty && report.shapeMismatched.isEmpty, "\(file): \(report)")
            #expect(model.store.values(of: "head.fc.weight") == source.store.values(of: "head.fc.weight"), "\(file)")
        }
    }

    /// A PID that is surely not a live process: that of a child that has exited and been reaped.
    static func deadPID() throws -> pid_t {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        let pid = process.processIdentifier
        try #require(kill(pid, 0) == -1 && errno == ESRCH, "pid \(pid) is still alive")
        return pid
    }

    /// Creates `directory/name` (and the folders on the way) holding `size` bytes.
    static func makeFile(_ directory: String, _ name: String, size: Int = 64) throws {
        let path = (directory as NSString).appendingPathComponent(name)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(count: size).write(to: URL(fileURLWithPath: path))
    }

    static func exists(_ directory: String, _ name: String) -> Bool {
        FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent(name))
    }

    @Test func pruningRemovesTheTemporariesOfDeadWritersOnly() throws {
        let scratch = try ScratchRun()
        let directory = scratch.path("run/checkpoints")
        let dead = try Self.deadPID(), live = getpid()
        for epoch in 1...3 { try Self.makeFile(directory, String(format: "epoch-%04d.safetensors", epoch)) }
        let stale = ["epoch-0004.safetensors.tmp-\(dead)", "best.safetensors.tmp-\(dead)"]
        let kept = ["epoch-0004.safetensors.tmp-\(live)",   // a live writer's
                    "notes.txt.tmp-\(dead)", "epoch-0005.safetensors.tmp-x\(dead)", "epoch-0006.safetensors.tmp-0"]  // not Thaw's temporaries
        for name in stale + kept { try Self.makeFile(directory, name, size: 1000) }
        try FileManager.default.createDirectory(atPath: directory + "/directory.safetensors.tmp-\(dead)", withIntermediateDirectories: true)

        Checkpoint.prune(directory: directory, keep: 2)
        #expect(Checkpoint.epochFiles(in: directory) == ["epoch-0002.safetensors", "epoch-0003.safetensors"])
        for name in stale { #expect(!Self.exists(directory, name), "\(name) should be gone") }
        for name in kept { #expect(Self.exists(directory, name), "\(name) should be kept") }
        #expect(Self.exists(directory, "directory.safetensors.tmp-\(dead)"), "a directory is never removed")
        #expect(Checkpoint.removeStaleTemporaries(runDirectory: scratch.path("run")) == nil, "nothing is left to remove")
    }

    @Test func runStartRemovesStaleTemporariesAndSaysHowMany() throws {
        let scratch = try ScratchRun()
        let run = scratch.path("run")
        let dead = try Self.deadPID(), live = getpid()
        let stale = ["model.safetensors.tmp-\(dead)", "exported.safetensors.tmp-\(dead)", "checkpoints/epoch-0001.safetensors.tmp-\(dead)"]
        let kept = ["model.safetensors.tmp-\(live)", "checkpoints/epoch-0001.safetensors.tmp-\(live)"]
        for name in stale + kept { try Self.makeFile(run, name, size: 500_000) }

        let result = try runTraining(config: try scratch.writeConfig(name: "run", extra: "training: {epochs: 1}"), ranks: 1)
        try #require(result.exitCode == 0, "\(result.output)")
        #expect(result.output.contains("thaw: removed 3 stale temporary files of killed writes in \(run) (1.5 MB)"), "\(result.output)")
        for name in stale { #expect(!Self.exists(run, name), "\(name) should be gone") }
        for name in kept { #expect(Self.exists(run, name), "\(name) should be kept") }
        #expect(Self.exists(run, "model.safetensors"))

        // A second start has nothing to remove and says nothing about it.
        let again = try runTraining(config: try scratch.writeConfig(name: "run", extra: "training: {epochs: 1}"), ranks: 1)
        try #require(again.exitCode == 0, "\(again.output)")
        #expect(!again.output.contains("stale temporar"), "\(again.output)")
    }
}
