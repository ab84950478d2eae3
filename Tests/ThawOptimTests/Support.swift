// Support: the reference-fixture reader and a small three-group store for the optimizer tests.
//
// ThawOptimTests depends on ThawOptim only, so this mirrors ThawTesting.Fixture's format
// ({"name": {"shape": [...], "data": [...]}}) instead of importing it.
import Foundation
import ThawNN

/// Named reference tensors from `Tests/Fixtures/<name>.json`.
struct FixtureFile {
    struct Entry: Decodable {
        var shape: [Int]
        var data: [Double]
    }

    struct Missing: Error, CustomStringConvertible {
        var path: String
        var tensor: String
        var description: String { "\(path): no tensor named '\(tensor)'" }
    }

    let tensors: [String: Entry]
    let path: String

    init(named name: String, filePath: String = #filePath) throws {
        var url = URL(fileURLWithPath: filePath)
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url.deleteLastPathComponent()
        }
        let file = url.appendingPathComponent("Tests/Fixtures/\(name).json")
        path = file.path
        tensors = try JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: file))
    }

    /// The values of one tensor as Float.
    func floats(_ name: String) throws -> [Float] { try doubles(name).map { Float($0) } }

    /// The values of one tensor as written (schedules are stored in Double).
    func doubles(_ name: String) throws -> [Double] {
        guard let entry = tensors[name] else { throw Missing(path: path, tensor: name) }
        return entry.data
    }
}

/// The largest difference relative to the reference's scale: max |a−b| / max(1e-6, max |b|)
/// (ThawTesting's definition).
func relativeError(_ actual: [Float], _ expected: [Float]) -> Double {
    precondition(actual.count == expected.count, "sizes differ: \(actual.count) vs \(expected.count)")
    var diff = 0.0
    var scale = 1e-6
    for (a, b) in zip(actual, expected) {
        diff = max(diff, abs(Double(a) - Double(b)))
        scale = max(scale, abs(Double(b)))
    }
    return diff / scale
}

/// Group indices of the test store.
enum TestGroup {
    static let stem = 0
    static let body = 1
    static let head = 2
    static let names = ["stem", "body", "head"]
}

/// A store with a frozen "stem" [5], then "body" [3, 4] and "head" [17], the fixture's groups.
func makeStore() -> ParameterStore {
    ParameterStore(groups: [
        (name: "stem", parameters: [ParameterSpec("stem.weight", shape: [5], initializer: .zeros)], state: []),
        (name: "body", parameters: [ParameterSpec("body.weight", shape: [3, 4], initializer: .zeros)], state: []),
        (name: "head", parameters: [ParameterSpec("head.weight", shape: [17], initializer: .zeros)], state: []),
    ])
}

extension ParameterStore {
    /// Copies `values` into group `group`'s parameters.
    func setParameters(group: Int, _ values: [Float]) {
        precondition(values.count == groupRanges[group].count)
        for (i, v) in values.enumerated() { parameters[groupRanges[group].lowerBound + i] = v }
    }

    /// Copies `values` into group `group`'s gradients.
    func setGradients(group: Int, _ values: [Float]) {
        precondition(values.count == groupRanges[group].count)
        for (i, v) in values.enumerated() { gradients[groupRanges[group].lowerBound + i] = v }
    }

    /// A copy of group `group`'s parameters.
    func parameters(group: Int) -> [Float] { Array(parameters[groupRanges[group]]) }
}

/// A copy of `buffer`'s elements in `range`.
func slice(_ buffer: UnsafeMutableBufferPointer<Float>, _ range: Range<Int>) -> [Float] { Array(buffer[range]) }

/// Bit patterns, for bit-for-bit comparisons (NaN payloads and signed zeros included).
func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
