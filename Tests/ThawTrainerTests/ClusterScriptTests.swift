// The cluster launch files, run as far as this machine allows: the Slurm batch script under a
// stand-in for Slurm's commands (scontrol names the node, srun starts a job step locally, and
// `srun --mpi=pmix` starts the tasks with mpirun), on loopback; its coordinator, workers, state
// file and cleanup are real.
import Foundation
import Testing
import ThawTesting
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

#if canImport(Glibc)
import Glibc
#endif

/// A directory of stand-ins for Slurm's commands, put first on PATH.
struct FakeSlurm {
    let directory: String

    init(in scratch: ScratchRun) throws {
        directory = scratch.path("fake-slurm")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let scontrol = """
            #!/bin/sh
            # scontrol show hostnames LIST: every node of this one-machine "cluster" is loopback.
            [ "$1 $2" = "show hostnames" ] && { echo 127.0.0.1; exit 0; }
            echo "fake scontrol: unsupported: $*" >&2; exit 1
            """
        let mpirun = localMPIRun.map { "'\($0)'" }.joined(separator: " ")
        let srun = """
            #!/bin/bash
            # srun [options] COMMAND...: a job step on this machine. With --mpi=..., one MPI task per
            # allocated task, started by mpirun; otherwise the command itself (a one-task step).
            mpi=false
            while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
                case "$1" in --mpi=*) mpi=true ;; esac
                echo "$1" >> "\(directory)/srun-options"
                shift
            done
            if $mpi; then exec \(mpirun) -np "${SLURM_NTASKS:?}" "$@"; fi
            exec "$@"
            """
        for (name, text) in [("scontrol", scontrol), ("srun", srun)] {
            let path = (directory as NSString).appendingPathComponent(name)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
        }
    }

    /// Runs `sbatch`'s part: the batch script itself, as Slurm would on the first node.
    func runBatchScript(jobID: String, arguments: [String]) throws -> SpawnResult {
        let environment = ["SLURM_JOB_ID=\(jobID)", "SLURM_JOB_NODELIST=node[1-2]", "SLURM_NTASKS=2",
                           "SLURM_SUBMIT_DIR=\(packageRoot())", "PATH=\(directory):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"]
        return try spawnProcessGroup(["/usr/bin/env"] + environment + ["/bin/bash", packageRoot() + "/cluster/slurm/thaw.sbatch"] + arguments,
                                     hangGuardSeconds: 240)
    }
}

@Suite(.serialized) struct SlurmScriptTests {
    @Test func theBatchScriptRunsACoordinatorAndWorkersAndARequeueResumes() throws {
        let scratch = try ScratchRun(samples: 1200, sampleShape: [1, 16, 16])
        let slurm = try FakeSlurm(in: scratch)
        let config = try scratch.writeConfig(name: "slurm", extra: "training: {epochs: 3, batch_size: 16}\nunfreezing: {policy: gradual}",
                                             model: "{architecture: small-cnn, classes: 3}")
        let jobID = "t\(getpid())"
        let port = String(20000 + Int(getpid()) % 20000)
        let files = ["coordinator.json", "coordinator.endpoint", "coordinator.log"].map { packageRoot() + "/runs/slurm/\(jobID)-\($0)" }
        defer { for file in files { unlink(file) } }

        let arguments = [config, "--port", port, "--thaw", try #require(thawExecutablePath()), "--", "--set", "optimizer.learning_rate=0.02"]
        let first = try slurm.runBatchScript(jobID: jobID, arguments: arguments)
        try #require(first.exitCode == 0, "\(first.output)")
        #expect(first.output.contains("coordinator at tcp://127.0.0.1:\(port) on 127.0.0.1"), "\(first.output)")
        let options = try String(contentsOfFile: slurm.directory + "/srun-options", encoding: .utf8)
        #expect(options.contains("--mpi=pmix") && options.contains("--overlap") && options.contains("--nodelist=127.0.0.1"), "\(options)")

        // The coordinator saw the whole run, and it exited with the job (nothing left listening).
        let state = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: files[0]))) as? [String: Any])
        #expect(state["state"] as? String == "finished", "\(state)")
        let planner = state["planner"] as? [String: Any]
        #expect("\(planner ?? [:])".contains("0.02"), "the coordinator did not get the --set override: \(planner ?? [:])")
        #expect((state["history"] as? [Any])?.count == 3)
        #expect(try epochRecords(scratch.path("slurm")).count == 3)
        let probe = try spawnProcessGroup([try #require(thawExecutablePath()), "status", "--coordinator", "tcp://127.0.0.1:\(port)", "--timeout", "1"],
                                          hangGuardSeconds: 20)
        #expect(probe.exitCode != 0, "the coordinator is still answering after the job ended:\n\(probe.output)")

        // A requeue runs the same script again with the same job id: the workers resume from the
        // newest checkpoint (nothing is left to train) and the coordinator continues the same run.
        let again = try slurm.runBatchScript(jobID: jobID, arguments: arguments)
        try #require(again.exitCode == 0, "\(again.output)")
        #expect(again.output.contains("resuming from"), "\(again.output)")
        let resumed = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: files[0]))) as? [String: Any])
        #expect(resumed["run_id"] as? String == state["run_id"] as? String)
        #expect(resumed["state"] as? String == "finished", "\(resumed)")
        #expect(try epochRecords(scratch.path("slurm")).count == 3, "a requeue of a finished run must not train again")
    }

    @Test func theBatchScriptRefusesToRunOutsideSlurmAndNamesBadOptions() throws {
        let outside = try spawnProcessGroup(["/usr/bin/env", "-u", "SLURM_JOB_ID", "/bin/bash", packageRoot() + "/cluster/slurm/thaw.sbatch",
                                             "configs/demo.yaml"], hangGuardSeconds: 20)
        #expect(outside.exitCode != 0 && outside.output.contains("not inside a Slurm job"), "\(outside.output)")
        let scratch = try ScratchRun()
        let slurm = try FakeSlurm(in: scratch)
        let bad = try slurm.runBatchScript(jobID: "bad", arguments: ["configs/demo.yaml", "--launcher", "ssh"])
        #expect(bad.exitCode != 0 && bad.output.contains("--launcher must be srun or mpirun"), "\(bad.output)")
    }
}

