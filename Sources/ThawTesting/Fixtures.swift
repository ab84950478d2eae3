// Fixtures: reads the reference tensors generated once from PyTorch by
// scripts/make_fixtures.py and committed under Tests/Fixtures.
//
// Format: one JSON object per fixture file, mapping a tensor name to
// {"shape": [..], "data": [..]} with float32 values written in full precision.
import Foundation

/// A set of named reference tensors loaded from one fixture file.
public struct Fixture {
    /// One tensor: its shape and row-major values.
    public struct Entry: Decodable {
        /// The tensor's shape.
        public var shape: [Int]
        /// Row-major values as written (schedules and optimizer references need Double).
        public var doubleData: [Double]
        /// Row-major values as Float.
        public var data: [Float] { doubleData.map { Float($0) } }

        enum CodingKeys: String, CodingKey { case shape, doubleData = "data" }
    }

    /// The tensors by name.
    public let tensors: [String: Entry]
    /// Where the fixture came from, for error messages.
    public let path: String

    /// Loads `Tests/Fixtures/<name>.json` relative to the package root.
    public init(named name: String, filePath: String = #filePath) throws {
        var url = URL(fileURLWithPath: filePath)
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url.deleteLastPathComponent()
        }
        let file = url.appendingPathComponent("Tests/Fixtures/\(name).json")
        path = file.path
        tensors = try JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: file))
    }

    /// The values of one tensor as Float.
    public func floats(_ name: String) throws -> [Float] { try self(name).data }

    /// The values of one tensor as written, in Double.
    public func doubles(_ name: String) throws -> [Double] { try self(name).doubleData }

    /// The tensor with the given name; fails the caller's expectations with a clear message if absent.
    public func callAsFunction(_ name: String) throws -> Entry {
        guard let entry = tensors[name] else { throw FixtureError(path: path, tensor: name) }
        return entry
    }
}

/// A fixture tensor that is missing.
public struct FixtureError: Error, CustomStringConvertible {
    /// The fixture file.
    public var path: String
    /// The missing tensor's name.
    public var tensor: String
    /// One line naming both.
    public var description: String { "\(path): no tensor named '\(tensor)'" }
}

/// The largest relative difference between two arrays: max |a−b| / max(1e-6, max |b|).
public func relativeError(_ actual: [Float], _ expected: [Float]) -> Double {
    precondition(actual.count == expected.count, "sizes differ: \(actual.count) vs \(expected.count)")
    var diff = 0.0
    var scale = 1e-6
    for (a, b) in zip(actual, expected) {
        diff = max(diff, abs(Double(a) - Double(b)))
        scale = max(scale, abs(Double(b)))
    }
    return diff / scale
}
