// Tests of LoRA and of fixed parameters under adapter placement: finite-difference gradients of the
// adapters (alone and inside a transformer layer), the base model at step 0, merging, and base
// weights that get no gradient, not even a resident page.
#if canImport(Glibc)
import Glibc
#endif
import Testing
import ThawKernels
import ThawNN
import ThawTesting

/// Random values in [-scale, scale) for `count` entries.
func randomValues(_ count: Int, seed: UInt64, scale: Float = 0.5) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in (generator.nextUniform() * 2 - 1) * scale }
}

/// A model of one encoder layer with LoRA on query and value (or BitFit) and a linear head over tokens.
private func encoderModel(_ placement: (LayerGroup) -> ParameterPlacement, lora: Bool, seed: UInt64 = 3) throws -> Model {
    // Wide enough that the fixed base weights span whole pages of the gradient buffer.
    let encoder = TransformerEncoderLayer(hiddenSize: 32, headCount: 2, intermediateSize: 64)
    let groups = [LayerGroup("layer0", [(name: "encoder", layer: encoder)]), LayerGroup("head", [(name: "classifier", layer: Linear(32, 3))])]
    if lora {
        try LowRankAdapters.attach(to: groups, settings: LowRankSettings(rank: 2, alpha: 4, dropout: 0)) { path, _ in
            path.hasSuffix(".query") || path.hasSuffix(".value")
        }
    }
    return try Model(groups: groups, sampleShape: [4, 32], seed: seed, placement: placement(groups[0]))
}

/// Σ y·r for the model's output y and a fixed projection r, in Double.
func projectedLoss(_ model: Model, _ input: Tensor, _ projection: Tensor) throws -> Double {
    let y = try model.forward(input, training: true)
    var sum = 0.0
    for i in 0..<y.count { sum += Double(y.data[i]) * Double(projection.data[i]) }
    return sum
}

