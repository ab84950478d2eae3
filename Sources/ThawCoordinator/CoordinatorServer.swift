// CoordinatorServer: the ZeroMQ loop around `Coordinator.receive`: one ROUTER socket, a reply to
// every REQ request, reused status answers, and a rate-limited log of what was dropped.
import Foundation
import ThawPlan

/// Watches a serving coordinator from its own loop (the Prometheus exporter does): told on every
/// turn of the loop, so it can read the coordinator's status, and of every status query's latency.
public protocol CoordinatorWatcher: AnyObject {
    /// Called on every turn of the serve loop (at least every 0.2 s), on the loop's thread.
    func coordinatorTurned(_ coordinator: Coordinator, now: Double)
    /// Called after a status query was answered, with the seconds from receipt to reply.
    func statusQueryAnswered(seconds: Double)
}

extension Coordinator {
    /// Seconds between two log lines about rejected messages (they are counted in status meanwhile).
    public static let rejectionLogInterval = 10.0

    /// Serves requests on `address` until `shouldStop` returns true, or (with `exitWhenDone`)
    /// `lingerSeconds` after the run has ended.
    /// - Parameters:
    ///   - address: The endpoint to bind, such as `tcp://127.0.0.1:5555`.
    ///   - exitWhenDone: Whether to return once the run has finished or failed.
    ///   - lingerSeconds: How long to keep answering (status) after the end, with `exitWhenDone`.
    ///   - curveSecretKey: The server's CURVE secret key; when given, only clients that know the
    ///     matching public key can connect, and all traffic is encrypted.
    ///   - log: Where operational lines go (rejected messages), by default standard error.
    ///   - watchers: Told of every turn of the loop and every status query's latency (metrics, the event log).
    ///   - onBound: Called with the endpoint actually bound (useful with port `*`).
    ///   - shouldStop: Polled between messages.
    public func serve(address: String, exitWhenDone: Bool, lingerSeconds: Double = 3, curveSecretKey: String? = nil,
                      log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) },
                      watchers: [any CoordinatorWatcher] = [],
                      onBound: (String) -> Void = { _ in }, shouldStop: () -> Bool) throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, .router)
        if let curveSecretKey { try socket.enableCurveServer(secretKey: curveSecretKey) }
        // No legitimate message comes near 1 MB; larger frames from a stranger are dropped by libzmq.
        try socket.limitMessageSize(1 << 20)
        onBound(try socket.bind(address))
        var endedAt: Double?
        var cachedStatus: (bytes: [UInt8], at: Double)?
        var rejections = RejectionLog(interval: Self.rejectionLogInterval, start: Self.clock())
        defer { rejections.flush(rejected, log: log) }
        while !shouldStop() {
            let now = Self.clock()
            checkLiveness(now: now)
            for watcher in watchers { watcher.coordinatorTurned(self, now: now) }
            rejections.report(rejected, now: now, log: log)
            if hasEnded && exitWhenDone {
                endedAt = endedAt ?? now
                if now - (endedAt ?? now) > lingerSeconds { break }
            }
            guard let frames = try socket.receive(timeout: 0.2) else { continue }
            // REQ peers arrive as [identity, empty delimiter, body] or, signed, [identity, empty,
            // body, authentication]; anything else is not a REQ client and cannot be answered.
            guard frames.count == 3 || frames.count == 4, frames[1].isEmpty else {
                rejected.notRequest += 1
                continue
            }
            let body = frames[2]
            let authentication = frames.count == 4 ? frames[3] : nil
            // Status answers are reused for up to `statusReuseSeconds` while nothing else arrives, so
            // hundreds of queries per second cost the training ranks' CPUs almost nothing.
            let at = Self.clock()
            if authentication == nil, body == CoordinatorRequest.status.encoded() || CoordinatorRequest.isStatusQuery(body) {
                if let cached = cachedStatus, at - cached.at < Self.statusReuseSeconds {
                    try socket.send([frames[0], [], cached.bytes])
                } else {
                    let bytes = receive(body, authentication: nil, now: at).encoded()
                    cachedStatus = (bytes, at)
                    try socket.send([frames[0], [], bytes])
                }
                let seconds = Self.clock() - at
                for watcher in watchers { watcher.statusQueryAnswered(seconds: seconds) }
                continue
            }
            cachedStatus = nil
            try socket.send([frames[0], [], receive(body, authentication: authentication, now: at).encoded()])
        }
        socket.close()
    }
}

extension CoordinatorRequest {
    /// Whether `body` is a status query, without decoding anything else (the hot path of polling clients).
    static func isStatusQuery(_ body: [UInt8]) -> Bool {
        guard body.count < 64, let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return false }
        return object.count == 1 && object["type"] as? String == "status"
    }
}

/// Says, at most once per interval, how many messages were dropped since the last line.
struct RejectionLog {
    let interval: Double
    private var lastLine: Double
    private var logged = RejectedMessages()

    init(interval: Double, start: Double) {
        self.interval = interval
        self.lastLine = start
    }

    /// Logs the rejections since the last line, if there are any and the interval has passed.
    mutating func report(_ counts: RejectedMessages, now: Double, log: (String) -> Void) {
        guard now - lastLine >= interval, counts.total > logged.total else { return }
        lastLine = now
        line(counts, log: log)
    }

    /// Logs whatever was not logged yet (at shutdown).
    mutating func flush(_ counts: RejectedMessages, log: (String) -> Void) {
        if counts.total > logged.total { line(counts, log: log) }
    }

    private mutating func line(_ counts: RejectedMessages, log: (String) -> Void) {
        let parts = [(counts.unauthenticated - logged.unauthenticated, "unauthenticated"), (counts.replayed - logged.replayed, "replayed"),
                     (counts.malformed - logged.malformed, "malformed"), (counts.notRequest - logged.notRequest, "not a REQ request")]
            .filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }
        log("thaw coordinator: dropped \(counts.total - logged.total) message(s) (\(parts.joined(separator: ", "))); totals in status")
        logged = counts
    }
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) { difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
    return difference == 0
}
