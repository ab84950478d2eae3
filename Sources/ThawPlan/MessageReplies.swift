// MessageReplies: the coordinator's replies, and how clients decode them (Messages.swift has the requests).
import Foundation

/// The coordinator's replies.
public enum CoordinatorReply: Sendable {
    /// Accepted; carries the run id, and a pending operator command (`stop`) for rank 0.
    case ok(runID: String, control: OperatorCommand? = nil)
    /// The plan for the requested epoch.
    case plan(TrainingPlan)
    /// The run's status.
    case status(StatusReport)
    /// The request was refused or malformed.
    case error(MessageError)

    /// The frame for this reply.
    public func encoded() -> [UInt8] {
        switch self {
        case .ok(let runID, let control):
            var fields = ["type": "ok", "run_id": runID]
            if let control { fields["control"] = control.name }
            return Array(jsonString(fields).utf8)
        case .plan(let plan):
            struct Body: Encodable { var plan: TrainingPlan }
            return frame("plan", Body(plan: plan))
        case .status(let report): return frame("status", report)
        case .error(let error): return Array(jsonString(["type": "error", "message": error.message, "field": error.field]).utf8)
        }
    }

    /// Decodes a reply frame (clients use this).
    public static func decode(_ bytes: [UInt8]) throws(MessageError) -> CoordinatorReply {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)), let fields = object as? [String: Any],
              let type = fields["type"] as? String else {
            throw MessageError(field: "", message: "the reply is not a JSON object with a type")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        switch type {
        case "ok": return .ok(runID: fields["run_id"] as? String ?? "", control: (fields["control"] as? String) == "stop" ? .stop : nil)
        case "plan":
            struct Body: Decodable { var plan: TrainingPlan }
            guard let body = try? JSONDecoder().decode(Body.self, from: Data(bytes)) else { throw MessageError(field: "plan", message: "malformed plan") }
            return .plan(body.plan)
        case "status":
            guard let report = try? decoder.decode(StatusReport.self, from: Data(bytes)) else { throw MessageError(field: "", message: "malformed status") }
            return .status(report)
        case "error": return .error(MessageError(field: fields["field"] as? String ?? "", message: fields["message"] as? String ?? ""))
        default: throw MessageError(field: "type", message: "unknown reply type '\(type)'")
        }
    }
}
