// MessageValidation: the ranges of every number and the lengths of every string and list a request
// may carry, checked right after decoding, so that no arithmetic of the coordinator (epoch + 1, plan
// counts, status tables) and no allocation can be driven past its bounds by a message, signed or not.

/// The largest values a request may carry.
public enum MessageLimits {
    /// Ranks and world sizes.
    public static let ranks = 1 << 20
    /// Epoch numbers and plan versions.
    public static let epochs = 1_000_000
    /// Step counts, process ids and byte counts.
    public static let counts = 1 << 52
    /// Characters in a name, host, path, reason, token or hash.
    public static let text = 4096
    /// Entries in a list of groups.
    public static let groups = 4096
}

extension CoordinatorRequest {
    /// Throws naming the first field out of range.
    func checkRanges() throws(MessageError) {
        switch self {
        case .hello(let m):
            try check(m.rank, "rank", 0..<MessageLimits.ranks)
            try check(m.worldSize, "world_size", 1...MessageLimits.ranks)
            try check(m.pid, "pid", 0...MessageLimits.counts)
            for (field, text) in [("run_name", m.runName), ("host", m.host), ("config_hash", m.configHash), ("run_id", m.runId ?? "")] {
                try check(text, field)
            }
            try check(m.groups, "groups", nonEmpty: true)
        case .heartbeat(let m):
            try check(m.rank, "rank", 0..<MessageLimits.ranks)
            try check(m.step, "step", 0...MessageLimits.counts)
            try check(m.runId ?? "", "run_id")
        case .progress(let m):
            try check(m.rank, "rank", 0..<MessageLimits.ranks)
            try check(m.epoch, "epoch", 0...MessageLimits.epochs)
            try check(m.step, "step", 0...MessageLimits.counts)
            try check(m.bytesExchangedPerStep, "bytes_exchanged_per_step", 0...MessageLimits.counts)
            try check(m.loss, "loss")
            try check(m.samplesPerSecond, "samples_per_second")
            try check(m.runId ?? "", "run_id")
        case .epochReport(let m):
            try check(m.rank, "rank", 0..<MessageLimits.ranks)
            let summary = m.summary
            try check(summary.epoch, "summary.epoch", 0...MessageLimits.epochs)
            try check(summary.planVersion, "summary.plan_version", 0...MessageLimits.epochs)
            try check(summary.bytesExchanged, "summary.bytes_exchanged", 0...MessageLimits.counts)
            try check(summary.trainableGroups, "summary.trainable_groups", nonEmpty: false)
            for (field, value) in [("train_loss", summary.trainLoss), ("train_accuracy", summary.trainAccuracy), ("seconds", summary.seconds),
                                   ("validation_loss", summary.validationLoss ?? 0), ("validation_accuracy", summary.validationAccuracy ?? 0),
                                   ("test_accuracy", summary.testAccuracy ?? 0)] {
                try check(value, "summary." + field)
            }
            try check(summary.checkpointPath ?? "", "summary.checkpoint_path")
            try check(m.runId ?? "", "run_id")
        case .planRequest(let m):
            try check(m.rank, "rank", 0..<MessageLimits.ranks)
            try check(m.epoch, "epoch", 0...MessageLimits.epochs)
            try check(m.previousValidationLoss ?? 0, "previous_validation_loss")
            try check(m.runId ?? "", "run_id")
        case .finished(let m), .failed(let m), .terminated(let m):
            try check(m.rank, "rank", 0..<MessageLimits.ranks)
            try check(m.reason ?? "", "reason")
            try check(m.runId ?? "", "run_id")
        case .control(let m):
            try check(m.token, "token")
            if case .thaw(let groups) = m.command { try check(groups, "groups", nonEmpty: true) }
        case .status:
            break
        }
    }
}

private func check<Range: RangeExpression>(_ value: Int, _ field: String, _ range: Range) throws(MessageError) where Range.Bound == Int {
    guard range.contains(value) else { throw MessageError(field: field, message: "\(value) is out of range \(describe(range))") }
}

private func check(_ value: Double, _ field: String) throws(MessageError) {
    guard value.isFinite, abs(value) <= 1e300 else { throw MessageError(field: field, message: "expected a finite number") }
}

private func check(_ text: String, _ field: String) throws(MessageError) {
    guard text.utf8.count <= MessageLimits.text else { throw MessageError(field: field, message: "longer than \(MessageLimits.text) bytes") }
}

private func check(_ list: [String], _ field: String, nonEmpty: Bool) throws(MessageError) {
    guard list.count <= MessageLimits.groups, !nonEmpty || !list.isEmpty else {
        throw MessageError(field: field, message: nonEmpty ? "expected 1 to \(MessageLimits.groups) names" : "more than \(MessageLimits.groups) names")
    }
    for name in list { try check(name, field) }
}

private func describe<Range: RangeExpression>(_ range: Range) -> String where Range.Bound == Int {
    switch range {
    case let closed as ClosedRange<Int>: return "\(closed.lowerBound)...\(closed.upperBound)"
    case let open as Swift.Range<Int>: return "\(open.lowerBound)..<\(open.upperBound)"
    default: return "\(range)"
    }
}
