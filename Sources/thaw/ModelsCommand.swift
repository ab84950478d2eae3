// thaw models: lists the architectures and their layer groups.
import ArgumentParser
import ThawTrainer

/// `thaw models`: what `model.architecture` accepts.
struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List the architectures and their layer groups.")

    @Option(help: "Input sample shape used to size the example (C,H,W).") var sampleShape = "1,28,28"

    func run() throws {
        let shape = sampleShape.split(separator: ",").compactMap { Int($0) }
        for (name, description) in ModelZoo.architectures {
            var section = ModelSection()
            section.architecture = name
            let model = try ModelZoo.build(section, sampleShape: shape, seed: 0)
            print("\(name): \(description)")
            for (group, range) in zip(model.groupNames, model.store.groupRanges) {
                print("    \(group): \(range.count) parameters")
            }
        }
    }
}
