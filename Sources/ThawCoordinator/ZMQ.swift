// ZMQ: a small checked wrapper over libzmq for the coordinator and its clients.
//
// Every call's return code is checked and turned into a `ZMQError` naming the call, the
// endpoint and libzmq's message. Sockets are not thread-safe: each belongs to the thread that
// created it. Every socket closes with LINGER 0, so nothing blocks at exit.
import CZMQ

#if canImport(Glibc)
import Glibc
#endif

/// A failed ZeroMQ call.
public struct ZMQError: Error, CustomStringConvertible, Equatable {
    /// The libzmq function.
    public var call: String
    /// The endpoint involved, if any.
    public var endpoint: String
    /// libzmq's error message.
    public var message: String
    /// The errno value.
    public var code: Int32

    /// One line naming the call, endpoint and reason.
    public var description: String {
        endpoint.isEmpty ? "\(call) failed: \(message)" : "\(call) \(endpoint) failed: \(message)"
    }
}

/// A ZeroMQ context; create one per process and keep it alive while its sockets live.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Creates a context.
    public init() throws(ZMQError) {
        guard let handle = zmq_ctx_new() else { throw ZMQError(call: "zmq_ctx_new", endpoint: "", message: String(cString: zmq_strerror(zmq_errno())), code: zmq_errno()) }
        self.handle = handle
    }

    deinit { zmq_ctx_term(handle) }
}

/// The socket kinds Thaw uses.
public enum ZMQSocketKind: Sendable {
    /// Request: send, then receive, in strict alternation (workers and status clients).
    case request
    /// Router: many peers, each message prefixed by the peer's identity (the coordinator).
    case router

    var raw: Int32 { self == .request ? ZMQ_REQ : ZMQ_ROUTER }
}

/// One ZeroMQ socket, owned by one thread.
public final class ZMQSocket {
    private var handle: UnsafeMutableRawPointer?
    private let context: ZMQContext
    /// The endpoint last bound or connected.
    public private(set) var endpoint = ""

    /// Creates a socket with LINGER 0.
    public init(_ context: ZMQContext, _ kind: ZMQSocketKind) throws(ZMQError) {
        self.context = context
        guard let handle = zmq_socket(context.handle, kind.raw) else { throw Self.error("zmq_socket", "") }
        self.handle = handle
        var linger: Int32 = 0
        try check(zmq_setsockopt(handle, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size), "zmq_setsockopt(LINGER)")
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    public func close() {
        if let handle { zmq_close(handle) }
        handle = nil
    }

    /// Refuses incoming messages larger than `bytes` (ZMQ_MAXMSGSIZE): the peer that sent one is disconnected.
    public func limitMessageSize(_ bytes: Int64) throws(ZMQError) {
        var limit = bytes
        try check(zmq_setsockopt(try live(), ZMQ_MAXMSGSIZE, &limit, MemoryLayout<Int64>.size), "zmq_setsockopt(MAXMSGSIZE)")
    }

    /// Makes this socket a CURVE server: traffic is encrypted, and only clients that know the server's
    /// public key can talk to it. `secretKey` is the server's Z85 secret key (40 characters).
    public func enableCurveServer(secretKey: String) throws(ZMQError) {
        var server: Int32 = 1
        try check(zmq_setsockopt(try live(), ZMQ_CURVE_SERVER, &server, MemoryLayout<Int32>.size), "zmq_setsockopt(CURVE_SERVER)")
        try setKey(ZMQ_CURVE_SECRETKEY, secretKey, "CURVE_SECRETKEY")
    }

    /// Makes this socket a CURVE client of the server with Z85 public key `serverKey`, with a fresh key pair of its own.
    public func enableCurveClient(serverKey: String) throws(ZMQError) {
        let pair = try CurveKeyPair.generate()
        try setKey(ZMQ_CURVE_SERVERKEY, serverKey, "CURVE_SERVERKEY")
        try setKey(ZMQ_CURVE_PUBLICKEY, pair.publicKey, "CURVE_PUBLICKEY")
        try setKey(ZMQ_CURVE_SECRETKEY, pair.secretKey, "CURVE_SECRETKEY")
    }

    private func setKey(_ option: Int32, _ key: String, _ name: String) throws(ZMQError) {
        guard key.utf8.count == 40 else {
            throw ZMQError(call: "zmq_setsockopt(\(name))", endpoint: endpoint, message: "a CURVE key is 40 Z85 characters; got \(key.utf8.count)", code: EINVAL)
        }
        var bytes = Array(key.utf8) + [0]
        try check(zmq_setsockopt(try live(), option, &bytes, bytes.count), "zmq_setsockopt(\(name))")
    }

    /// Binds to an endpoint such as `tcp://127.0.0.1:5555` (or port `*` for any free port) and
    /// returns the endpoint actually bound.
    @discardableResult
    public func bind(_ address: String) throws(ZMQError) -> String {
        endpoint = address
        try check(zmq_bind(try live(), address), "zmq_bind")
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        try check(zmq_getsockopt(try live(), ZMQ_LAST_ENDPOINT, &buffer, &size), "zmq_getsockopt(LAST_ENDPOINT)")
        endpoint = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return endpoint
    }

    /// Connects to an endpoint (the connection itself is made in the background).
    public func connect(_ address: String) throws(ZMQError) {
        endpoint = address
        try check(zmq_connect(try live(), address), "zmq_connect")
    }

    /// Sends one message made of `frames`.
    public func send(_ frames: [[UInt8]]) throws(ZMQError) {
        let socket = try live()
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            let sent = frame.withUnsafeBytes { zmq_send(socket, $0.baseAddress, $0.count, flags) }
            if sent < 0 { throw Self.error("zmq_send", endpoint) }
        }
    }

