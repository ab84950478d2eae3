// thaw coordinator: plans unfreezing, watches ranks and answers status over ZeroMQ.
import ArgumentParser
import Foundation
import Logging
import ThawCoordinator
import ThawMetrics
import ThawPlan
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT/SIGTERM; the serve loop checks it between polls.
nonisolated(unsafe) private var stopRequested: sig_atomic_t = 0

/// `thaw coordinator --config FILE --bind tcp://127.0.0.1:5555 [--state-file PATH]`.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the coordinator: progressive-unfreezing plans, heartbeats and status queries over ZeroMQ.")

    @Option(help: "The run's configuration file (the unfreezing policy and learning rate come from it).") var config: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Override one configuration key.", valueName: "key=value")) var overrides: [String] = []
    @Option(help: "Where to listen. Loopback unless told otherwise; use port * for any free port.") var bind = "tcp://127.0.0.1:5555"
    @Option(help: "Save state here after every change; a restarted coordinator continues the same run.") var stateFile: String?
    @Option(help: "Write the bound endpoint to this file (useful with port *).") var endpointFile: String?
    @Option(help: "Seconds without a heartbeat before a rank counts as dead.") var heartbeatTimeout: Double = 10
    @Flag(help: "Exit a few seconds after the run finishes or fails (otherwise serve status until SIGINT/SIGTERM).") var exitWhenDone = false
    @Option(help: ArgumentHelp("Serve Prometheus metrics over HTTP at /metrics here (loopback unless a host is given; port 0 = any free port).",
                               valueName: "host:port")) var metricsBind: String?
    @Option(help: "The least important operational events logged: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    func run() throws {
        let training: TrainingConfig
        do { training = try TrainingConfig.load(path: config, overrides: overrides) } catch { throw RuntimeFailure.configuration(error, file: config) }
        let token = training.control.tokenFile.isEmpty ? nil : try readToken(training.control.tokenFile, key: "control.token_file")
        let secret: (secret: JobSecret, created: Bool)
        do { secret = try JobSecret.loadOrCreate(at: training.jobSecretPath) } catch {
            throw RuntimeFailure("coordinator.secret_file: \(error)")
        }
        let settings = CoordinatorSettings(unfreezing: training.unfreezing, baseLearningRate: training.optimizer.learningRate,
                                           batchNormPolicy: training.model.frozenBatchNorm.rawValue, epochs: training.training.epochs,
                                           heartbeatTimeout: heartbeatTimeout, controlToken: token, jobSecret: secret.secret)
        let coordinator = try Coordinator(settings: settings, statePath: stateFile)
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "thaw.coordinator")
        if coordinator.adoptedChangedSettings {
            logger.warning("the configuration's unfreezing settings or learning rate differ from those run \(coordinator.runID) was planned with; the next plans follow the configuration")
        }
        let secretKey = training.coordinator.curveSecretKeyFile.isEmpty
            ? nil : try readToken(training.coordinator.curveSecretKeyFile, key: "coordinator.curve_secret_key_file")
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGTERM) { _ in stopRequested = 1 }
        var watchers: [any CoordinatorWatcher] = [CoordinatorEventLog(logger: logger)]
        var metricsServer: MetricsServer?
        defer { metricsServer?.stop() }
        if let metricsBind {
            let metrics = CoordinatorMetrics()
            do { metricsServer = try MetricsServer(address: metricsBind) { metrics.exposition() } } catch { throw RuntimeFailure("\(error)") }
            metrics.coordinatorTurned(coordinator, now: Coordinator.clock())
            metricsServer?.start()
            watchers.append(metrics)
            logger.notice("Prometheus metrics at http://\(metricsServer?.boundAddress ?? metricsBind)/metrics")
        }
        try coordinator.serve(address: bind, exitWhenDone: exitWhenDone, curveSecretKey: secretKey, log: { logger.warning("\($0)") },
                              watchers: watchers, onBound: { endpoint in
            let curve = secretKey == nil ? "" : " (CURVE)", new = secret.created ? " (new)" : ""
            logger.notice("run \(coordinator.runID) listening on \(endpoint)\(curve); workers sign with the job secret \(training.jobSecretPath)\(new)")
            if let endpointFile { try? endpoint.write(toFile: endpointFile, atomically: true, encoding: .utf8) }
        }, shouldStop: { stopRequested != 0 })
        logger.notice("run \(coordinator.runID) \(coordinator.status(now: Coordinator.clock()).state)")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `thaw status --coordinator ADDR [--json] [--watch SECONDS]`.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Ask a coordinator for the run's status.")

    @Option(help: "The coordinator's address.") var coordinator = "tcp://127.0.0.1:5555"
    @Flag(help: "Print the raw JSON object.") var json = false
    @Option(help: "Refresh every this many seconds until interrupted.") var watch: Double?
    @Option(help: "Seconds to wait for an answer.") var timeout: Double = 3
    @Option(help: "The coordinator's CURVE public key file, when it runs with CURVE.") var curveServerKeyFile: String?

    func run() throws {
        let context = try ZMQContext()
        let serverKey = try curveServerKeyFile.map { try readToken($0, key: "--curve-server-key-file") }
        let requester = try JSONRequester(context: context, address: coordinator, serverKey: serverKey)
        repeat {
            let bytes: [UInt8]
            do { bytes = try requester.request(CoordinatorRequest.status.encoded(), timeout: timeout) } catch {
                throw RuntimeFailure("no answer from \(coordinator) within \(timeout) s: is `thaw coordinator` running there?")
            }
            if watch != nil { print("\u{1B}[2J\u{1B}[H", terminator: "") }
            if json {
                print(String(decoding: bytes, as: UTF8.self))
            } else {
                switch try CoordinatorReply.decode(bytes) {
                case .status(let report): print(report.table)
                case .error(let error): throw RuntimeFailure("the coordinator refused: \(error)")
                default: throw RuntimeFailure("unexpected reply from \(coordinator)")
                }
            }
            fflush(nil)
            if let watch { usleep(useconds_t(max(0.2, watch) * 1_000_000)) }
        } while watch != nil
    }
}

