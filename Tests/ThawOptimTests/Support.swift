// Support: a small three-group store for the optimizer tests; fixtures come from ThawTesting.
import Foundation
import ThawNN
import ThawTesting

/// The optimizer tests read the shared fixture format through ThawTesting.
typealias FixtureFile = Fixture

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