/// The Kubernetes manifest, checked by the API's own schemas (kubernetes-validate, strict) and the
/// MPI operator's v2beta1 fields, and its embedded configuration by Thaw's own loader. Each
/// mutation must be caught, so the checker is shown to check.
@Suite(.serialized) struct KubernetesManifestTests {
    static let manifest = packageRoot() + "/cluster/kubernetes/thaw-mpijob.yaml"
    static let validator = packageRoot() + "/cluster/kubernetes/validate-manifests"

    func python() throws -> String {
        try PythonEnvironment.python(name: "kubernetes-validate", packages: ["kubernetes-validate==1.37.0", "pyyaml"],
                                     probe: "import kubernetes_validate, yaml")
    }

    @Test func theManifestIsValidAndItsConfigurationLoads() throws {
        let scratch = try ScratchRun()
        let config = scratch.path("k8s-thaw.yaml")
        let result = try spawnProcessGroup([try python(), Self.validator, Self.manifest, "--extract-config", config], hangGuardSeconds: 120)
        #expect(result.exitCode == 0, "\(result.output)")
        #expect(result.output.contains("5 document(s) valid"), "\(result.output)")
        let loaded = try TrainingConfig.load(path: config, overrides: [])
        #expect(loaded.model.architecture == "mobilenet_v2")
        #expect(loaded.run.output.hasPrefix("/runs/"), "checkpoints must go to the shared volume")
    }

