// Tests for LearningRateSchedule and GroupLearningRates: PyTorch's OneCycleLR and
// CosineAnnealingLR values, hand-computed boundary values, monotone segments, warmups,
// discriminative rates and Codable round trips.
import Foundation
import Testing
import ThawTesting
import ThawNN
import ThawOptim

@Suite struct ScheduleTests {
    func multipliers(_ schedule: LearningRateSchedule, totalSteps: Int, through last: Int? = nil) -> [Float] {
        (0...(last ?? totalSteps - 1)).map { schedule.multiplier(step: $0, totalSteps: totalSteps) }
    }

    /// Worst per-element relative error.
    func worstRelative(_ actual: [Float], _ expected: [Double]) -> Double {
        zip(actual, expected).map { abs(Double($0) - $1) / abs($1) }.max() ?? .infinity
    }

    func isNonDecreasing(_ values: ArraySlice<Float>) -> Bool { zip(values, values.dropFirst()).allSatisfy { $0 <= $1 } }
    func isNonIncreasing(_ values: ArraySlice<Float>) -> Bool { zip(values, values.dropFirst()).allSatisfy { $0 >= $1 } }

    @Test func oneCycleMatchesPyTorch() throws {
        let fixture = try FixtureFile(named: "optim")
        let a = multipliers(.oneCycle(peakFraction: 0.3, initialDivisor: 25, finalDivisor: 1e4), totalSteps: 20)
        let b = multipliers(.oneCycle(peakFraction: 0.25, initialDivisor: 10, finalDivisor: 100), totalSteps: 10)
        #expect(worstRelative(a, try fixture.doubles("onecycle.a")) <= 1e-6)
        #expect(worstRelative(b, try fixture.doubles("onecycle.b")) <= 1e-6)
        // Key points of a: 1/25 at step 0, the peak at 0.3·20 − 1 = 5, 1/(25·10⁴) at the last step.
        #expect(abs(a[0] - 0.04) <= 1e-7)
        #expect(a[5] == 1)
        #expect(abs(a[19] - 4e-6) <= 1e-12)
        #expect(isNonDecreasing(a[0...5]) && isNonIncreasing(a[5...]))
        #expect(LearningRateSchedule.oneCycle().multiplier(step: 50, totalSteps: 20) == a[19])
    }

    @Test func cosineMatchesPyTorchCosineAnnealing() throws {
        let fixture = try FixtureFile(named: "optim")
        let values = multipliers(.cosine(warmupSteps: 0, finalFraction: 0.1), totalSteps: 20, through: 20)
        #expect(worstRelative(values, try fixture.doubles("cosine")) <= 1e-6)
        #expect(values[0] == 1 && abs(values[10] - 0.55) <= 1e-7 && abs(values[20] - 0.1) <= 1e-7)
        #expect(isNonIncreasing(values[...]))
    }

    @Test func cosineWithWarmup() {
        let schedule = LearningRateSchedule.cosine(warmupSteps: 5, finalFraction: 0)
        let values = multipliers(schedule, totalSteps: 25, through: 30)
        #expect(Array(values[0..<5]) == [0.2, 0.4, 0.6, 0.8, 1])
        #expect(values[5] == 1)
        #expect(abs(values[15] - 0.5) <= 1e-7)  // halfway through the 20 decay steps
        #expect(abs(values[25]) <= 1e-7 && values[30] == values[25])
        #expect(isNonDecreasing(values[0...5]) && isNonIncreasing(values[5...]))
    }

    @Test func linearWarmupThenConstant() {
        #expect(multipliers(.linearWarmup(steps: 4), totalSteps: 7) == [0.25, 0.5, 0.75, 1, 1, 1, 1])
        #expect(multipliers(.linearWarmup(steps: 0), totalSteps: 3) == [1, 1, 1])
        #expect(multipliers(.constant, totalSteps: 3) == [1, 1, 1])
        #expect(LearningRateSchedule.linearWarmup(steps: 4).learningRate(base: 0.02, step: 1, totalSteps: 10) == 0.01)
    }

    @Test func slantedTriangularFollowsULMFiT() {
        // T = 100, cut = 10: 1/32 at 0, 1 at 10, halfway up at 5, halfway down at 10 + 45, 1/32 at 100.
        let values = multipliers(.slantedTriangular(cutFraction: 0.1, ratio: 32), totalSteps: 100, through: 120)
        #expect(values[0] == Float(1) / 32)
        #expect(abs(values[5] - 16.5 / 32) <= 1e-6)
        #expect(values[10] == 1)
        #expect(abs(values[55] - 16.5 / 32) <= 1e-6)
        #expect(abs(values[100] - Float(1) / 32) <= 1e-7 && values[120] == values[100])
        #expect(isNonDecreasing(values[0...10]) && isNonIncreasing(values[10...]))
        // ⌊10 × 0.7⌋ is 7, as written, even though 0.7 is not exact in binary.
        let late = multipliers(.slantedTriangular(cutFraction: 0.7, ratio: 4), totalSteps: 10)
        #expect(late[7] == 1 && late[6] < 1)
    }

