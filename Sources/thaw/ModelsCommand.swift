// thaw models: lists the architectures and their layer groups.
import ArgumentParser
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

/// `thaw models`: what `model.architecture` accepts.
struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List the architectures and their layer groups.")

    func run() throws {
        for architecture in Architecture.all {
            let model = try ModelZoo.build(architecture: architecture.name)
            print("\(architecture.name): \(architecture.summary); input \(architecture.typicalSampleShape)")
            for (group, range) in zip(model.groupNames, model.store.groupRanges) {
                print("    \(group): \(range.count) parameters")
            }
        }
    }
}

extension SplitName: ExpressibleByArgument {}
