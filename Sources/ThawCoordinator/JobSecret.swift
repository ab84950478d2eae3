// JobSecret: how a worker proves to the coordinator that it belongs to this run.
//
// Note: worker authentication. Every worker message (hello, heartbeat, progress, epoch report,
// plan request, finished, failed, terminated) is two frames: the JSON body, then an
// authentication frame `{"sequence": S, "mac": "<hex>"}` whose mac is
// HMAC-SHA256(job secret, decimal(S) + "\n" + body). The job secret is 32 random bytes in a file
// only the job's user can read (mode 0600), made by the coordinator or a launcher. S grows with
// every message a process sends (a microsecond clock, never repeating), and the coordinator admits
// each (rank, S) once, within a window, so a captured message cannot be replayed. Status queries and
// operator commands (with their own token) stay one frame. docs/protocol.md has the full text.
import Crypto
import Foundation
import ThawPlan

#if canImport(Glibc)
import Glibc
#endif

/// A job secret that could not be read, made or trusted, naming the file.
public struct JobSecretError: Error, CustomStringConvertible, Equatable {
    /// The secret file.
    public var path: String
    /// What is wrong, and what to do.
    public var problem: String
    /// Whether the file does not exist (yet).
    public var isMissing = false

    /// `path: problem`.
    public var description: String { "\(path): \(problem)" }
}

/// The per-run secret the workers and the coordinator share; messages are signed with it.
public struct JobSecret: Sendable {
    private let bytes: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: bytes) }

    /// Bytes of a secret made by ``create(at:)``.
    public static let byteCount = 32

    /// A secret from raw bytes (at least 16).
    public init?(bytes: [UInt8]) {
        guard bytes.count >= 16 else { return nil }
        self.bytes = bytes
    }

    private init(key: SymmetricKey) { bytes = key.withUnsafeBytes { Array($0) } }

    /// A fresh random secret held only in memory (for a coordinator that no worker can join, and tests).
    public static func random() -> JobSecret { JobSecret(key: SymmetricKey(size: .bits256)) }

    /// Reads a secret file: hexadecimal text (surrounding white space ignored) of at least 16 bytes,
    /// readable by its owner only.
    /// - Throws: ``JobSecretError`` when the file is missing, unreadable, readable by others, or malformed.
    public static func load(from path: String) throws(JobSecretError) -> JobSecret {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw JobSecretError(path: path, problem: "cannot read the job secret: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw JobSecretError(path: path, problem: String(format: "the job secret is readable by other users (mode %04o); run: chmod 600 %@",
                                                             Int(info.st_mode & 0o777), path))
        }
        guard let data = FileManager.default.contents(atPath: path), data.count <= 4096 else {
            throw JobSecretError(path: path, problem: "cannot read the job secret (or it is over 4 KB)")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = hexBytes(text), let secret = JobSecret(bytes: bytes) else {
            throw JobSecretError(path: path, problem: "expected at least 32 hexadecimal digits (16 bytes); make one with `thaw keygen --job-secret \(path)`")
        }
        return secret
    }

    /// Reads a secret file that may not exist yet (the coordinator makes it when it starts), waiting
    /// up to `timeout` seconds for it to appear; any other problem is thrown at once.
    public static func load(from path: String, waitingUpTo timeout: Double) throws(JobSecretError) -> JobSecret {
        let deadline = Date().addingTimeInterval(timeout)
        while access(path, F_OK) != 0 && errno == ENOENT {
            guard Date() < deadline else {
                throw JobSecretError(path: path, problem: "no job secret after \(Int(timeout)) s: `thaw coordinator` makes it when it starts "
                                     + "(with the same configuration), or make it with `thaw keygen --job-secret \(path)`", isMissing: true)
            }
            usleep(200_000)
        }
        return try load(from: path)
    }

    /// Makes a new secret file at `path` (mode 0600, parent directories created), or reads the one
    /// already there, so that a restarted coordinator and relaunched workers keep the same secret.
    /// - Returns: The secret, and whether this call created the file.
    public static func loadOrCreate(at path: String) throws(JobSecretError) -> (secret: JobSecret, created: Bool) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
                throw JobSecretError(path: path, problem: "cannot create the directory \(directory) for the job secret")
            }
        }
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if descriptor < 0 {
            guard errno == EEXIST else {
                throw JobSecretError(path: path, problem: "cannot create the job secret: \(String(cString: strerror(errno)))")
            }
            return (try load(from: path), false)
        }
        let text = Array((bytes.map { String(format: "%02x", $0) }.joined() + "\n").utf8)
        let written = text.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == text.count, synced else {
            unlink(path)
            throw JobSecretError(path: path, problem: "cannot write the job secret")
        }
        return (JobSecret(key: SymmetricKey(data: bytes)), true)
    }

    /// The authentication frame for `body` sent as message number `sequence`.
    public func authentication(for body: [UInt8], sequence: UInt64) -> [UInt8] {
        let mac = HMAC<SHA256>.authenticationCode(for: Self.signedBytes(body, sequence), using: key)
        let hexMac = Array(mac).map { String(format: "%02x", $0) }.joined()
        return Array(#"{"mac":"\#(hexMac)","sequence":\#(sequence)}"#.utf8)
    }

    /// Checks an authentication frame against `body` in constant time; returns its sequence number
    /// when the mac is right, nil otherwise (malformed frames included).
    public func verify(body: [UInt8], authentication: [UInt8]) -> UInt64? {
        guard authentication.count <= 256,
              let object = try? JSONSerialization.jsonObject(with: Data(authentication)) as? [String: Any], object.count == 2,
              let macText = object["mac"] as? String, let mac = Self.hexBytes(macText), mac.count == SHA256.byteCount,
              let number = object["sequence"] as? NSNumber, let sequence = UInt64(exactly: number.doubleValue),
              number.stringValue == String(sequence) else { return nil }
        let valid = HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.signedBytes(body, sequence), using: key)
        return valid ? sequence : nil
    }

    private static func signedBytes(_ body: [UInt8], _ sequence: UInt64) -> [UInt8] {
        Array("\(sequence)\n".utf8) + body
    }

    private static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0, !digits.isEmpty else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// The numbers a worker process gives its messages: a microsecond clock that never repeats and never
