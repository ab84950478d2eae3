// Messages: the coordinator's wire protocol. One UTF-8 JSON object per ZeroMQ frame, with a
// "type" field; every request gets exactly one reply. docs/protocol.md has the full text.
//
// Sequences (REQ → coordinator's ROUTER), as numbered in docs/protocol.md:
//   1. Each rank: hello → ok {run_id}. A config_hash that differs from the first rank's is refused.
//   2. Each rank, about every second, from its own thread: heartbeat {rank, step} → ok.
//   3. Rank 0 at each epoch boundary: plan_request {epoch, previous_validation_loss} → plan {plan};
//      rank 0 broadcasts it over MPI and every rank applies it at the same step.
//   4. Rank 0 during the epoch: progress → ok; after it: epoch_report → ok.
//   5. Each rank at the end: finished → ok; or failed {reason} → ok; or, stopped by a signal,
//      terminated {reason} → ok.
//   6. An operator: control {command, token} → ok; a pending stop rides back on the reply to progress.
//   Any client at any time: status → status {...}. A malformed request gets error {message, field}.
// Every message of sequences 1–5 is signed with the job secret (see "Note: worker authentication"
// in JobSecret.swift); status and control are not.
import Foundation

/// A request that could not be decoded, naming the field at fault.
public struct MessageError: Error, CustomStringConvertible, Equatable {
    /// The field (dotted path), or empty for the whole message.
    public var field: String
    /// What was wrong.
    public var message: String

    /// Creates an error about `field`.
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    /// One line naming the field.
    public var description: String { field.isEmpty ? message : "\(field): \(message)" }
}

/// A rank introducing itself.
public struct HelloMessage: Codable, Equatable, Sendable {
    /// The run's name from the configuration.
    public var runName: String
    /// The rank.
    public var rank: Int
    /// The number of ranks.
    public var worldSize: Int
    /// The host name.
    public var host: String
    /// The process id.
    public var pid: Int
    /// The configuration digest; every rank must send the same.
    public var configHash: String
    /// The model's group names, input side first.
    public var groups: [String]
    /// The run id from an earlier hello, when reconnecting (a different run is refused).
    public var runId: String?

    /// Creates a hello.
    public init(runName: String, rank: Int, worldSize: Int, host: String, pid: Int, configHash: String, groups: [String], runId: String? = nil) {
        self.runName = runName; self.rank = rank; self.worldSize = worldSize; self.host = host
        self.pid = pid; self.configHash = configHash; self.groups = groups; self.runId = runId
    }
}

/// A rank's liveness signal, with the step it is at.
public struct HeartbeatMessage: Codable, Equatable, Sendable {
    /// The rank.
    public var rank: Int
    /// Optimizer steps taken so far.
    public var step: Int
    /// The run id the coordinator gave at hello (a different run is refused).
    public var runId: String?

    /// Creates a heartbeat.
    public init(rank: Int, step: Int, runId: String? = nil) { self.rank = rank; self.step = step; self.runId = runId }
}

/// Rank 0's running progress within an epoch.
public struct ProgressMessage: Codable, Equatable, Sendable {
    /// The rank (0).
    public var rank: Int
    /// The epoch (0-based).
    public var epoch: Int
    /// The step within the epoch (1-based).
    public var step: Int
    /// Mean training loss so far in the epoch.
    public var loss: Double
    /// Training samples per second over all ranks.
    public var samplesPerSecond: Double
    /// Gradient bytes each rank sends per step.
    public var bytesExchangedPerStep: Int
    /// The run id the coordinator gave at hello (a different run is refused).
    public var runId: String?

    /// Creates a progress message.
    public init(rank: Int, epoch: Int, step: Int, loss: Double, samplesPerSecond: Double, bytesExchangedPerStep: Int, runId: String? = nil) {
        self.rank = rank; self.epoch = epoch; self.step = step; self.loss = loss
        self.samplesPerSecond = samplesPerSecond; self.bytesExchangedPerStep = bytesExchangedPerStep; self.runId = runId
    }
}

