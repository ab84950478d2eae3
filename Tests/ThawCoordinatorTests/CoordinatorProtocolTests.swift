// The coordinator's protocol without sockets: plans, liveness, failure attribution, malformed
// frames, status keys, and operator control.
import Foundation
import Testing
import ThawCoordinator
import ThawPlan

func hello(rank: Int, worldSize: Int = 2, hash: String = "abc") -> CoordinatorRequest {
    .hello(HelloMessage(runName: "t", rank: rank, worldSize: worldSize, host: "h", pid: 100 + rank, configHash: hash,
                        groups: ["stem", "block1", "head"]))
}

func gradualSettings(heartbeatTimeout: Double = 10) -> CoordinatorSettings {
    var unfreezing = UnfreezingSection()
    unfreezing.policy = .gradual()
    return CoordinatorSettings(unfreezing: unfreezing, baseLearningRate: 0.01, batchNormPolicy: "running_statistics",
                               epochs: 3, heartbeatTimeout: heartbeatTimeout)
}

@Suite struct CoordinatorProtocolTests {
    @Test func plansFollowThePolicyAndStatusTracksTheRun() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        #expect(coordinator.status(now: 0).state == .waiting)
        guard case .ok = coordinator.handle(hello(rank: 0), now: 0), case .ok = coordinator.handle(hello(rank: 1), now: 0) else {
            Issue.record("hello refused"); return
        }
        guard case .plan(let first) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 0, previousValidationLoss: nil)), now: 1),
              case .plan(let second) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 1, previousValidationLoss: 0.5)), now: 2) else {
            Issue.record("no plan"); return
        }
        #expect(first.trainableGroups == ["head"] && first.version == 1)
        #expect(second.trainableGroups == ["block1", "head"] && second.version == 2)
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 1, step: 7)), now: 3)
        let status = coordinator.status(now: 3.5)
        #expect(status.state == .running && status.worldSize == 2)
        #expect(status.ranks.map(\.step) == [0, 7])
        #expect(status.schedule?.frozenGroups == ["stem"])
        #expect(status.schedule?.nextChange == 2)
        _ = coordinator.handle(.finished(EndMessage(rank: 0, reason: nil)), now: 4)
        #expect(coordinator.status(now: 4).state == .running)
        _ = coordinator.handle(.finished(EndMessage(rank: 1, reason: nil)), now: 4)
        #expect(coordinator.status(now: 4).state == .finished)
    }

    @Test func refusesADifferentConfiguration() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        _ = coordinator.handle(hello(rank: 0), now: 0)
        guard case .error(let error) = coordinator.handle(hello(rank: 1, hash: "xyz"), now: 0) else {
            Issue.record("accepted a different configuration"); return
        }
        #expect(error.field == "config_hash")
    }

    @Test func silentRankFailsTheRunByName() throws {
        let coordinator = try Coordinator(settings: gradualSettings(heartbeatTimeout: 5), statePath: nil)
        _ = coordinator.handle(hello(rank: 0), now: 0)
        _ = coordinator.handle(hello(rank: 1), now: 0)
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 0, step: 1)), now: 6)
        coordinator.checkLiveness(now: 6.5)
        let status = coordinator.status(now: 6.5)
        #expect(status.state == .failed)
        #expect(status.error?.contains("rank 1") == true)
        #expect(status.ranks.map(\.alive) == [true, false])
    }

    /// mpirun stops the survivors with SIGTERM when a rank dies: the survivors' `terminated` reports
    /// are not blamed; the rank that went silent is, after a short silence rather than the timeout.
    @Test func terminatedRanksPointAtTheRankThatWentSilent() throws {
        let coordinator = try Coordinator(settings: gradualSettings(heartbeatTimeout: 30), statePath: nil)
        for rank in 0..<3 { _ = coordinator.handle(hello(rank: rank, worldSize: 3), now: 0) }
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 0, step: 4)), now: 9)
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 1, step: 4)), now: 8)   // rank 1 dies after this beat
        _ = coordinator.handle(.heartbeat(HeartbeatMessage(rank: 2, step: 4)), now: 9)
        _ = coordinator.handle(.terminated(EndMessage(rank: 0, reason: "SIGTERM")), now: 9.2)
        _ = coordinator.handle(.terminated(EndMessage(rank: 2, reason: "SIGTERM")), now: 9.3)
        #expect(coordinator.status(now: 9.5).state == .running, "a termination alone must not fail the run")
        coordinator.checkLiveness(now: 8 + Coordinator.silenceAfterTermination + 0.1)
        let status = coordinator.status(now: 11)
        #expect(status.state == .failed)
        #expect(status.failedRank == 1)
        #expect(status.error?.contains("rank 1 (host h, pid 101) died") == true, "\(status.error ?? "")")
        #expect(status.ranks.map(\.ended) == [.terminated, .dead, .terminated])

        // A relaunch continues the run; the failure is kept as history.
        _ = coordinator.handle(hello(rank: 0, worldSize: 3), now: 20)
        let resumed = coordinator.status(now: 20)
        #expect(resumed.state == .running && resumed.error == nil && resumed.failedRank == nil)
        #expect(resumed.previousFailures.count == 1 && resumed.previousFailures[0].contains("rank 1"))
    }

    /// A launcher's --max-restarts can relaunch before the coordinator has seen the failure: a new
    /// process for a rank of the running job records the failure once (not once per rank) and counts a restart.
    @Test func aRelaunchBeforeTheFailureShowedCountsOneRestart() throws {
        let coordinator = try Coordinator(settings: gradualSettings(heartbeatTimeout: 30), statePath: nil)
        for rank in 0..<2 { _ = coordinator.handle(hello(rank: rank), now: 0) }
        func relaunched(_ rank: Int, pid: Int, worldSize: Int = 2) -> CoordinatorRequest {
            .hello(HelloMessage(runName: "t", rank: rank, worldSize: worldSize, host: "h", pid: pid, configHash: "abc", groups: ["stem", "block1", "head"]))
        }
        guard case .ok = coordinator.handle(relaunched(0, pid: 500), now: 5), case .ok = coordinator.handle(relaunched(1, pid: 501), now: 5) else {
            Issue.record("relaunched hello refused"); return
        }
        let status = coordinator.status(now: 5)
        #expect(status.state == .running && status.restarts == 1 && status.previousFailures.count == 1, "\(status.previousFailures)")
        #expect(status.previousFailures.first?.contains("pid 100") == true && status.ranks.map(\.pid) == [500, 501])
        // After a failure, a relaunch on fewer ranks (a dropped host) is accepted.
        _ = coordinator.handle(.failed(EndMessage(rank: 1, reason: "lost host")), now: 6)
        guard case .ok = coordinator.handle(relaunched(0, pid: 600, worldSize: 1), now: 7) else { Issue.record("smaller relaunch refused"); return }
        #expect(coordinator.status(now: 7).worldSize == 1 && coordinator.status(now: 7).restarts == 2)
    }

    @Test func everyRankTerminatedMeansTheJobWasStoppedFromOutside() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        for rank in 0..<2 { _ = coordinator.handle(hello(rank: rank), now: 0) }
        _ = coordinator.handle(.terminated(EndMessage(rank: 1, reason: "SIGINT")), now: 1)
        _ = coordinator.handle(.terminated(EndMessage(rank: 0, reason: "SIGINT")), now: 1)
        let status = coordinator.status(now: 1)
        #expect(status.state == .failed && status.failedRank == nil)
        #expect(status.error?.contains("stopped from outside") == true, "\(status.error ?? "")")
    }

    @Test func malformedFramesAreRefusedByField() {
        func field(_ text: String) -> String? {
            do { _ = try CoordinatorRequest.decode(Array(text.utf8)); return nil } catch { return error.field }
        }
        #expect(field("not json") == "")
        #expect(field(#"{"type": 3}"#) == "type")
        #expect(field(#"{"type": "launch"}"#) == "type")
        #expect(field(#"{"type": "heartbeat", "rank": "one", "step": 1}"#) == "rank")
        #expect(field(#"{"type": "heartbeat", "rank": 1}"#) == "step")
        #expect(field(#"{"type": "heartbeat", "rank": 1, "step": 2, "extra": 0}"#) == "extra")
        #expect(field(#"{"type": "failed", "rank": 1}"#) == "reason")
        #expect(field(#"{"type": "status", "verbose": true}"#) == "verbose")
        #expect(throws: Never.self) { try CoordinatorRequest.decode(Array(#"{"type": "status"}"#.utf8)) }
        // Every request survives its own encoding.
        let requests: [CoordinatorRequest] = [hello(rank: 1), .heartbeat(HeartbeatMessage(rank: 0, step: 3)), .status,
                                              .failed(EndMessage(rank: 0, reason: "x"))]
        for request in requests { #expect((try? CoordinatorRequest.decode(request.encoded())) == request) }
    }

    @Test func statusAlwaysHasEveryKey() throws {
        let coordinator = try Coordinator(settings: gradualSettings(), statePath: nil)
        let bytes = CoordinatorReply.status(coordinator.status(now: 0)).encoded()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        for key in ["state", "run_id", "world_size", "ranks", "epoch", "step", "samples_per_second", "schedule", "metrics",
                    "checkpoint", "bytes_exchanged_per_step", "error"] {
            #expect(object.keys.contains(key), "status lacks \(key)")
        }
    }
}

