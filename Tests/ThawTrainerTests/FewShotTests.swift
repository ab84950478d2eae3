// Few-shot prototype heads: prototype means and nearest-prototype prediction on hand-made embeddings
// (both distances), the 95% interval, seeded episode sampling, episodic fine-tuning putting the weights
// back, and `thaw fewshot` end to end on synthetic data, with its input errors naming the option.
import Foundation
import Testing
import ThawData
import ThawKernels
import ThawNN
import ThawTesting
import ThawBench
import ThawEvaluation
import ThawRun
import ThawTrainer

@Suite struct PrototypeTests {
    @Test func prototypesAreClassMeans() {
        // Rows (2-D): class 0 gets (1, 2) and (3, 4); class 1 gets (10, 0); class 2 has no rows.
        let embeddings: [Float] = [1, 2, 10, 0, 3, 4]
        let prototypes = Prototypes.means(embeddings: embeddings, labels: [0, 1, 0], classes: 3, dimension: 2)
        #expect(prototypes == [2, 3, 10, 0, 0, 0])
    }

    @Test func nearestPrototypeByEuclideanAndCosineDistance() {
        // Prototype 0 is short and points along x; prototype 1 is long and points along the diagonal.
        let prototypes: [Float] = [1, 0, 10, 10]
        // Query (2, 1): Euclidean puts it next to (1, 0) (distance² 2 vs 145), but its angle is closer to
        // the diagonal (cos 0.949 vs 0.894). Query (20, 21) is nearest (10, 10) either way.
        let queries: [Float] = [2, 1, 20, 21]
        #expect(Prototypes.nearest(embeddings: queries, prototypes: prototypes, dimension: 2, distance: .euclidean) == [0, 1])
        #expect(Prototypes.nearest(embeddings: queries, prototypes: prototypes, dimension: 2, distance: .cosine) == [1, 1])
        let d = [Float(2), 1].withUnsafeBufferPointer { e in
            prototypes.withUnsafeBufferPointer { Prototypes.distances(e, prototypes: $0, distance: .cosine) }
        }
        #expect(abs(d[0] - (1 - 2 / Float(5).squareRoot())) < 1e-6)
        #expect(abs(d[1] - (1 - 30 / (Float(5).squareRoot() * Float(200).squareRoot()))) < 1e-6)
    }

    @Test func intervalIsOnePointNineSixStandardErrors() {
        let values = [0.5, 0.7, 0.9, 0.7]
        let summary = MeanInterval(values)
        // Mean 0.7; squared deviations 0.04 + 0 + 0.04 + 0 = 0.08; sample variance 0.08 / 3.
        let sd = (0.08 / 3).squareRoot()
        #expect(abs(summary.mean - 0.7) < 1e-12)
        #expect(abs(summary.standardDeviation - sd) < 1e-12)
        #expect(abs(summary.halfWidth - 1.96 * sd / 2) < 1e-12)
        #expect(MeanInterval([0.25]).halfWidth == 0)
    }
}

@Suite struct EpisodeSamplerTests {
    /// 6 classes, 10 rows each, interleaved.
    let labels = (0..<60).map { $0 % 6 }

    @Test func episodesAreSeededAndDrawOnlyFromTheChosenClasses() throws {
        let sampler = try EpisodeSampler(labels: labels, classes: [1, 3, 4, 5], ways: 3, shots: 2, queries: 4, seed: 7)
        let again = try EpisodeSampler(labels: labels, classes: [1, 3, 4, 5], ways: 3, shots: 2, queries: 4, seed: 7)
        let other = try EpisodeSampler(labels: labels, classes: [1, 3, 4, 5], ways: 3, shots: 2, queries: 4, seed: 8)
        var seenClasses = Set<Int>()
        for index in 0..<50 {
            let episode = sampler.episode(index)
            #expect(episode == again.episode(index), "episode \(index) is a function of (seed, index)")
            #expect(episode.classes.count == 3 && Set(episode.classes).count == 3)
            seenClasses.formUnion(episode.classes)
            for (k, dataClass) in episode.classes.enumerated() {
                #expect([1, 3, 4, 5].contains(dataClass))
                #expect(episode.support[k].count == 2 && episode.queries[k].count == 4)
                let rows = episode.support[k] + episode.queries[k]
                #expect(Set(rows).count == rows.count, "support and queries are disjoint and distinct")
                #expect(rows.allSatisfy { labels[$0] == dataClass })
            }
        }
        #expect(seenClasses == [1, 3, 4, 5])
        #expect((0..<20).contains { sampler.episode($0) != other.episode($0) }, "another seed draws other episodes")
        // Order-independence: episode 9 is the same whether or not episodes 0...8 were drawn first.
        #expect(try EpisodeSampler(labels: labels, classes: [1, 3, 4, 5], ways: 3, shots: 2, queries: 4, seed: 7).episode(9) == sampler.episode(9))
    }

