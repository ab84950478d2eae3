// Worker authentication without sockets: every worker message type is refused unsigned, with
// another secret, tampered or replayed, and then changes nothing; signed messages pass once;
// job secret files are made private and read strictly; no reply echoes a secret or a digest.
import Foundation
import Testing
@testable import ThawCoordinator
import ThawPlan

/// A coordinator with two ranks said hello (signed) and the first plan handed out, and the
/// secret its workers sign with.
func authenticatedRun(secret: JobSecret = .random()) throws -> (coordinator: Coordinator, signer: Signer) {
    var settings = gradualSettings()
    settings.jobSecret = secret
    let coordinator = try Coordinator(settings: settings, statePath: nil)
    let signer = Signer(secret: secret)
    for rank in 0..<2 {
        guard case .ok = signer.send(hello(rank: rank), to: coordinator, now: 0) else { throw MessageError(field: "", message: "hello refused") }
    }
    guard case .plan = signer.send(.planRequest(PlanRequestMessage(rank: 0, epoch: 0, previousValidationLoss: nil)), to: coordinator, now: 1) else {
        throw MessageError(field: "", message: "no plan")
    }
    return (coordinator, signer)
}

/// Signs messages as a worker process does.
struct Signer {
    let secret: JobSecret
    let sequence = MessageSequence()

    /// The two frames of `request`.
    func frames(_ request: CoordinatorRequest) -> (body: [UInt8], authentication: [UInt8]) {
        let body = request.encoded()
        return (body, secret.authentication(for: body, sequence: sequence.next()))
    }

    /// Sends `request` signed.
    func send(_ request: CoordinatorRequest, to coordinator: Coordinator, now: Double) -> CoordinatorReply {
        let (body, authentication) = frames(request)
        return coordinator.receive(body, authentication: authentication, now: now)
    }
}

/// One of each message a worker sends, each of which would change the run if accepted.
let forgeries: [CoordinatorRequest] = [
    .hello(HelloMessage(runName: "t", rank: 1, worldSize: 2, host: "attacker", pid: 666, configHash: "abc", groups: ["stem", "block1", "head"])),
    .heartbeat(HeartbeatMessage(rank: 1, step: 99_999)),
    .progress(ProgressMessage(rank: 0, epoch: 98, step: 1, loss: 0, samplesPerSecond: 1e9, bytesExchangedPerStep: 0)),
    .epochReport(EpochReportMessage(rank: 0, summary: EpochSummary(
        epoch: 98, planVersion: 9, trainableGroups: ["head"], trainLoss: 0, trainAccuracy: 1, validationLoss: nil, validationAccuracy: nil,
        testAccuracy: 1, seconds: 1, bytesExchanged: 0, checkpointPath: "/tmp/forged.safetensors"))),
    .planRequest(PlanRequestMessage(rank: 0, epoch: 1, previousValidationLoss: 99)),
    .finished(EndMessage(rank: 0, reason: nil)),
    .failed(EndMessage(rank: 1, reason: "forged")),
    .terminated(EndMessage(rank: 1, reason: "SIGTERM")),
]

/// The status as JSON, without the rejection counters (which a refusal is expected to change).
func statusWithoutCounters(_ coordinator: Coordinator, now: Double) throws -> String {
    var report = coordinator.status(now: now)
    report.rejectedMessages = RejectedMessages()
    return String(decoding: CoordinatorReply.status(report).encoded(), as: UTF8.self)
}