/// Reads a shared token: the file's contents without surrounding white space; it must not be empty.
func readToken(_ path: String, key: String) throws -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw RuntimeFailure("\(key): cannot read the token file \(path)")
    }
    let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !token.isEmpty else { throw RuntimeFailure("\(key): the token file \(path) is empty") }
    return token
}

/// `thaw ctl stop|thaw --coordinator ADDR --token-file PATH [--groups a,b]`.
struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Control a running job through its coordinator (needs the shared token).",
        discussion: "stop: every rank finishes its step, rank 0 writes a checkpoint, and the job exits cleanly (continue with --resume latest). thaw: the given groups (and all above them) train from the next epoch boundary.")

    /// The two things an operator can say.
    enum Verb: String, ExpressibleByArgument, CaseIterable { case stop, thaw }

    @Argument(help: "stop or thaw.") var command: Verb
    @Option(help: "The coordinator's address.") var coordinator = "tcp://127.0.0.1:5555"
    @Option(help: "The file holding the shared token (the one named by control.token_file).") var tokenFile: String
    @Option(help: "For thaw: the groups to thaw, comma separated.") var groups: String?
    @Option(help: "Seconds to wait for an answer.") var timeout: Double = 3
    @Option(help: "The coordinator's CURVE public key file, when it runs with CURVE.") var curveServerKeyFile: String?

    func run() throws {
        let groupList = (groups ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let operatorCommand: OperatorCommand
        switch command {
        case .stop: operatorCommand = .stop
        case .thaw:
            guard !groupList.isEmpty else { throw ValidationError("thaw needs --groups") }
            operatorCommand = .thaw(groups: groupList)
        }
        let request = CoordinatorRequest.control(ControlMessage(command: operatorCommand, token: try readToken(tokenFile, key: "--token-file")))
        let context = try ZMQContext()
        let serverKey = try curveServerKeyFile.map { try readToken($0, key: "--curve-server-key-file") }
        let requester = try JSONRequester(context: context, address: coordinator, serverKey: serverKey)
        let bytes: [UInt8]
        do { bytes = try requester.request(request.encoded(), timeout: timeout) } catch {
            throw RuntimeFailure("no answer from \(coordinator) within \(timeout) s")
        }
        switch try CoordinatorReply.decode(bytes) {
        case .ok: print("thaw ctl: \(command) accepted")
        case .error(let error): throw RuntimeFailure("the coordinator refused: \(error)")
        default: throw RuntimeFailure("unexpected reply from \(coordinator)")
        }
    }
}

/// `thaw keygen --out PREFIX`: a CURVE key pair for an encrypted coordinator.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CURVE key pair (PREFIX.secret for the coordinator, PREFIX.public for workers and clients), or a job secret.")

    @Option(help: "Path prefix for the two key files.") var out: String?
    @Option(help: "Instead: write a new job secret for the workers and the coordinator to this file (mode 0600).") var jobSecret: String?

    func validate() throws {
        guard (out == nil) != (jobSecret == nil) else { throw ValidationError("give one of --out (a CURVE key pair) and --job-secret") }
    }

    func run() throws {
        if let jobSecret {
            do {
                let made = try JobSecret.loadOrCreate(at: jobSecret)
                print("thaw keygen: \(made.created ? "wrote" : "kept the existing") job secret \(jobSecret): give it to the coordinator and every worker "
                      + "(coordinator.secret_file), readable by the job's user only")
            } catch { throw RuntimeFailure("\(error)") }
            return
        }
        guard let out else { return }
        guard CurveKeyPair.isAvailable else { throw RuntimeFailure("this libzmq was built without CURVE") }
        let pair = try CurveKeyPair.generate()
        let secret = out + ".secret"
        guard FileManager.default.createFile(atPath: secret, contents: Data((pair.secretKey + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw RuntimeFailure("cannot write \(secret)")
        }
        try (pair.publicKey + "\n").write(toFile: out + ".public", atomically: true, encoding: .utf8)
        print("thaw keygen: \(secret) (keep it on the coordinator's host) and \(out).public (give it to workers and clients)")
    }
}
