// Tests for the domain-adaptation data: the digit loaders on well-formed and malformed files, the
// source/target mixture (target labels never read) and BatchAssembler's label weights and domains.
import Foundation
import Testing
import ThawData
import ThawKernels

/// A digits CSV: `rows` rows of `side`² pixel values then a label, made by `value(row, pixel)`.
private func digitsCSV(rows: Int, side: Int, label: (Int) -> String = { String($0 % 10) },
                       value: (Int, Int) -> String = { String(($0 + $1) % 9) }) -> String {
    (0..<rows).map { row in ((0..<(side * side)).map { value(row, $0) } + [label(row)]).joined(separator: ",") }
        .joined(separator: "\n") + "\n"
}

/// A dataset that counts the labels asked of it.
private final class CountingDataset: Dataset {
    let base: InMemoryDataset
    var labelCalls = 0
    init(_ base: InMemoryDataset) { self.base = base }
    var count: Int { base.count }
    var sampleShape: [Int] { base.sampleShape }
    var classCount: Int { base.classCount }
    func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) { base.copySample(index, into: destination) }
    func label(_ index: Int) -> Int32 {
        labelCalls += 1
        return base.label(index)
    }
}

@Suite struct HandwrittenDigitsTests {
    @Test func loadsUCIDigitsScaledToUnitRange() throws {
        let file = try TemporaryFile(text: digitsCSV(rows: 3, side: 8, value: { row, pixel in pixel == 0 ? "16" : String(row) }), suffix: ".csv.gz")
        let digits = try HandwrittenDigits.load(file.path, format: .uci)
        #expect(digits.count == 3)
        #expect(digits.sampleShape == [1, 8, 8])
        #expect(digits.labels == [0, 1, 2])
        #expect(digits.sample(2)[0] == 1)
        #expect(digits.sample(2)[1] == 2.0 / 16)
    }

    @Test func resizesToACommonSide() throws {
        let file = try TemporaryFile(text: digitsCSV(rows: 2, side: 28, value: { _, _ in "255" }), suffix: ".csv")
        let digits = try HandwrittenDigits.load(file.path, format: .mnist, size: 16)
        #expect(digits.sampleShape == [1, 16, 16])
        // A white image stays white whatever the resampling.
        #expect(digits.sample(1).allSatisfy { abs($0 - 1) < 1e-5 })
        let small = try TemporaryFile(text: digitsCSV(rows: 1, side: 8, value: { _, pixel in pixel < 32 ? "16" : "0" }), suffix: ".csv")
        let enlarged = try HandwrittenDigits.load(small.path, format: .uci, size: 16).sample(0)
        #expect(enlarged.count == 256)
        #expect(enlarged[0] == 1 && enlarged[255] == 0, "top half white, bottom half black")
    }

    @Test func rejectsMalformedFiles() throws {
        func failure(_ text: String, format: HandwrittenDigits.Format) throws -> DataError {
            let file = try TemporaryFile(text: text, suffix: ".csv")
            do {
                _ = try HandwrittenDigits.load(file.path, format: format)
            } catch {
                #expect(error.file == file.path)
                return error
            }
            Issue.record("loaded malformed text")
            return DataError(file: "", kind: .notFound, detail: "")
        }
        // MNIST rows given to the UCI loader: 784 pixel columns, not 64.
        #expect(try failure(digitsCSV(rows: 2, side: 28), format: .uci).kind == .sizeMismatch)
        #expect(try failure(digitsCSV(rows: 2, side: 8), format: .mnist).kind == .sizeMismatch)
        // Values out of range for the format: 17 > 16, 256 > 255, −1, 2.5.
        #expect(try failure(digitsCSV(rows: 2, side: 8, value: { $0 == 1 && $1 == 5 ? "17" : "3" }), format: .uci).detail.contains("row 2, pixel 5"))
        #expect(try failure(digitsCSV(rows: 1, side: 28, value: { _, p in p == 9 ? "256" : "0" }), format: .mnist).kind == .badValue)
        #expect(try failure(digitsCSV(rows: 1, side: 8, value: { _, _ in "-1" }), format: .uci).kind == .badValue)
        #expect(try failure(digitsCSV(rows: 1, side: 8, value: { _, _ in "2.5" }), format: .uci).kind == .badValue)
        // Labels that are not digits.
        #expect(try failure(digitsCSV(rows: 2, side: 8, label: { $0 == 1 ? "10" : "3" }), format: .uci).detail.contains("label 10"))
        #expect(try failure(digitsCSV(rows: 2, side: 8, label: { _ in "x" }), format: .uci).kind == .badValue)
        // A ragged row, an empty file, and text that is not numbers.
        let ragged = digitsCSV(rows: 1, side: 8) + "1,2,3\n"
        #expect(try failure(ragged, format: .uci).kind == .sizeMismatch)
        #expect(try failure("", format: .uci).kind == .badValue)
        #expect(try failure("pixels,label\nthese,are\n", format: .uci).kind == .badValue)
    }