/// One finished epoch's metrics, as the coordinator keeps them.
public struct EpochSummary: Codable, Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// The plan version it trained under.
    public var planVersion: Int
    /// Its trainable groups.
    public var trainableGroups: [String]
    /// Mean training loss.
    public var trainLoss: Double
    /// Training accuracy.
    public var trainAccuracy: Double
    /// Validation loss, if there is a validation set.
    public var validationLoss: Double?
    /// Validation accuracy, if there is a validation set.
    public var validationAccuracy: Double?
    /// Test accuracy, if evaluated.
    public var testAccuracy: Double?
    /// Seconds the epoch's training took.
    public var seconds: Double
    /// Gradient bytes each rank sent during the epoch.
    public var bytesExchanged: Int
    /// The checkpoint written after it, if any.
    public var checkpointPath: String?

    /// Creates a summary.
    public init(epoch: Int, planVersion: Int, trainableGroups: [String], trainLoss: Double, trainAccuracy: Double,
                validationLoss: Double?, validationAccuracy: Double?, testAccuracy: Double?, seconds: Double,
                bytesExchanged: Int, checkpointPath: String?) {
        self.epoch = epoch
        self.planVersion = planVersion
        self.trainableGroups = trainableGroups
        self.trainLoss = trainLoss
        self.trainAccuracy = trainAccuracy
        self.validationLoss = validationLoss
        self.validationAccuracy = validationAccuracy
        self.testAccuracy = testAccuracy
        self.seconds = seconds
        self.bytesExchanged = bytesExchanged
        self.checkpointPath = checkpointPath
    }
}

/// Rank 0's request for the plan of an epoch.
public struct PlanRequestMessage: Codable, Equatable, Sendable {
    /// The rank (0).
    public var rank: Int
    /// The epoch about to start.
    public var epoch: Int
    /// The validation loss of the epoch before, if any (drives the plateau policy).
    public var previousValidationLoss: Double?
    /// The run id the coordinator gave at hello (a different run is refused).
    public var runId: String?

    /// Creates a plan request.
    public init(rank: Int, epoch: Int, previousValidationLoss: Double?, runId: String? = nil) {
        self.rank = rank; self.epoch = epoch; self.previousValidationLoss = previousValidationLoss; self.runId = runId
    }
}

/// A rank ending, successfully or not.
public struct EndMessage: Codable, Equatable, Sendable {
    /// The rank.
    public var rank: Int
    /// Why it failed (absent when finished).
    public var reason: String?
    /// The run id the coordinator gave at hello (a different run is refused).
    public var runId: String?

    /// Creates an end message.
    public init(rank: Int, reason: String?, runId: String? = nil) { self.rank = rank; self.reason = reason; self.runId = runId }
}

/// Rank 0's report of a finished epoch.
public struct EpochReportMessage: Codable, Equatable, Sendable {
    /// The rank (0).
    public var rank: Int
    /// The epoch's metrics.
    public var summary: EpochSummary
    /// The run id the coordinator gave at hello (a different run is refused).
    public var runId: String?

    /// Creates an epoch report.
    public init(rank: Int, summary: EpochSummary, runId: String? = nil) { self.rank = rank; self.summary = summary; self.runId = runId }
}

/// An operator's command, authenticated by the shared token.
///
/// On the wire: `{"type": "control", "command": "stop"|"thaw", "groups": [...], "token": "..."}`.
public struct ControlMessage: Equatable, Sendable {
    /// What to do.
    public var command: OperatorCommand
    /// The shared token from the file named by `control.token_file`.
    public var token: String

    /// Creates a control message.
    public init(command: OperatorCommand, token: String) {
        self.command = command; self.token = token
    }
}

extension ControlMessage: Codable {
    enum CodingKeys: String, CodingKey { case command, groups, token }

    /// Decodes `command` (and `groups` for thaw).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        token = try c.decode(String.self, forKey: .token)
        let name = try c.decode(String.self, forKey: .command)
        switch name {
        case "stop": command = .stop
        case "thaw": command = .thaw(groups: try c.decodeIfPresent([String].self, forKey: .groups) ?? [])
        default:
            throw DecodingError.dataCorruptedError(forKey: .command, in: c, debugDescription: "unknown command '\(name)'; expected stop or thaw")
        }
    }

    /// Encodes the wire form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(command.name, forKey: .command)
        if case .thaw(let groups) = command { try c.encode(groups, forKey: .groups) }
        try c.encode(token, forKey: .token)
    }
}

