// Tests for the unfreezing planner: each policy, versions, discriminative rates and validation.
import Testing
import ThawRun
import ThawTrainer
import ThawPlan

@Suite struct UnfreezingPlannerTests {
    let groups = ["stem", "block1", "block2", "head"]

    func planner(_ policy: UnfreezingPolicy) throws -> UnfreezingPlanner {
        try UnfreezingPlanner(settings: UnfreezingSection(policy: policy), groupNames: groups, baseLearningRate: 0.01,
                              batchNormPolicy: "running_statistics")
    }

    @Test func gradualThawsOneGroupPerEpochFromTheTop() throws {
        var p = try planner(.gradual())
        let plans = (0..<5).map { p.plan(forEpoch: $0, epochs: 100) }
        #expect(plans.map(\.trainableGroups) == [["head"], ["block2", "head"], ["block1", "block2", "head"], groups, groups])
        #expect(plans.map(\.version) == [1, 2, 3, 4, 4])
        #expect(plans.map(\.newlyThawed) == [["head"], ["block2"], ["block1"], ["stem"], []])
    }

    @Test func gradualEveryTwoEpochs() throws {
        var p = try planner(.gradual(every: 2))
        #expect((0..<4).map { p.plan(forEpoch: $0, epochs: 100).trainableGroups.count } == [1, 1, 2, 2])
        #expect(p.nextChange(after: 0, epochs: 10) == 2)
    }

    @Test func discriminativeRatesDivideByFactorGoingDown() throws {
        var p = try planner(.none)
        let plan = p.plan(forEpoch: 0, epochs: 100)
        #expect(plan.learningRates["head"] == 0.01)
        #expect(abs((plan.learningRates["block2"] ?? 0) - 0.01 / 2.6) < 1e-9)
        #expect(abs((plan.learningRates["stem"] ?? 0) - 0.01 / (2.6 * 2.6 * 2.6)) < 1e-9)
    }

    @Test func fixedTableUsesLatestEntry() throws {
        var p = try planner(.fixed(table: ["0": ["head"], "2": ["block1", "block2", "head"]]))
        #expect((0..<4).map { p.plan(forEpoch: $0, epochs: 100).trainableGroups.count } == [1, 1, 3, 3])
    }

    @Test func fixedTableRejectsGapsAndUnknownGroups() {
        #expect(throws: ConfigError.self) { try planner(.fixed(table: ["0": ["block1", "head"]])) }
        #expect {
            try planner(.fixed(table: ["0": ["head"], "1": ["haed"]]))
        } throws: { error in
            (error as? ConfigError)?.key == "unfreezing.table.1"
        }
        #expect(throws: ConfigError.self) { try planner(.fixed(table: ["1": ["head"]])) }
    }

    @Test func plateauThawsAfterPatienceWithoutImprovement() throws {
        var p = try planner(.plateau(patience: 2, delta: 0.01))
        #expect(p.plan(forEpoch: 0, epochs: 100).trainableGroups == ["head"])
        p.record(validationLoss: 1.0)
        #expect(p.plan(forEpoch: 1, epochs: 100).trainableGroups == ["head"])
        p.record(validationLoss: 0.9)   // improving
        #expect(p.plan(forEpoch: 2, epochs: 100).trainableGroups == ["head"])
        p.record(validationLoss: 0.899) // less than delta better than 0.9
        #expect(p.plan(forEpoch: 3, epochs: 100).trainableGroups == ["head"])
        p.record(validationLoss: 0.905) // two epochs without a δ improvement
        let plan = p.plan(forEpoch: 4, epochs: 100)
        #expect(plan.trainableGroups == ["block2", "head"])
        #expect(plan.version == 2)
    }

    @Test func digestDiffersBetweenTrainableSets() throws {
        var p = try planner(.gradual())
        #expect(p.plan(forEpoch: 0, epochs: 100).trainableSetDigest != p.plan(forEpoch: 1, epochs: 100).trainableSetDigest)
    }
}
