// Tests for configuration parsing: defaults, key-naming errors, unknown keys and ranges.
import Testing
import ThawPlan
import ThawNN
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

@Suite struct ConfigTests {
    @Test func emptyFileGivesDefaults() throws {
        let config = try TrainingConfig.parse("")
        #expect(config == TrainingConfig())
        #expect(config.training.batchSize == 64)
    }

    @Test func readsEverySection() throws {
        let config = try TrainingConfig.parse("""
            run: {name: demo, seed: 7}
            model: {architecture: mlp, classes: 3, frozen_batch_norm: batch_statistics}
            data: {train_limit: 100}
            training: {epochs: 2, batch_size: 32, accumulation_steps: 2, exchange: plain}
            optimizer: {kind: sgd, learning_rate: 0.1, nesterov: true}
            schedule: {kind: cosine, warmup_steps: 5}
            unfreezing: {policy: gradual, every: 2}
            """)
        #expect(config.run.output == "runs/demo")
        #expect(config.model.frozenBatchNorm == .batchStatistics)
        #expect(config.training.exchange == .plain)
        #expect(config.optimizer.kind == .sgd)
        #expect(config.schedule.kind == .cosine)
        #expect(config.unfreezing.policy.kind == .gradual)
    }

    @Test func jsonWorksToo() throws {
        let config = try TrainingConfig.parse(#"{"training": {"epochs": 4}}"#, file: "c.json")
        #expect(config.training.epochs == 4)
    }

    @Test func unknownKeyIsNamed() {
        #expect {
            try TrainingConfig.parse("training:\n  batch_sise: 3\n", file: "c.yaml")
        } throws: { error in
            let e = error as? ConfigError
            return e?.key == "training.batch_sise" && e?.file == "c.yaml" && (e?.message.contains("batch_size") ?? false)
        }
    }

    @Test func wrongTypeNamesKey() {
        #expect {
            try TrainingConfig.parse("training:\n  epochs: many\n")
        } throws: { error in
            (error as? ConfigError)?.key == "training.epochs"
        }
    }

    @Test func badEnumListsChoices() {
        #expect {
            try TrainingConfig.parse("optimizer: {kind: adam}")
        } throws: { error in
            let e = error as? ConfigError
            return e?.key == "optimizer.kind" && (e?.message.contains("adamw") ?? false)
        }
    }

    @Test func rangeChecksNameKey() {
        #expect {
            try TrainingConfig.parse("training: {batch_size: 10, accumulation_steps: 3}")
        } throws: { error in
            (error as? ConfigError)?.key == "training.accumulation_steps"
        }
        #expect {
            try TrainingConfig.parse("optimizer: {learning_rate: -1}")
        } throws: { error in
            (error as? ConfigError)?.key == "optimizer.learning_rate"
        }
    }

    @Test func digestChangesWithContent() throws {
        let a = try TrainingConfig.parse("training: {epochs: 2}")
        let b = try TrainingConfig.parse("training: {epochs: 3}")
        #expect(a.digest != b.digest)
        #expect(a.digest == (try TrainingConfig.parse("training: {epochs: 2}")).digest)
    }
}

@Suite struct ConfigOverrideTests {
    @Test func overridesReplaceAndAdd() throws {
        let config = try TrainingConfig.parse("training: {epochs: 2}", overrides: ["training.epochs=5", "optimizer.kind=sgd", "run.name=x"])
        #expect(config.training.epochs == 5)
        #expect(config.optimizer.kind == .sgd)
        #expect(config.run.name == "x")
    }

    @Test func badOverrideNamesKey() {
        #expect {
            try TrainingConfig.parse("", overrides: ["training.epoch=5"])
        } throws: { error in
            (error as? ConfigError)?.key == "training.epoch"
        }
        #expect(throws: ConfigError.self) { try TrainingConfig.parse("", overrides: ["novalue"]) }
    }
}
