// Tests for GradientTools: global-norm clipping against torch.nn.utils.clip_grad_norm_,
// Double accumulation, and NaN/Inf detection.
import Testing
import ThawTesting
import ThawNN
import ThawOptim

@Suite struct GradientToolsTests {
    /// Loads step 0's fixture gradients ×3 into the body and head of a fresh store, with sentinel stem gradients.
    func storeWithFixtureGradients(_ fixture: FixtureFile) throws -> ParameterStore {
        let store = makeStore()
        store.setGradients(group: TestGroup.stem, [.nan, -0.0, 7, .infinity, 1])
        for group in [TestGroup.body, TestGroup.head] {
            store.setGradients(group: group, try fixture.floats("grad.step0.\(TestGroup.names[group])").map { $0 * 3 })
        }
        return store
    }

    @Test func clippingMatchesPyTorchAndOnlyTouchesTheRange() throws {
        let fixture = try FixtureFile(named: "optim")
        let store = try storeWithFixtureGradients(fixture)
        let stem = bits(Array(store.gradients[store.groupRanges[TestGroup.stem]]))
        let trainable = store.groupRanges[TestGroup.body].lowerBound..<store.parameterCount
        let norm = GradientTools.clipGradients(store.gradients, range: trainable, maxNorm: 1)
        let expectedNorm = try fixture.floats("clip.max1.norm")[0]
        #expect(abs(norm - expectedNorm) <= 1e-6 * expectedNorm, "norm \(norm), PyTorch \(expectedNorm)")
        for group in [TestGroup.body, TestGroup.head] {
            let key = "clip.max1.\(TestGroup.names[group])"
            let error = relativeError(slice(store.gradients, store.groupRanges[group]), try fixture.floats(key))
            #expect(error <= 1e-6, "\(key): relative error \(error)")
        }
        #expect(GradientTools.globalNorm(UnsafeBufferPointer(rebasing: store.gradients[trainable])) <= 1.000001)
        #expect(bits(Array(store.gradients[store.groupRanges[TestGroup.stem]])) == stem)
    }

    @Test func gradientsBelowTheLimitAreUnchanged() throws {
        let fixture = try FixtureFile(named: "optim")
        let store = try storeWithFixtureGradients(fixture)
        let before = bits(Array(store.gradients))
        let trainable = store.groupRanges[TestGroup.body].lowerBound..<store.parameterCount
        let norm = GradientTools.clipGradients(store.gradients, range: trainable, maxNorm: 100)
        let expectedNorm = try fixture.floats("clip.max100.norm")[0]
        #expect(abs(norm - expectedNorm) <= 1e-6 * expectedNorm)
        #expect(bits(Array(store.gradients)) == before)
    }

    @Test func normAccumulatesInDouble() {
        // Squares of 1e20 overflow Float; 10 001 values of 0.1 lose digits in a Float sum.
        var large: [Float] = [1e20, -1e20, 1e20]
        let largeNorm = large.withUnsafeBufferPointer { GradientTools.globalNorm($0) }
        #expect(abs(largeNorm - 3.0.squareRoot() * Double(Float(1e20))) <= 1e-12 * largeNorm)
        let norm = large.withUnsafeMutableBufferPointer { GradientTools.clipByGlobalNorm($0, maxNorm: 1) }
        #expect(norm.isFinite)
        #expect(abs(large[0] - Float(1 / 3.0.squareRoot())) < 1e-6)

        let many = [Float](repeating: 0.1, count: 10_001)
        let manyNorm = many.withUnsafeBufferPointer { GradientTools.globalNorm($0) }
        let exact = (10_001.0).squareRoot() * Double(Float(0.1))
        #expect(abs(manyNorm - exact) <= 1e-12 * exact, "\(manyNorm) vs \(exact)")
        #expect([Float]().withUnsafeBufferPointer { GradientTools.globalNorm($0) } == 0)
    }

    @Test func detectsNaNAndInfinityAnywhere() {
        for count in [1, 7, 8, 9, 33] {
            for position in 0..<count {
                for bad in [Float.nan, .infinity, -.infinity, Float(bitPattern: 0xFFC0_0001)] {
                    var values = (0..<count).map { Float($0) - 3 }
                    values[position] = bad
                    values.withUnsafeMutableBufferPointer { buffer in
                        #expect(!GradientTools.allFinite(buffer), "\(bad) at \(position) of \(count) missed")
                        #expect(GradientTools.firstNonFiniteIndex(UnsafeBufferPointer(buffer)) == position)
                    }
                }
            }
        }
        var finite: [Float] = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, -0.0, .leastNonzeroMagnitude, 1, 2, 3, 4, 5]
        finite.withUnsafeMutableBufferPointer { buffer in
            #expect(GradientTools.allFinite(buffer))
            #expect(GradientTools.firstNonFiniteIndex(UnsafeBufferPointer(buffer)) == nil)
            #expect(GradientTools.allFinite(buffer, range: 2..<5))
        }
        var mixed: [Float] = [.nan, 1, 2, 3]
        mixed.withUnsafeMutableBufferPointer { buffer in
            #expect(GradientTools.allFinite(buffer, range: 1..<4))
            #expect(!GradientTools.allFinite(buffer, range: 0..<4))
        }
        #expect([Float]().withUnsafeBufferPointer { GradientTools.allFinite($0) })
    }

    @Test func nonFiniteNormLeavesGradientsForTheCallerToReject() {
        var values: [Float] = [1, .nan, 3]
        let norm = values.withUnsafeMutableBufferPointer { GradientTools.clipByGlobalNorm($0, maxNorm: 0.5) }
        #expect(norm.isNaN)
        #expect(values[0] == 1 && values[2] == 3)
    }
}
