// Tests for the model zoo: every listed architecture builds at its typical input (what
// `thaw models` prints), and an unknown name lists the choices.
import Testing
@testable import ThawBench
@testable import ThawEvaluation
@testable import ThawRun
@testable import ThawTrainer

@Suite struct ModelZooTests {
    @Test func everyArchitectureBuildsAtItsTypicalInput() throws {
        for architecture in Architecture.all {
            let model = try ModelZoo.build(architecture: architecture.name)
            #expect(model.sampleShape == architecture.typicalSampleShape, "\(architecture.name)")
            #expect(model.groupNames.last == "head", "\(architecture.name)")
        }
    }

    @Test func unknownArchitectureNamesTheChoices() {
        #expect {
            try ModelZoo.build(architecture: "resnet-9000")
        } throws: { error in
            "\(error)".contains("model.architecture") && "\(error)".contains("mobilenet_v2")
        }
    }
}