@Suite struct WorkerAuthenticationTests {
    @Test func everyWorkerMessageIsRefusedWithoutTheSecretAndChangesNothing() throws {
        let (coordinator, _) = try authenticatedRun()
        let stranger = Signer(secret: .random())
        let before = try statusWithoutCounters(coordinator, now: 2)
        #expect(forgeries.count == 8)
        for (index, forged) in forgeries.enumerated() {
            let body = forged.encoded()
            let strangers = stranger.frames(forged)
            // Unsigned, signed with another secret, a garbage frame, and a right mac over another body.
            let genuine = Signer(secret: .random()).frames(.status)
            for authentication in [nil, strangers.authentication, Array("{}".utf8), Array(#"{"sequence":1,"mac":"00"}"#.utf8), genuine.authentication] {
                guard case .error(let error) = coordinator.receive(body, authentication: authentication, now: 2) else {
                    Issue.record("\(forged.typeName) accepted with \(authentication.map { String(decoding: $0, as: UTF8.self) } ?? "no signature")")
                    continue
                }
                #expect(error.field == "authentication")
            }
            #expect(coordinator.rejected.unauthenticated == 5 * (index + 1))
        }
        #expect(try statusWithoutCounters(coordinator, now: 2) == before, "a forged message changed the run")
        coordinator.checkLiveness(now: 3)
        #expect(coordinator.status(now: 3).state == .running)
        #expect(coordinator.status(now: 3).rejectedMessages.unauthenticated == 40)
    }

    @Test func aTamperedBodyIsRefused() throws {
        let (coordinator, signer) = try authenticatedRun()
        let (body, authentication) = signer.frames(.planRequest(PlanRequestMessage(rank: 0, epoch: 1, previousValidationLoss: 0.5)))
        let tampered = Array(String(decoding: body, as: UTF8.self).replacingOccurrences(of: "0.5", with: "99").utf8)
        guard case .error(let error) = coordinator.receive(tampered, authentication: authentication, now: 2) else {
            Issue.record("a tampered plan request was accepted"); return
        }
        #expect(error.field == "authentication")
        guard case .plan = coordinator.receive(body, authentication: authentication, now: 2) else {
            Issue.record("the genuine request was refused"); return
        }
    }

    @Test func aSignedMessageIsAdmittedOnceAndReplaysAreCounted() throws {
        let (coordinator, signer) = try authenticatedRun()
        let (body, authentication) = signer.frames(.finished(EndMessage(rank: 0, reason: nil)))
        guard case .ok = coordinator.receive(body, authentication: authentication, now: 2) else { Issue.record("refused"); return }
        guard case .error(let replay) = coordinator.receive(body, authentication: authentication, now: 2) else {
            Issue.record("a replay was accepted"); return
        }
        #expect(replay.field == "authentication" && replay.message.contains("replay"))
        #expect(coordinator.rejected.replayed == 1)
    }

    @Test func theReplayWindowTakesReorderingButNotOldOrRepeatedNumbers() {
        var window = ReplayWindow()
        func admit(_ sequence: UInt64) -> Bool { window.admit(sequence) }
        let base: UInt64 = 1_700_000_000_000_000
        #expect(admit(base + 10))
        #expect(admit(base + 5), "a message from another thread of the rank may arrive a little late")
        #expect(!admit(base + 5))
        #expect(!admit(base + 10))
        #expect(admit(base + ReplayWindow.span + 20))
        #expect(!admit(base + 15), "older than the window")
        for offset in 0..<200 { #expect(admit(base + ReplayWindow.span + 100 + UInt64(offset))) }
        #expect(window.recent.count <= 201)
    }

    @Test func aRestartedCoordinatorRefusesWhatItAdmittedBefore() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-auth-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secret = JobSecret.random()
        var settings = gradualSettings()
        settings.jobSecret = secret
        let statePath = directory + "/state.json"
        let first = try Coordinator(settings: settings, statePath: statePath)
        let signer = Signer(secret: secret)
        let (body, authentication) = signer.frames(hello(rank: 0, worldSize: 1))
        guard case .ok = first.receive(body, authentication: authentication, now: 0) else { Issue.record("hello refused"); return }
        let second = try Coordinator(settings: settings, statePath: statePath)
        guard case .error = second.receive(body, authentication: authentication, now: 1) else {
            Issue.record("a message admitted before the restart was admitted again"); return
        }
        guard case .ok = signer.send(hello(rank: 0, worldSize: 1), to: second, now: 1) else { Issue.record("a new hello was refused"); return }
    }

    @Test func statusAndControlNeedNoSignature() throws {
        let (coordinator, _) = try authenticatedRun()
        guard case .status = coordinator.receive(CoordinatorRequest.status.encoded(), authentication: nil, now: 2) else {
            Issue.record("status refused"); return
        }
        guard case .error(let control) = coordinator.receive(
            CoordinatorRequest.control(ControlMessage(command: .stop, token: "x")).encoded(), authentication: nil, now: 2) else {
            Issue.record("control without a configured token accepted"); return
        }
        #expect(control.field == "token", "control is checked by its token, not by the job secret")
    }

    @Test func noReplyEchoesTheSecretOrTheRunsDigest() throws {
        let bytes = (0..<32).map { UInt8($0 * 7 % 256) }
        let secret = try #require(JobSecret(bytes: bytes))
        let (coordinator, signer) = try authenticatedRun(secret: secret)
        let hexSecret = bytes.map { String(format: "%02x", $0) }.joined()
        var replies: [String] = []
        replies.append(String(decoding: signer.send(hello(rank: 1, hash: "different"), to: coordinator, now: 2).encoded(), as: UTF8.self))
        for forged in forgeries { replies.append(String(decoding: coordinator.receive(forged.encoded(), authentication: nil, now: 2).encoded(), as: UTF8.self)) }
        replies.append(String(decoding: coordinator.receive(CoordinatorRequest.status.encoded(), authentication: nil, now: 2).encoded(), as: UTF8.self))
        for reply in replies {
            #expect(!reply.contains(hexSecret) && !reply.contains("\"abc\"") && !reply.contains(" abc"), "\(reply)")
        }
        #expect(replies[0].contains("differs"), "\(replies[0])")
    }

    @Test func runIDsAreAcceptedOnEveryWorkerMessageAndOtherRunsAreRefused() throws {
        let (coordinator, signer) = try authenticatedRun()
        for message in [CoordinatorRequest.finished(EndMessage(rank: 0, reason: nil)), .terminated(EndMessage(rank: 1, reason: "SIGTERM")),
                        .failed(EndMessage(rank: 1, reason: "x"))] {
            #expect(try CoordinatorRequest.decode(message.naming(runId: "run-other").encoded()) == message.naming(runId: "run-other"))
            guard case .error(let error) = signer.send(message.naming(runId: "run-other"), to: coordinator, now: 2) else { Issue.record("another run's message accepted"); continue }
            #expect(error.field == "run_id")
        }
        guard case .ok = signer.send(CoordinatorRequest.finished(EndMessage(rank: 0, reason: nil)).naming(runId: coordinator.runID), to: coordinator, now: 2) else {
            Issue.record("a finished message naming this run was refused"); return
        }
    }
}

@Suite struct JobSecretFileTests {
    func scratch() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-secret-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func madeOnceReadableByItsOwnerOnlyAndKept() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/run/job.secret"
        let made = try JobSecret.loadOrCreate(at: path)
        #expect(made.created)
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        let again = try JobSecret.loadOrCreate(at: path)
        #expect(!again.created)
        let body = Array("{}".utf8)
        #expect(again.secret.verify(body: body, authentication: made.secret.authentication(for: body, sequence: 7)) == 7)
    }

    @Test func aSecretOthersCanReadOrAMalformedOneIsRefused() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let open = directory + "/open.secret"
        try String(repeating: "ab", count: 32).write(toFile: open, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: open)
        #expect { try JobSecret.load(from: open) } throws: { ($0 as? JobSecretError)?.problem.contains("chmod 600") == true }
        let short = directory + "/short.secret"
        try "abcd".write(toFile: short, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: short)
        #expect { try JobSecret.load(from: short) } throws: { ($0 as? JobSecretError)?.problem.contains("hexadecimal") == true }
        #expect { try JobSecret.load(from: directory + "/absent", waitingUpTo: 0.3) } throws: { ($0 as? JobSecretError)?.isMissing == true }
    }

    @Test func rejectionsAreLoggedAtMostOncePerInterval() {
        var log = RejectionLog(interval: 10, start: 0)
        var lines: [String] = []
        var counts = RejectedMessages()
        for second in 0..<35 {
            counts.unauthenticated += 1_000
            log.report(counts, now: Double(second), log: { lines.append($0) })
        }
        log.flush(counts, log: { lines.append($0) })
        #expect(lines.count == 4, "\(lines)")
        #expect(lines.first?.contains("unauthenticated") == true)
    }
}
