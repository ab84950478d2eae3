// A seeded fuzz test of the coordinator's message handling: 10,000 mutated, truncated, extreme
// and random frames, half of them correctly signed (so the handler itself, not only the signature
// check, meets them). The coordinator must answer every one with a well-formed reply, never crash,
// and keep answering status; unsigned worker messages must never change the run.
import Foundation
import Testing
import ThawCoordinator
import ThawPlan

/// SplitMix64, so every case is reproducible from its seed.
struct FuzzGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(bound, 1))) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// Frames of every type a client can send, valid as written.
let validFrames: [String] = [
    #"{"type":"hello","run_name":"t","rank":0,"world_size":2,"host":"h","pid":1,"config_hash":"abc","groups":["stem","block1","head"]}"#,
    #"{"type":"hello","run_name":"t","rank":1,"world_size":2,"host":"h","pid":2,"config_hash":"abc","groups":["stem","block1","head"]}"#,
    #"{"type":"heartbeat","rank":1,"step":7}"#,
    #"{"type":"progress","rank":0,"epoch":1,"step":3,"loss":0.5,"samples_per_second":100,"bytes_exchanged_per_step":4096}"#,
    #"{"type":"epoch_report","rank":0,"summary":{"epoch":0,"plan_version":1,"trainable_groups":["head"],"train_loss":1,"train_accuracy":0.5,"validation_loss":0.9,"validation_accuracy":0.6,"test_accuracy":null,"seconds":2,"bytes_exchanged":100,"checkpoint_path":"runs/x/c.safetensors"}}"#,
    #"{"type":"plan_request","rank":0,"epoch":1,"previous_validation_loss":0.4}"#,
    #"{"type":"finished","rank":0}"#,
    #"{"type":"failed","rank":1,"reason":"boom"}"#,
    #"{"type":"terminated","rank":1,"reason":"SIGTERM"}"#,
    #"{"type":"status"}"#,
    #"{"type":"control","command":"thaw","groups":["block1"],"token":"t"}"#,
    #"{"type":"control","command":"stop","token":"t"}"#,
]

/// Values that have broken parsers and arithmetic before.
let extremeValues = ["9223372036854775807", "-9223372036854775808", "18446744073709551615", "1e308", "-1e308", "0", "-1",
                     "1.5", "null", "true", "\"\"", "[]", "{}", "[[[[[[[[[[]]]]]]]]]]", "\"\(String(repeating: "x", count: 5000))\"",
                     "\"\\u0000\"", "\"\\ud800\"", "2147483648", "100000000", "[\"head\",\"head\"]", "[\"nope\"]"]

/// One fuzz case's frame, derived from `generator`.
func fuzzFrame(_ generator: inout FuzzGenerator) -> [UInt8] {
    var bytes = Array(generator.pick(validFrames).utf8)
    switch generator.below(6) {
    case 0:  // flip bytes
        for _ in 0..<(1 + generator.below(8)) where !bytes.isEmpty { bytes[generator.below(bytes.count)] = UInt8(truncatingIfNeeded: generator.next()) }
    case 1:  // truncate
        bytes = Array(bytes.prefix(generator.below(bytes.count + 1)))
    case 2:  // replace a value after a colon with an extreme one
        let text = String(decoding: bytes, as: UTF8.self)
        let colons = text.indices.filter { text[$0] == ":" }
        if let colon = colons.isEmpty ? nil : colons[generator.below(colons.count)] {
            let rest = text[text.index(after: colon)...]
            let end = rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex
            bytes = Array((String(text[...colon]) + generator.pick(extremeValues) + String(text[end...])).utf8)
        }
    case 3:  // insert random bytes
        let insertion = (0..<generator.below(32)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        bytes.insert(contentsOf: insertion, at: generator.below(bytes.count + 1))
    case 4:  // add an unknown field, or duplicate one
        let text = String(decoding: bytes, as: UTF8.self)
        bytes = Array((String(text.dropLast()) + (generator.below(2) == 0 ? #","rank":5}"# : #","zzz":1}"#)).utf8)
    default:  // random bytes
        bytes = (0..<generator.below(200)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    }
    return bytes
}

@Suite struct MessageFuzzTests {
    @Test func tenThousandSeededFramesNeverCrashAndAlwaysGetAWellFormedReply() throws {
        let secret = JobSecret.random()
        var settings = gradualSettings()
        settings.jobSecret = secret
        settings.controlToken = "t"
        let coordinator = try Coordinator(settings: settings, statePath: nil)
        let signer = Signer(secret: secret)
        var generator = FuzzGenerator(state: 20261204)
        var replies: [String: Int] = [:]
        for index in 0..<10_000 {
            let body = fuzzFrame(&generator)
            let signed = generator.below(2) == 0
            let authentication = signed ? secret.authentication(for: body, sequence: signer.sequence.next()) : nil
            let unsignedBefore = signed ? nil : try statusWithoutCounters(coordinator, now: Double(index))
            let reply = coordinator.receive(body, authentication: authentication, now: Double(index))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.encoded())) as? [String: Any],
                                      "case \(index): the reply is not a JSON object")
            let type = try #require(object["type"] as? String, "case \(index): the reply has no type")
            #expect(["ok", "plan", "status", "error"].contains(type), "case \(index): reply type \(type)")
            replies[type, default: 0] += 1
            if let unsignedBefore, (try? CoordinatorRequest.decode(body))?.worker != nil {
                #expect(try statusWithoutCounters(coordinator, now: Double(index)) == unsignedBefore,
                        "case \(index): an unsigned worker message changed the run: \(String(decoding: body, as: UTF8.self))")
            }
            coordinator.checkLiveness(now: Double(index))
        }
        guard case .status = coordinator.receive(CoordinatorRequest.status.encoded(), authentication: nil, now: 10_001) else {
            Issue.record("the coordinator stopped answering status"); return
        }
        // The cases reach past decoding and authentication, not only the error path.
        #expect((replies["ok"] ?? 0) > 100 && (replies["error"] ?? 0) > 1000, "\(replies)")
    }
}