@Suite struct CoordinatorControlTests {
    func coordinator(token: String?) throws -> Coordinator {
        var settings = gradualSettings()
        settings.controlToken = token
        let coordinator = try Coordinator(settings: settings, statePath: nil)
        _ = coordinator.handle(hello(rank: 0, worldSize: 1), now: 0)
        return coordinator
    }

    @Test func controlNeedsTheToken() throws {
        let off = try coordinator(token: nil)
        guard case .error(let disabled) = off.handle(.control(ControlMessage(command: .stop, token: "x")), now: 1) else {
            Issue.record("control accepted without a configured token"); return
        }
        #expect(disabled.field == "token")
        let on = try coordinator(token: "right")
        guard case .error(let wrong) = on.handle(.control(ControlMessage(command: .stop, token: "wrong")), now: 1) else {
            Issue.record("a wrong token was accepted"); return
        }
        #expect(wrong.message.contains("refused"))
        // Nothing changed: progress replies carry no stop.
        guard case .ok(_, let control) = on.handle(.progress(ProgressMessage(rank: 0, epoch: 0, step: 1, loss: 1, samplesPerSecond: 1, bytesExchangedPerStep: 0)), now: 2) else {
            Issue.record("progress refused"); return
        }
        #expect(control == nil)
        _ = on.handle(.control(ControlMessage(command: .stop, token: "right")), now: 3)
        guard case .ok(_, let stop) = on.handle(.progress(ProgressMessage(rank: 0, epoch: 0, step: 2, loss: 1, samplesPerSecond: 1, bytesExchangedPerStep: 0)), now: 4) else {
            Issue.record("progress refused"); return
        }
        #expect(stop == .stop)
    }

    @Test func thawNowWidensTheNextPlan() throws {
        let coordinator = try coordinator(token: "t")
        guard case .plan(let first) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 0, previousValidationLoss: nil)), now: 1) else {
            Issue.record("no plan"); return
        }
        #expect(first.trainableGroups == ["head"])
        guard case .error(let unknown) = coordinator.handle(.control(ControlMessage(command: .thaw(groups: ["blok1"]), token: "t")), now: 2) else {
            Issue.record("unknown group accepted"); return
        }
        #expect(unknown.field == "groups")
        _ = coordinator.handle(.control(ControlMessage(command: .thaw(groups: ["block1"]), token: "t")), now: 2)
        guard case .plan(let next) = coordinator.handle(.planRequest(PlanRequestMessage(rank: 0, epoch: 1, previousValidationLoss: 1)), now: 3) else {
            Issue.record("no plan"); return
        }
        #expect(next.trainableGroups == ["block1", "head"])
        #expect(next.newlyThawed == ["block1"])
    }
}