    @Test func badSettingsNameTheOption() {
        func field(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return (error as? FewShotError)?.field ?? "not a FewShotError: \(error)" }
        }
        #expect(field { _ = try EpisodeSampler(labels: labels, classes: [0, 1], ways: 3, shots: 1, queries: 1, seed: 0) } == "--ways")
        #expect(field { _ = try EpisodeSampler(labels: labels, classes: [0, 1, 9], ways: 3, shots: 1, queries: 1, seed: 0) } == "--classes")
        #expect(field { _ = try EpisodeSampler(labels: labels, classes: [0, 1, 2], ways: 3, shots: 5, queries: 6, seed: 0) } == "--queries")
        #expect(field { _ = try EpisodeSampler(labels: labels, classes: [0, 1, 2], ways: 3, shots: 0, queries: 6, seed: 0) } == "--shots")
        #expect(field { _ = try EpisodeSampler(labels: labels, classes: [0, 1, 1], ways: 2, shots: 1, queries: 1, seed: 0) } == "--classes")
        let images = InMemoryDataset(features: [Float](repeating: 0, count: 60), labels: labels.map(Int32.init), sampleShape: [1], classCount: 6)
        #expect(field { _ = try FewShotEvaluator.poolIndices(of: images, classes: [2, 6], perClass: 0) } == "--classes")
        #expect((try? FewShotEvaluator.poolIndices(of: images, classes: [2, 4], perClass: 3)) == [2, 4, 8, 10, 14, 16])
    }
}

@Suite struct FewShotEvaluatorTests {
    /// A small CNN on seeded 8×8 images whose class is a row brighter by `signal`; 4 classes, 12 images each.
    func setup(signal: Float = 2) throws -> (Model, InMemoryDataset) {
        let model = try Model(groups: SmallCNN.groups(channels: 1, height: 8, width: 8, classes: 4, seed: 3), sampleShape: [1, 8, 8], seed: 3)
        var generator = SplitMix64(seed: 11)
        var features: [Float] = []
        var labels: [Int32] = []
        for n in 0..<48 {
            let label = n % 4
            labels.append(Int32(label))
            for row in 0..<8 { for _ in 0..<8 { features.append(generator.nextNormal() * 0.3 + (row == 2 * label ? signal : 0)) } }
        }
        return (model, InMemoryDataset(features: features, labels: labels, sampleShape: [1, 8, 8], classCount: 4))
    }

    @Test func frozenEmbeddingIsThePreHeadOutputAndSeparatesEasyClasses() throws {
        let (model, images) = try setup()
        let evaluator = try FewShotEvaluator(model: model, pooling: .average)
        #expect(evaluator.headIndex == 2 && evaluator.firstTunedGroup == 2)
        let pool = try evaluator.pool(images, indices: Array(0..<48))
        // block1 gives [N, 64, 2, 2]; average pooling leaves 64 values per image.
        #expect(pool.rowShape == [64] && pool.labels.count == 48)
        let flat = try FewShotEvaluator(model: model, pooling: .flatten).pool(images, indices: [0, 1])
        #expect(flat.rowShape == [64, 2, 2])
        let sampler = try EpisodeSampler(labels: pool.labels, classes: [0, 1, 2, 3], ways: 4, shots: 3, queries: 5, seed: 1)
        let result = evaluator.evaluate(pool, sampler: sampler, episodes: 30, distance: .euclidean)
        #expect(result.ways == 4 && result.shots == 3 && result.episodes == 30)
        #expect(result.accuracy > 0.5, "a random CNN still separates bright rows at 4 places: \(result.accuracy)")
        #expect(result.interval95 >= 0 && result.interval95 < 0.2)
    }