    @Test func corruptGzipAndMissingFilesNameTheFile() throws {
        let corrupt = try TemporaryFile([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3], suffix: ".csv.gz")
        #expect(throws: DataError.self) { try HandwrittenDigits.load(corrupt.path, format: .uci) }
        let missing = "/nonexistent/thaw/digits.csv.gz"
        do {
            _ = try HandwrittenDigits.load(missing, format: .uci)
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.kind == .notFound)
            #expect(error.file == missing)
            #expect(error.description.contains("scripts/fetch-data uci-digits"))
        }
    }
}

@Suite struct DomainMixtureTests {
    private func images(_ count: Int, value: Float, classes: Int = 10) -> InMemoryDataset {
        InMemoryDataset(features: (0..<count).flatMap { i in [value, Float(i)] }, labels: (0..<count).map { Int32($0 % classes) },
                        sampleShape: [2], classCount: classes)
    }

    @Test func interleavesDomainsAndCyclesTheSmallerOne() {
        let mixture = DomainMixture(source: images(3, value: 0), target: images(5, value: 1))
        #expect(mixture.count == 10)
        #expect((0..<10).map { mixture.domain($0) } == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
        #expect((0..<10).map { mixture.isLabelled($0) } == [true, false, true, false, true, false, true, false, true, false])
        // Source index (i / 2) % 3, target index (i / 2) % 5.
        #expect((0..<10).map { mixture.sample($0)[1] } == [0, 0, 1, 1, 2, 2, 0, 3, 1, 4])
        #expect((0..<10).map { mixture.sample($0)[0] } == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
        #expect(mixture.subset([3, 4]).isLabelled(1) && !mixture.subset([3, 4]).isLabelled(0))
        #expect(mixture.subset([3, 4]).domain(0) == 1)
    }

    /// Assembling every sample, in batches and through a subset, never asks the target for a label.
    @Test func targetLabelsAreNeverRead() {
        let target = CountingDataset(images(7, value: 1))
        let mixture = DomainMixture(source: images(4, value: 0), target: target)
        let rows = 5
        let features = UnsafeMutablePointer<Float>.allocate(capacity: rows * 2)
        let labels = UnsafeMutableBufferPointer<Int32>.allocate(capacity: rows)
        let weights = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows)
        let labelWeights = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows)
        let domains = UnsafeMutableBufferPointer<Int32>.allocate(capacity: rows)
        defer { features.deallocate(); labels.deallocate(); weights.deallocate(); labelWeights.deallocate(); domains.deallocate() }
        let view = mixture.subset(Array(0..<mixture.count))
        var start = 0
        while start < view.count {
            let indices: [Int?] = (start..<(start + rows)).map { $0 < view.count ? $0 : nil }
            let real = BatchAssembler.fill(from: view, indices: indices, features: features, labels: labels, weights: weights,
                                           labelWeights: labelWeights, domains: domains)
            for row in 0..<rows {
                guard let index = indices[row] else {
                    #expect(weights[row] == 0 && labelWeights[row] == 0)
                    continue
                }
                #expect(weights[row] == 1)
                #expect(domains[row] == Int32(index % 2))
                #expect(labelWeights[row] == (index % 2 == 0 ? 1 : 0))
                if index % 2 == 1 { #expect(labels[row] == 0) }
            }
            #expect(real == indices.count(where: { $0 != nil }))
            start += rows
        }
        #expect(target.labelCalls == 0)
        _ = (0..<mixture.count).map { mixture.label($0) }
        #expect(target.labelCalls == 0)
    }
}