@Suite struct AdapterTests {
    @Test func loraGradientsMatchFiniteDifferences() throws {
        let linear = Linear(6, 5)
        try linear.attachAdapter(rank: 2, alpha: 4)
        let harness = LayerHarness(linear)
        // B starts at zero, which would make A's gradient zero: give it values to test both.
        harness.setParameter("lora_B.weight", randomValues(10, seed: 11))
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([4, 6], seed: 3))
        #expect(Set(report.parameterErrors.keys) == ["weight", "bias", "lora_A.weight", "lora_B.weight"])
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func loraWithDropoutGradientsMatchFiniteDifferences() throws {
        let linear = Linear(6, 5)
        try linear.attachAdapter(rank: 3, alpha: 6, dropout: 0.3, seed: 5)
        let harness = LayerHarness(linear)
        harness.setParameter("lora_B.weight", randomValues(15, seed: 12))
        let dropout = try #require(linear.adapter?.dropout)
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([4, 6], seed: 4)) { dropout.reseed(99) }
        #expect(report.worst < 1e-2, "\(report)")
    }

    @Test func adaptersInsideAnEncoderLayerMatchFiniteDifferences() throws {
        let encoder = TransformerEncoderLayer(hiddenSize: 8, headCount: 2, intermediateSize: 16)
        try encoder.attention.query.attachAdapter(rank: 2, alpha: 8)
        try encoder.attention.value.attachAdapter(rank: 2, alpha: 8)
        try encoder.output.attachAdapter(rank: 2, alpha: 8)
        let harness = LayerHarness(encoder)
        // Random values everywhere (B included), as EncoderLayerTests does, so every gradient is sizable.
        harness.randomizeParameters(seed: 51)
        let report = GradientCheck.run(harness, input: GradientCheck.randomTensor([2, 4, 8], seed: 53), epsilon: 1e-2)
        #expect(report.parameterErrors.keys.filter { $0.contains("lora_") }.count == 6)
        #expect(worstExcludingKeyBias(report) < 5e-3, "\(report)")
    }

    @Test func refusesRanksALayerCannotTake() throws {
        #expect(throws: AdapterError(layer: "Linear(6 → 5)", reason: .rank(6, width: 5))) { try Linear(6, 5).attachAdapter(rank: 6, alpha: 1) }
        #expect(throws: AdapterError(layer: "Linear(6 → 5)", reason: .rank(0, width: 5))) { try Linear(6, 5).attachAdapter(rank: 0, alpha: 1) }
        let groups = [LayerGroup("layer0", [(name: "wide", layer: Linear(8, 8)), (name: "narrow", layer: Linear(8, 2))]),
                      LayerGroup("head", [(name: "classifier", layer: Linear(2, 2))])]
        #expect(throws: AdapterError(layer: "layer0.narrow", reason: .rank(4, width: 2))) {
            try LowRankAdapters.attach(to: groups, settings: LowRankSettings(rank: 4, alpha: 8, dropout: 0)) { _, _ in true }
        }
    }

    @Test func stepZeroIsTheBaseModel() throws {
        let base = try encoderModel({ _ in .byLayerGroup }, lora: false)
        let adapted = try encoderModel({ _ in .adapters(trains: LowRankAdapters.isAdapterParameter) }, lora: true)
        // Same base weights by name (the layouts differ: the adapted model puts them in `backbone`).
        for entry in base.store.parameterEntries {
            let target = try #require(adapted.store.entry(named: entry.name))
            (adapted.store.parameters.baseAddress! + target.offset).update(from: base.store.parameters.baseAddress! + entry.offset, count: entry.count)
        }
        let input = GradientCheck.randomTensor([2, 4, 32], seed: 8)
        let expected = try base.forward(input, training: false).values
        #expect(try adapted.forward(input, training: false).values == expected)
    }

    @Test func mergedWeightsGiveTheAdaptedForward() throws {
        let linear = Linear(6, 5)
        try linear.attachAdapter(rank: 2, alpha: 3)
        let harness = LayerHarness(linear)
        harness.setParameter("lora_B.weight", randomValues(10, seed: 13))
        let input = GradientCheck.randomTensor([4, 6], seed: 9)
        let adapted = linear.forward(input, mode: .inference).values
        let plain = Linear(6, 5)
        let merged = LayerHarness(plain)
        let entry = { (name: String) in try #require(harness.store.entry(named: name)) }
        var weight = Array(harness.store.parameters[try entry("weight").offset..<(try entry("weight").offset + 30)])
        let down = Array(harness.store.parameters[try entry("lora_A.weight").offset..<(try entry("lora_A.weight").offset + 12)])
        let up = Array(harness.store.parameters[try entry("lora_B.weight").offset..<(try entry("lora_B.weight").offset + 10)])
        LowRankAdapter.merge(into: &weight, down: down, up: up, rank: 2, inputDimensions: 6, outputDimensions: 5, scale: 1.5)
        merged.setParameter("weight", weight)
        merged.setParameter("bias", Array(harness.store.parameters[try entry("bias").offset..<(try entry("bias").offset + 5)]))
        let result = plain.forward(input, mode: .inference).values
        #expect(zip(result, adapted).allSatisfy { abs($0 - $1) <= 1e-5 }, "\(result) vs \(adapted)")
    }

    @Test func fixedBaseWeightsGetNoGradientAndNoResidentPages() throws {
        for lora in [true, false] {
            let model = try encoderModel({ group in
                if lora { return .adapters(trains: LowRankAdapters.isAdapterParameter) }
                let norms = Set(group.namedLayers.filter { $0.layer is LayerNorm }.flatMap { ["\($0.path).weight", "\($0.path).bias"] })
                return .adapters(trains: { $0.hasSuffix(".bias") || norms.contains($0) })
            }, lora: lora)
            #expect(model.groupNames == ["backbone", "layer0", "head"])
            #expect(model.plannableGroupNames == ["layer0", "head"])
            #expect(throws: ModelError.fixedGroup("backbone")) { try model.setTrainableGroups(["backbone", "layer0", "head"]) }
            let trained = model.store.parameterEntries.filter { $0.group == "layer0" }.map(\.name)
            if lora {
                #expect(trained == ["layer0.encoder.attention.query.lora_A.weight", "layer0.encoder.attention.query.lora_B.weight",
                                    "layer0.encoder.attention.value.lora_A.weight", "layer0.encoder.attention.value.lora_B.weight"])
            } else {
                #expect(trained.allSatisfy { $0.hasSuffix(".bias") || $0.contains("_norm.") } && trained.count == 10, "\(trained)")
            }
            let input = GradientCheck.randomTensor([2, 4, 32], seed: 10)
            let projection = GradientCheck.randomTensor([2, 4, 3], seed: 11)
            model.store.zeroGradients(in: model.trainableRange)
            _ = try model.forward(input, training: true)
            model.backward(projection) { _ in }
            let fixed = model.store.groupRanges[0]
            // Before anything reads them: a read maps the zero page, which mincore counts.
            #expect(residentPages(model.store.gradients, fullyInside: fixed) == 0)
            #expect(model.store.gradients[fixed].allSatisfy { $0 == 0 })
            // The trained parameters' gradients against finite differences of the model.
            try expectFiniteDifferences(model, group: "layer0", input: input, projection: projection)
        }
    }
}

/// Checks a sample of each of `group`'s parameters' gradients (already computed by one backward of
/// Σ y·projection) against central differences of the model's output.
func expectFiniteDifferences(_ model: Model, group: String, input: Tensor, projection: Tensor, samples: Int = 5) throws {
    let analytic = Array(model.store.gradients)
    for entry in model.store.parameterEntries where entry.group == group {
        for i in stride(from: 0, to: entry.count, by: max(1, entry.count / samples)) {
            let pointer = model.store.parameters.baseAddress! + entry.offset + i
            let saved = pointer.pointee
            pointer.pointee = saved + 1e-2
            let plus = try projectedLoss(model, input, projection)
            pointer.pointee = saved - 1e-2
            let minus = try projectedLoss(model, input, projection)
            pointer.pointee = saved
            let numeric = (plus - minus) / 2e-2
            #expect(abs(numeric - Double(analytic[entry.offset + i])) <= 2e-2 * max(1, abs(numeric)), "\(entry.name)[\(i)]")
        }
    }
}

/// The number of resident pages lying wholly inside `range` of `buffer` (mincore).
func residentPages(_ buffer: UnsafeMutableBufferPointer<Float>, fullyInside range: Range<Int>) -> Int {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let base = Int(bitPattern: buffer.baseAddress!)
    let start = (base + range.lowerBound * 4 + page - 1) / page * page
    let end = (base + range.upperBound * 4) / page * page
    guard end > start else { return 0 }
    var vector = [UInt8](repeating: 0, count: (end - start) / page)
    let status = mincore(UnsafeMutableRawPointer(bitPattern: start), end - start, &vector)
    precondition(status == 0, "mincore failed")
    return vector.filter { $0 & 1 != 0 }.count
}