    @Test(arguments: [
        (#"-np, "2""#, #"-np, "3""#, "mpirun -np 3 but the workers have 2 slot(s)"),
        ("slotsPerWorker: 1", "slotsPerWorkers: 1", "unknown field 'slotsPerWorkers'"),
        ("readOnly: true}", "readOnly: true, bogus: 1}", "'bogus' was unexpected"),
        ("tcp://thaw-coordinator:5555", "tcp://coordinator:5555", "is not the Service"),
        ("cleanPodPolicy: Running", "cleanPodPolicy: Sometimes", "'Sometimes' is not one of"),
        ("claimName: thaw-runs}", "claimName: runs}", "names claim runs"),
        ("targetPort: zmq", "targetPort: 5556", "targetPort 5556 is not a port"),
        ("--config, /config/thaw.yaml,\n", "--config, /config/other.yaml,\n", "--config /config/other.yaml is not a file the workers mount"),
    ])
    func aBrokenManifestIsRefusedByName(original: String, broken: String, message: String) throws {
        let scratch = try ScratchRun()
        let text = try String(contentsOfFile: Self.manifest, encoding: .utf8)
        try #require(text.contains(original), "the manifest no longer contains \(original)")
        let path = scratch.path("broken.yaml")
        try text.replacingOccurrences(of: original, with: broken).write(toFile: path, atomically: true, encoding: .utf8)
        let result = try spawnProcessGroup([try python(), Self.validator, path], hangGuardSeconds: 120)
        #expect(result.exitCode == 1, "\(result.output)")
        #expect(result.output.contains(message), "\(result.output)")
    }
}

/// The status soak benchmark runs end to end on a small job: every query is answered and the
/// report has its figures (the figures themselves are for BENCHMARKS-style runs, not asserted).
@Suite(.serialized) struct StatusSoakBenchmarkTests {
    @Test func theSoakRunsAJobQuietAndLoadedAndAnswersEveryQuery() throws {
        let scratch = try ScratchRun(samples: 1500, sampleShape: [1, 16, 16])
        let config = try scratch.writeConfig(name: "soak", extra: "training: {epochs: 2, batch_size: 16}", model: "{architecture: small-cnn, classes: 3}")
        let thaw = try #require(thawExecutablePath())
        let result = try spawnProcessGroup([thaw, "bench", "status-soak", "--config", config, "--set", "training.epochs=2",
                                            "--repetitions", "1", "--rate", "200", "--scratch", scratch.path("bench")], hangGuardSeconds: 240)
        #expect(result.exitCode == 0, "\(result.output)")
        let answered = result.output.split(separator: "\n").first { $0.hasPrefix("queries: ") }
        let count = answered.flatMap { Int($0.dropFirst("queries: ".count).prefix { $0.isNumber }) } ?? 0
        #expect(count > 0 && answered?.contains(" 0 unanswered") == true, "\(result.output)")
        #expect(result.output.contains("training throughput loaded ÷ quiet: "), "\(result.output)")
        #expect(try epochRecords(scratch.path("bench/soak-0-loaded")).count == 2)
    }
}

/// `launch/local` as a user runs it: it starts a coordinator and workers, status answers, and
/// Ctrl-C (SIGINT to its process group) stops everything, leaving no process and no listening socket.
@Suite(.serialized) struct LocalLaunchTests {
    /// Processes whose command line mentions `text`.
    func processes(mentioning text: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), pid != getpid(),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let command = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return command.contains(text) ? pid : nil
        }
    }

    @Test func ctrlCStopsTheCoordinatorAndEveryWorker() throws {
        let scratch = try ScratchRun(samples: 3000, sampleShape: [1, 16, 16])
        let name = "local-\(getpid())"
        let config = try scratch.writeConfig(name: name, extra: "training: {epochs: 50, batch_size: 16}", model: "{architecture: small-cnn, classes: 3}")
        let logs = packageRoot() + "/runs/launch/\(name)"
        defer { try? FileManager.default.removeItem(atPath: logs) }
        let launch = try BackgroundProcess([packageRoot() + "/launch/local", "2", config, "--thaw", try #require(thawExecutablePath())])
        var endpoint = ""
        var running = false
        let thaw = try #require(thawExecutablePath())
        for _ in 0..<300 where launch.isRunning {
            endpoint = (try? String(contentsOfFile: logs + "/coordinator.endpoint", encoding: .utf8)) ?? ""
            if !endpoint.isEmpty, let answer = try? spawnProcessGroup([thaw, "status", "--coordinator", endpoint, "--json"], hangGuardSeconds: 10),
               answer.output.contains(#""state":"running""#), answer.output.contains(#""step":"#), !answer.output.contains(#""step":null"#) {
                running = true
                break
            }
            usleep(200_000)
        }
        try #require(running, "the job never showed as running:\n\(launch.output)")
        #expect(launch.output.contains("watch it with: \(thaw) status --coordinator \(endpoint)") || launch.output.contains("watch it with: .build/release/thaw status"),
                "\(launch.output)")
        #expect(processes(mentioning: config).count >= 3, "expected the coordinator, mpirun and 2 ranks")

        launch.signal(SIGINT)
        #expect(launch.waitForExit(seconds: 30), "launch/local did not stop on Ctrl-C:\n\(launch.output)")
        var left: [Int32] = []
        for _ in 0..<100 {
            left = processes(mentioning: config)
            if left.isEmpty { break }
            usleep(100_000)
        }
        #expect(left.isEmpty, "processes left behind: \(left)")
        let probe = try spawnProcessGroup([thaw, "status", "--coordinator", endpoint, "--timeout", "1"], hangGuardSeconds: 20)
        #expect(probe.exitCode != 0, "the coordinator still answers after Ctrl-C")
        for pid in left { kill(pid, SIGKILL) }
    }
}