    /// Waits up to `timeout` seconds for a message; returns its frames, or nil on timeout.
    public func receive(timeout: Double) throws(ZMQError) -> [[UInt8]]? {
        let socket = try live()
        var item = zmq_pollitem_t(socket: socket, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let ready = zmq_poll(&item, 1, Int(timeout * 1000))
        if ready < 0 {
            if zmq_errno() == EINTR { return nil }
            throw Self.error("zmq_poll", endpoint)
        }
        guard ready > 0 else { return nil }
        var frames: [[UInt8]] = []
        while true {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            if zmq_msg_recv(&message, socket, 0) < 0 { throw Self.error("zmq_msg_recv", endpoint) }
            let size = zmq_msg_size(&message)
            let bytes = zmq_msg_data(&message).map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            frames.append(bytes)
            if zmq_msg_more(&message) == 0 { break }
        }
        return frames
    }

    private func live() throws(ZMQError) -> UnsafeMutableRawPointer {
        guard let handle else { throw ZMQError(call: "socket", endpoint: endpoint, message: "the socket is closed", code: 0) }
        return handle
    }

    private func check(_ code: Int32, _ call: String) throws(ZMQError) {
        if code != 0 { throw Self.error(call, endpoint) }
    }

    static func error(_ call: String, _ endpoint: String) -> ZMQError {
        let code = zmq_errno()
        return ZMQError(call: call, endpoint: endpoint, message: String(cString: zmq_strerror(code)), code: code)
    }
}

/// A CURVE key pair in Z85 text (40 characters each).
public struct CurveKeyPair: Sendable, Equatable {
    /// The public key, given to clients.
    public var publicKey: String
    /// The secret key, kept by its owner.
    public var secretKey: String

    /// Whether this libzmq was built with CURVE.
    public static var isAvailable: Bool { zmq_has("curve") == 1 }

    /// A new random key pair.
    public static func generate() throws(ZMQError) -> CurveKeyPair {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else { throw ZMQSocket.error("zmq_curve_keypair", "") }
        func text(_ key: [CChar]) -> String { String(decoding: key.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return CurveKeyPair(publicKey: text(publicKey), secretKey: text(secretKey))
    }
}

/// A request/reply exchange of one JSON object with a timeout, for clients.
///
/// A REQ socket that timed out is stuck waiting for its reply, so it is closed and replaced.
public final class JSONRequester {
    private let context: ZMQContext
    private let address: String
    private let serverKey: String?
    private var socket: ZMQSocket

    /// Creates a requester connected to `address`; with `serverKey` (the coordinator's CURVE public
    /// key) the traffic is encrypted and authenticated.
    public init(context: ZMQContext, address: String, serverKey: String? = nil) throws(ZMQError) {
        self.context = context
        self.address = address
        self.serverKey = serverKey
        socket = try Self.connect(context, address, serverKey)
    }

    private static func connect(_ context: ZMQContext, _ address: String, _ serverKey: String?) throws(ZMQError) -> ZMQSocket {
        let socket = try ZMQSocket(context, .request)
        if let serverKey { try socket.enableCurveClient(serverKey: serverKey) }
        try socket.connect(address)
        return socket
    }

    /// Sends `request` (one frame) and returns the reply's bytes, or throws when nothing answers within `timeout` seconds.
    public func request(_ request: [UInt8], timeout: Double) throws(ZMQError) -> [UInt8] {
        try self.request(frames: [request], timeout: timeout)
    }

    /// Sends one message of several frames (a worker's body and its authentication) and returns the
    /// reply's bytes, or throws when nothing answers within `timeout` seconds.
    public func request(frames: [[UInt8]], timeout: Double) throws(ZMQError) -> [UInt8] {
        try socket.send(frames)
        guard let reply = try socket.receive(timeout: timeout) else {
            socket.close()
            socket = try Self.connect(context, address, serverKey)
            throw ZMQError(call: "request", endpoint: address, message: "no reply within \(timeout) s (is the coordinator running there?)", code: EAGAIN)
        }
        return reply.last ?? []
    }
}
