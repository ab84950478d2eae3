// CheckpointModels: a checkpoint's model rebuilt from a configuration, for evaluation and inference.
import ThawNN
import ThawTrainer

extension Checkpoint {
    /// Builds the model `config` describes for `sampleShape` inputs and restores the checkpoint that
    /// `value` names (a file, or `latest` in the run directory) into it, for evaluation and inference.
    /// - Throws: When the checkpoint holds another architecture, or a tensor is missing or mis-shaped.
    public static func restoredModel(_ config: TrainingConfig, checkpoint value: String, sampleShape: [Int]) throws -> (model: Model, path: String) {
        let path = try resolve(value, runDirectory: config.run.output)
        let loaded = try load(path)
        guard loaded.metadata.architecture == config.model.architecture else {
            throw TrainingError.io(path: path, message: "holds a \(loaded.metadata.architecture) model, but the configuration says \(config.model.architecture)")
        }
        let model = try ModelZoo.build(config.model, sampleShape: sampleShape, seed: config.run.seed)
        try loaded.restore(into: model)
        return (model, path)
    }
}