/// Every request a client can send.
public enum CoordinatorRequest: Equatable, Sendable {
    /// A rank introducing itself.
    case hello(HelloMessage)
    /// A liveness signal.
    case heartbeat(HeartbeatMessage)
    /// Progress within an epoch.
    case progress(ProgressMessage)
    /// A finished epoch.
    case epochReport(EpochReportMessage)
    /// A plan request.
    case planRequest(PlanRequestMessage)
    /// A rank finished.
    case finished(EndMessage)
    /// A rank failed.
    case failed(EndMessage)
    /// A rank was stopped by a signal (SIGTERM, SIGINT): mpirun stopping the job after another rank
    /// died, a cancelled job, or Ctrl-C. Not a failure by itself: the coordinator then looks for the
    /// rank that went silent first.
    case terminated(EndMessage)
    /// A status query.
    case status
    /// An operator's command.
    case control(ControlMessage)

    /// Decodes one frame strictly: unknown types, unknown or missing fields, wrong types and values out
    /// of range (MessageLimits) are errors naming the field.
    public static func decode(_ bytes: [UInt8]) throws(MessageError) -> CoordinatorRequest {
        let request = try decodeFields(bytes)
        try request.checkRanges()
        return request
    }

    private static func decodeFields(_ bytes: [UInt8]) throws(MessageError) -> CoordinatorRequest {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)), let fields = object as? [String: Any] else {
            throw MessageError(field: "", message: "expected one JSON object per frame")
        }
        guard let type = fields["type"] as? String else {
            throw MessageError(field: "type", message: "missing or not a string; expected one of \(types.joined(separator: ", "))")
        }
        switch type {
        case "hello": return .hello(try decodeBody(HelloMessage.self, bytes, fields))
        case "heartbeat": return .heartbeat(try decodeBody(HeartbeatMessage.self, bytes, fields))
        case "progress": return .progress(try decodeBody(ProgressMessage.self, bytes, fields))
        case "epoch_report": return .epochReport(try decodeBody(EpochReportMessage.self, bytes, fields))
        case "plan_request": return .planRequest(try decodeBody(PlanRequestMessage.self, bytes, fields))
        case "finished": return .finished(try decodeBody(EndMessage.self, bytes, fields))
        case "failed":
            let end = try decodeBody(EndMessage.self, bytes, fields)
            guard end.reason != nil else { throw MessageError(field: "reason", message: "a failed message needs a reason") }
            return .failed(end)
        case "terminated":
            let end = try decodeBody(EndMessage.self, bytes, fields)
            guard end.reason != nil else { throw MessageError(field: "reason", message: "a terminated message needs a reason (the signal)") }
            return .terminated(end)
        case "control": return .control(try decodeBody(ControlMessage.self, bytes, fields))
        case "status":
            guard fields.count == 1 else { throw MessageError(field: fields.keys.sorted().first { $0 != "type" } ?? "", message: "status takes no fields") }
            return .status
        default:
            throw MessageError(field: "type", message: "unknown type '\(type)'; expected one of \(types.joined(separator: ", "))")
        }
    }

    /// The frame for this request.
    public func encoded() -> [UInt8] {
        switch self {
        case .hello(let m): return frame("hello", m)
        case .heartbeat(let m): return frame("heartbeat", m)
        case .progress(let m): return frame("progress", m)
        case .epochReport(let m): return frame("epoch_report", m)
        case .planRequest(let m): return frame("plan_request", m)
        case .finished(let m): return frame("finished", m)
        case .failed(let m): return frame("failed", m)
        case .terminated(let m): return frame("terminated", m)
        case .status: return Array(#"{"type":"status"}"#.utf8)
        case .control(let m): return frame("control", m)
        }
    }

    static let types = ["hello", "heartbeat", "progress", "epoch_report", "plan_request", "finished", "failed", "terminated", "status", "control"]

    /// For a worker's message (sequences 1–5), the rank it speaks for and the run id it names, if
    /// any; nil for status queries and operator commands. Worker messages must be signed.
    public var worker: (rank: Int, runId: String?)? {
        switch self {
        case .hello(let m): return (m.rank, m.runId)
        case .heartbeat(let m): return (m.rank, m.runId)
        case .progress(let m): return (m.rank, m.runId)
        case .epochReport(let m): return (m.rank, m.runId)
        case .planRequest(let m): return (m.rank, m.runId)
        case .finished(let m), .failed(let m), .terminated(let m): return (m.rank, m.runId)
        case .status, .control: return nil
        }
    }

    /// The same worker message naming run `runId` (status queries and operator commands are unchanged).
    public func naming(runId: String) -> CoordinatorRequest {
        switch self {
        case .hello(var m): m.runId = runId; return .hello(m)
        case .heartbeat(var m): m.runId = runId; return .heartbeat(m)
        case .progress(var m): m.runId = runId; return .progress(m)
        case .epochReport(var m): m.runId = runId; return .epochReport(m)
        case .planRequest(var m): m.runId = runId; return .planRequest(m)
        case .finished(var m): m.runId = runId; return .finished(m)
        case .failed(var m): m.runId = runId; return .failed(m)
        case .terminated(var m): m.runId = runId; return .terminated(m)
        case .status, .control: return self
        }
    }

    /// The message's wire type, for counters and logs.
    public var typeName: String {
        switch self {
        case .hello: "hello"
        case .heartbeat: "heartbeat"
        case .progress: "progress"
        case .epochReport: "epoch_report"
        case .planRequest: "plan_request"
        case .finished: "finished"
        case .failed: "failed"
        case .terminated: "terminated"
        case .status: "status"
        case .control: "control"
        }
    }
}