/// goes back, shared by every thread and socket of the process.
public final class MessageSequence: @unchecked Sendable {
    private let lock = NSLock()
    private var last: UInt64 = 0

    /// Creates a sequence.
    public init() {}

    /// The next number: the current time in microseconds, or one more than the last number if that is later.
    public func next() -> UInt64 {
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1_000_000))
        return lock.withLock {
            last = max(last + 1, now)
            return last
        }
    }
}

/// The coordinator's record of the sequence numbers a rank has used, to refuse replays.
///
/// A number is admitted once, if it is above the floor (the highest number saved before a coordinator
/// restart) and not more than ``span`` below the highest admitted so far; messages from a rank's
/// heartbeat thread and training thread may arrive slightly out of order, so a window is kept rather
/// than only the highest.
struct ReplayWindow: Codable, Equatable {
    /// Microseconds below the highest number within which numbers are still admitted (once each).
    static let span: UInt64 = 120_000_000
    /// Numbers at or below this are refused (set from the saved state after a restart).
    var floor: UInt64 = 0
    /// The highest number admitted.
    var highest: UInt64 = 0
    /// Numbers admitted within the window.
    var recent: Set<UInt64> = []

    enum CodingKeys: String, CodingKey { case highest }

    init() {}

    /// A window restored from saved state: everything up to the saved highest is refused.
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        highest = try c.decode(UInt64.self, forKey: .highest)
        floor = highest
    }

    /// Admits `sequence` once; false for a replay or a number too old to tell.
    mutating func admit(_ sequence: UInt64) -> Bool {
        guard sequence > floor, highest < Self.span || sequence > highest - Self.span, !recent.contains(sequence) else { return false }
        recent.insert(sequence)
        if sequence > highest {
            highest = sequence
            if recent.count > 64 { recent = recent.filter { $0 > highest - min(highest, Self.span) } }
        }
        return true
    }
}