    @Test func everyScheduleStaysWithinZeroAndOne() {
        let schedules: [LearningRateSchedule] = [
            .constant, .linearWarmup(steps: 3), .cosine(warmupSteps: 2, finalFraction: 0.05), .oneCycle(),
            .slantedTriangular(), .slantedTriangular(cutFraction: 0.5, ratio: 1),
        ]
        for schedule in schedules {
            for total in [1, 2, 3, 10, 97] {
                let values = multipliers(schedule, totalSteps: total, through: total + 3)
                #expect(values.allSatisfy { $0 > 0 && $0 <= 1 }, "\(schedule) over \(total) steps: \(values)")
            }
        }
    }

    @Test func validationNamesTheBadParameter() {
        #expect(throws: ScheduleError(parameter: "cutFraction", value: 0, expected: "in (0, 1)")) {
            try LearningRateSchedule.slantedTriangular(cutFraction: 0, ratio: 32).validate()
        }
        #expect(throws: ScheduleError.self) { try LearningRateSchedule.cosine(warmupSteps: -1).validate() }
        #expect(throws: ScheduleError.self) { try LearningRateSchedule.oneCycle(peakFraction: 1).validate() }
        #expect(throws: Never.self) { try LearningRateSchedule.oneCycle().validate() }
    }

    @Test func codableRoundTrip() throws {
        let schedules: [LearningRateSchedule] = [
            .constant, .linearWarmup(steps: 3), .cosine(warmupSteps: 2, finalFraction: 0.05),
            .oneCycle(peakFraction: 0.25, initialDivisor: 10, finalDivisor: 100), .slantedTriangular(cutFraction: 0.2, ratio: 16),
        ]
        let decoded = try JSONDecoder().decode([LearningRateSchedule].self, from: JSONEncoder().encode(schedules))
        #expect(decoded == schedules)
        let written = #"{"cosine": {"warmupSteps": 10, "finalFraction": 0.01}}"#
        #expect(try JSONDecoder().decode(LearningRateSchedule.self, from: Data(written.utf8)) == .cosine(warmupSteps: 10, finalFraction: 0.01))
    }

    @Test func discriminativeRatesDivideByTheFactorPerGroup() {
        let rates = GroupLearningRates.discriminative(groupCount: 4, headRate: 0.01)
        #expect(rates[3] == 0.01)
        for i in 0..<3 { #expect(abs(rates[i + 1] / rates[i] - 2.6) <= 1e-6) }
        #expect(abs(rates[0] - 0.01 / (2.6 * 2.6 * 2.6)) <= 1e-6 * rates[0])
        let byName = GroupLearningRates.discriminative(groupNames: ["stem", "block1", "head"], headRate: 1, factor: 2)
        #expect(byName == ["stem": 0.25, "block1": 0.5, "head": 1])
        #expect(GroupLearningRates.discriminative(groupCount: 1, headRate: 0.3) == [0.3])
        #expect(GroupLearningRates.discriminative(groupCount: 0, headRate: 0.3).isEmpty)
    }

    @Test func thawWarmupRampsFromTheGroupsThaw() throws {
        let ramp = (0..<6).map { GroupLearningRates.thawWarmupMultiplier(stepsSinceThaw: $0, warmupSteps: 4) }
        #expect(ramp == [0.25, 0.5, 0.75, 1, 1, 1])
        #expect(GroupLearningRates.thawWarmupMultiplier(stepsSinceThaw: 0, warmupSteps: 0) == 1)

        // The optimizer's per-group step count is the steps since thaw.
        let store = makeStore()
        let optimizer = try Optimizer(rule: .sgd(momentum: 0.9, nesterov: false), store: store)
        optimizer.initializeState(forNewlyTrainableGroups: [TestGroup.head], store: store)
        for _ in 0..<2 { optimizer.step(store: store, groups: 2..<3, learningRates: [0, 0, 0.1]) }
        optimizer.initializeState(forNewlyTrainableGroups: [TestGroup.body], store: store)
        let multipliers = optimizer.stepCounts.map { GroupLearningRates.thawWarmupMultiplier(stepsSinceThaw: $0, warmupSteps: 4) }
        #expect(multipliers[TestGroup.body] == 0.25 && multipliers[TestGroup.head] == 0.75)
    }
}