/// A message body whose wire field names are known, so unknown ones can be refused.
protocol MessageBody: Decodable {
    /// The snake_case field names the body accepts (besides `type`).
    static var fieldNames: Set<String> { get }
}

extension HelloMessage: MessageBody {
    static let fieldNames: Set<String> = ["run_name", "rank", "world_size", "host", "pid", "config_hash", "groups", "run_id"]
}
extension HeartbeatMessage: MessageBody { static let fieldNames: Set<String> = ["rank", "step", "run_id"] }
extension ProgressMessage: MessageBody {
    static let fieldNames: Set<String> = ["rank", "epoch", "step", "loss", "samples_per_second", "bytes_exchanged_per_step", "run_id"]
}
extension EpochReportMessage: MessageBody { static let fieldNames: Set<String> = ["rank", "summary", "run_id"] }
extension PlanRequestMessage: MessageBody { static let fieldNames: Set<String> = ["rank", "epoch", "previous_validation_loss", "run_id"] }
extension EndMessage: MessageBody { static let fieldNames: Set<String> = ["rank", "reason", "run_id"] }
extension ControlMessage: MessageBody { static let fieldNames: Set<String> = ["command", "groups", "token"] }

/// Decodes a message body with snake_case keys, rejecting unknown keys.
func decodeBody<Body: MessageBody>(_ type: Body.Type, _ bytes: [UInt8], _ fields: [String: Any]) throws(MessageError) -> Body {
    if let unknown = fields.keys.sorted().first(where: { $0 != "type" && !Body.fieldNames.contains($0) }) {
        throw MessageError(field: unknown, message: "unknown field; expected \(Body.fieldNames.sorted().joined(separator: ", "))")
    }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    do {
        return try decoder.decode(Body.self, from: Data(bytes))
    } catch let error as DecodingError {
        let translated = ConfigError(file: "", decodingError: error)
        throw MessageError(field: translated.key, message: translated.message)
    } catch {
        throw MessageError(field: "", message: "\(error)")
    }
}

/// Encodes `body` with snake_case keys and adds `"type"`.
func frame<Body: Encodable>(_ type: String, _ body: Body) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    guard let data = try? encoder.encode(body), var text = String(data: data, encoding: .utf8), text.hasPrefix("{") else {
        return Array(#"{"type":"error","message":"cannot encode"}"#.utf8)
    }
    text = text == "{}" ? "{\"type\":\"\(type)\"}" : "{\"type\":\"\(type)\"," + text.dropFirst()
    return Array(text.utf8)
}

func jsonString(_ dictionary: [String: String]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: dictionary, options: [.sortedKeys]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