    @Test func episodicFineTuningPutsTheWeightsBack() throws {
        // A faint signal, so that accuracy is not saturated and a fine-tuning step can change predictions.
        let (model, images) = try setup(signal: 0.2)
        let parameters = Array(model.store.parameters), state = Array(model.store.state)
        let evaluator = try FewShotEvaluator(model: model, pooling: .average, fineTuneGroups: 1, fineTuneSteps: 3, fineTuneLearningRate: 0.05)
        #expect(evaluator.firstTunedGroup == 1, "block1 is fine-tuned")
        let pool = try evaluator.pool(images, indices: Array(0..<48))
        #expect(pool.rowShape == [32, 4, 4], "the pool holds block1's input")
        let sampler = try EpisodeSampler(labels: pool.labels, classes: [0, 1, 2, 3], ways: 4, shots: 2, queries: 4, seed: 1)
        let first = evaluator.accuracy(of: sampler.episode(0), in: pool, distance: .euclidean)
        #expect(Array(model.store.parameters) == parameters, "parameters are restored after the episode")
        #expect(Array(model.store.state) == state, "batch-norm statistics are restored after the episode")
        #expect(evaluator.accuracy(of: sampler.episode(0), in: pool, distance: .euclidean) == first, "so an episode repeats exactly")
        // The fine-tuning did something: the episode's tuned embedding differs from the frozen one.
        let frozen = try FewShotEvaluator(model: model, pooling: .average)
        let frozenPool = try frozen.pool(images, indices: Array(0..<48))
        let tuned = try FewShotEvaluator(model: model, pooling: .average, fineTuneGroups: 1, fineTuneSteps: 3, fineTuneLearningRate: 5)
        let accuracies = (0..<8).map { (frozen.accuracy(of: sampler.episode($0), in: frozenPool, distance: .euclidean),
                                        tuned.accuracy(of: sampler.episode($0), in: pool, distance: .euclidean)) }
        #expect(accuracies.contains { $0.0 != $0.1 }, "a large step changes some episode's predictions: \(accuracies)")
        #expect(throws: FewShotError.self) { try FewShotEvaluator(model: model, pooling: .average, fineTuneGroups: 3, fineTuneSteps: 1) }
    }
}

@Suite(.serialized) struct FewShotCommandTests {
    /// Runs `thaw fewshot` on a synthetic 6-class dataset (8×8 images) with a random small CNN.
    func fewshot(_ scratch: ScratchRun, _ arguments: [String]) throws -> SpawnResult {
        let config = try scratch.writeConfig(name: "fewshot", extra: "", model: "{architecture: small-cnn, classes: 6}")
        let thaw = try #require(thawExecutablePath())
        return try spawnProcessGroup([thaw, "fewshot", "--config", config] + arguments, hangGuardSeconds: 120)
    }

    @Test func endToEndJSONIsDeterministicAndUsesTheChosenSetting() throws {
        let scratch = try ScratchRun(samples: 240, sampleShape: [1, 8, 8], classes: 6)
        let arguments = ["--classes", "3,4,5", "--ways", "3", "--shots", "1,2", "--queries", "4", "--episodes", "40", "--seed", "5", "--json"]
        let run = try fewshot(scratch, arguments)
        try #require(run.exitCode == 0, "\(run.output)")
        let again = try fewshot(scratch, arguments)
        #expect(again.output == run.output, "same seed, same episodes, same numbers")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect(report["classes"] as? [Int] == [3, 4, 5])
        #expect(report["embedding_groups"] as? [String] == ["stem", "block1"])
        #expect(report["distance"] as? String == "euclidean")
        let results = try #require(report["results"] as? [[String: Any]])
        #expect(results.map { $0["shots"] as? Int } == [1, 2])
        for result in results {
            #expect(result["ways"] as? Int == 3 && result["queries"] as? Int == 4 && result["episodes"] as? Int == 40)
            let accuracy = try #require(result["accuracy"] as? Double), interval = try #require(result["interval_95"] as? Double)
            let sd = try #require(result["standard_deviation"] as? Double)
            #expect((0...1).contains(accuracy))
            #expect(abs(interval - 1.96 * sd / Double(40).squareRoot()) < 1e-9)
        }
        let table = try fewshot(scratch, ["--classes", "3,4,5", "--ways", "3", "--shots", "2", "--queries", "4", "--episodes", "10",
                                          "--distance", "cosine", "--fine-tune-groups", "1", "--fine-tune-steps", "2"])
        try #require(table.exitCode == 0, "\(table.output)")
        #expect(table.output.contains("95% interval") && table.output.contains("fine-tuning block1 for 2 step(s)"), "\(table.output)")
    }

    @Test func badInputNamesTheOption() throws {
        let scratch = try ScratchRun(samples: 60, sampleShape: [1, 8, 8], classes: 6)
        let unknown = try fewshot(scratch, ["--classes", "3,4,7", "--ways", "3"])
        #expect(unknown.exitCode != 0 && unknown.output.contains("--classes: unknown class 7"), "\(unknown.output)")
        let ways = try fewshot(scratch, ["--classes", "3,4", "--ways", "3"])
        #expect(ways.exitCode != 0 && ways.output.contains("--ways"), "\(ways.output)")
        let tooFew = try fewshot(scratch, ["--classes", "3,4,5", "--ways", "3", "--shots", "5", "--queries", "15"])
        #expect(tooFew.exitCode != 0 && tooFew.output.contains("--queries") && tooFew.output.contains("need 20"), "\(tooFew.output)")
        let distance = try fewshot(scratch, ["--classes", "3,4,5", "--distance", "manhattan"])
        #expect(distance.exitCode != 0 && distance.output.contains("--distance"), "\(distance.output)")
    }
}
