// MetricsServer: a small blocking HTTP/1.1 server for `GET /metrics`, on a thread of its own.
//
// One connection at a time, each closed after one answer. A client gets at most
// `requestSeconds` to send its request head (at most `maximumRequestBytes`), so a slow or hostile
// peer delays a scrape by seconds at worst and never stalls the coordinator, whose loop runs on
// another thread. Anything but `GET /metrics` (or `/`) is answered 400, 404, 405 or 431, and
// SIGPIPE is never raised (MSG_NOSIGNAL).
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why the metrics endpoint could not start.
public struct MetricsServerError: Error, CustomStringConvertible {
    /// What failed, naming the address.
    public let description: String
}

/// Serves a metrics exposition over HTTP until stopped.
public final class MetricsServer: @unchecked Sendable {
    /// The most bytes a request head may have.
    public static let maximumRequestBytes = 8192
    /// Seconds a client has to send its request head, and to take the answer.
    public static let requestSeconds = 2.0

    /// The address actually bound, as `HOST:PORT` (the port is filled in when 0 was asked for).
    public let boundAddress: String
    private let listener: Int32
    private let body: @Sendable () -> [UInt8]
    private let stopped = NSLock()
    private var isStopped = false
    private var thread: Thread?

    /// Binds `address` (`HOST:PORT`, `:PORT` or `PORT`; the host defaults to 127.0.0.1, IPv4 only).
    /// - Parameters:
    ///   - address: Where to listen; port 0 picks a free one.
    ///   - body: Produces the exposition for each scrape (called on the server's thread).
    /// - Throws: ``MetricsServerError`` for a malformed address or one that cannot be bound.
    public init(address: String, body: @escaping @Sendable () -> [UInt8]) throws {
        let (host, port) = try Self.parse(address)
        self.body = body
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw MetricsServerError(description: "--metrics-bind \(address): socket() failed (errno \(errno))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &socketAddress.sin_addr) == 1 else {
            close(descriptor)
            throw MetricsServerError(description: "--metrics-bind \(address): '\(host)' is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(descriptor, 16) == 0 else {
            let code = errno
            close(descriptor)
            throw MetricsServerError(description: "--metrics-bind \(address): cannot listen there (\(String(cString: strerror(code))))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        listener = descriptor
        boundAddress = "\(host):\(UInt16(bigEndian: actual.sin_port))"
    }

    deinit { stop() }

    /// Splits `HOST:PORT`, `:PORT` or `PORT`.
    static func parse(_ address: String) throws -> (host: String, port: UInt16) {
        let parts = address.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let host = parts.count == 2 && !parts[0].isEmpty ? parts[0] : "127.0.0.1"
        guard parts.count <= 2, let portText = parts.last, let port = UInt16(portText) else {
            throw MetricsServerError(description: "--metrics-bind: expected HOST:PORT such as 127.0.0.1:9464, got '\(address)'")
        }
        return (host, port)
    }

    /// Starts answering on a background thread.
    public func start() {
        let thread = Thread { [self] in
            while !self.stopRequested {
                var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 200) > 0 else { continue }
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { continue }
                answer(connection)
                close(connection)
            }
        }
        thread.name = "thaw-metrics"
        self.thread = thread
        thread.start()
    }

    private var stopRequested: Bool {
        stopped.lock()
        defer { stopped.unlock() }
        return isStopped
    }

    /// Stops answering and closes the listening socket (idempotent; waits up to a poll interval).
    public func stop() {
        stopped.lock()
        let wasStopped = isStopped
        isStopped = true
        stopped.unlock()
        guard !wasStopped else { return }
        if let thread {
            while !thread.isFinished { usleep(10_000) }
        }
        close(listener)
    }

    /// Reads one request head within the deadline and sends one answer.
    private func answer(_ connection: Int32) {
        var timeout = timeval(tv_sec: Int(Self.requestSeconds), tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let deadline = Date().addingTimeInterval(Self.requestSeconds)
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while !Self.endsHead(head) {
            guard head.count < Self.maximumRequestBytes else { return send(connection, status: "431 Request Header Fields Too Large") }
            let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            var poller = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            guard left > 0, poll(&poller, 1, left) > 0 else { return send(connection, status: "408 Request Timeout") }
            let count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            head += chunk[0..<count]
        }
        let requestLine = head.prefix { $0 != 13 && $0 != 10 }.split(separator: 32).map { String(decoding: $0, as: UTF8.self) }
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else { return send(connection, status: "400 Bad Request") }
        guard requestLine[0] == "GET" || requestLine[0] == "HEAD" else { return send(connection, status: "405 Method Not Allowed") }
        let path = requestLine[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path == "/metrics" || path == "/" else { return send(connection, status: "404 Not Found") }
        send(connection, status: "200 OK", contentType: "text/plain; version=0.0.4; charset=utf-8", body: body(),
             includeBody: requestLine[0] == "GET")
    }

    /// Whether `bytes` hold a whole request head (a blank line: CRLF CRLF, or LF LF from lax clients).
    static func endsHead(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 2 else { return false }
        for index in 1..<bytes.count where bytes[index] == 10 {
            if bytes[index - 1] == 10 || (index >= 3 && bytes[index - 1] == 13 && bytes[index - 2] == 10 && bytes[index - 3] == 13) { return true }
        }
        return false
    }

    private func send(_ connection: Int32, status: String, contentType: String = "text/plain; charset=utf-8", body: [UInt8]? = nil,
                      includeBody: Bool = true) {
        let content = body ?? Array((status + "\n").utf8)
        let header = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(content.count)\r\nConnection: close\r\n\r\n"
        var bytes = Array(header.utf8)
        if includeBody { bytes += content }
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
    }
}
