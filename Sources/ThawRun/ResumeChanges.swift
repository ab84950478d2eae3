// ResumeChanges: what a resumed run's configuration changes against the checkpoint's, said out
// loud. Changes are applied (plans follow the new unfreezing settings and rates from the next epoch
// boundary), except those the checkpoint's state cannot carry, which are refused by key.
import Foundation
import ThawTrainer
import ThawPlan

/// The differences between a checkpoint's configuration and the one resuming it.
public enum ResumeChanges {
    /// Keys a resume refuses to change, with the reason: the checkpoint's tensors or optimizer state
    /// only make sense under the old value.
    static let refused: [String: String] = [
        "optimizer.kind": "the checkpoint holds that optimizer's state",
        "model.architecture": "the checkpoint holds that architecture's parameters",
        "model.classes": "the checkpoint's head has that many classes",
    ]

    /// Keys whose new value reaches training through the plan, so it applies from the next epoch boundary.
    static let planned = ["optimizer.learning_rate", "unfreezing.", "model.frozen_batch_norm"]

    /// Keys that never change what is trained (where results go, logging).
    static let ignored = ["run.output", "run.log_per_rank", "run.name"]

    /// One line per changed key (`key: new (the checkpoint's run had old)`), or an error naming a
    /// refused key.
    /// - Throws: ``ConfigError`` for a change the checkpoint cannot carry.
    public static func describe(checkpoint metadata: CheckpointMetadata, path: String, config: TrainingConfig) throws(ConfigError) -> [String] {
        guard let recorded = metadata.configuration else {
            // Older checkpoints record only a digest; the planner still shows the plan's settings.
            guard metadata.configDigest != String(config.digest, radix: 16) else { return [] }
            var lines = ["the configuration differs from the one that wrote \(path) (an older checkpoint, which does not say how)"]
            if let planner = metadata.planner,
               planner.differs(settings: config.unfreezing, baseLearningRate: config.optimizer.learningRate,
                               batchNormPolicy: config.model.frozenBatchNorm.rawValue) {
                lines.append("its unfreezing settings or learning rate changed: the plans follow the new ones from the next epoch boundary")
            }
            return lines
        }
        let old = Dictionary(RankAgreement.flattened(json: Data(recorded.utf8)).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        let new = Dictionary(RankAgreement.flattened(config).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        var lines: [String] = []
        for key in Set(old.keys).union(new.keys).sorted() where old[key] != new[key] && !ignored.contains(key) {
            let was = old[key] ?? "(not set)", now = new[key] ?? "(not set)"
            if let reason = refused[key] {
                let otherwise = key == "optimizer.kind" ? "start a new run from its weights (--set model.pretrained=\(path))" : "start a new run"
                throw ConfigError(file: path, key: key, message: "is \(was) in the checkpoint and \(now) now, and \(reason); resume with \(was), "
                                  + "or \(otherwise)")
            }
            let when = planned.contains { key == $0 || (key.hasPrefix($0) && $0.hasSuffix(".")) } ? "; applies from the next epoch boundary" : ""
            lines.append("\(key) = \(now) (the checkpoint's run had \(was))\(when)")
        }
        return lines
    }
}
