// TrainableShare: what trains, in people's terms: trainable ÷ total parameters and the bytes each
// rank sends per step (4 per trainable parameter with two or more ranks, what the exchanges count),
// for the run's first lines, each plan's line and `thaw inspect` (from the `trainable_parameters`
// and `total_parameters` metadata of checkpoints and model.safetensors).
import Foundation

/// A share of a model's parameters and the bytes per step it costs to exchange.
public struct TrainableShare: Sendable, Equatable, CustomStringConvertible {
    /// The parameters that train.
    public var trainable: Int
    /// All parameters.
    public var total: Int
    /// The ranks exchanging them.
    public var worldSize: Int

    /// Creates a share.
    public init(trainable: Int, total: Int, worldSize: Int) {
        self.trainable = trainable
        self.total = total
        self.worldSize = worldSize
    }

    /// Bytes each rank sends per step for them (none on one rank).
    public var bytesPerStep: Int { worldSize > 1 ? trainable * MemoryLayout<Float>.stride : 0 }

    /// trainable ÷ total, as a percentage.
    public var percent: Double { total > 0 ? 100 * Double(trainable) / Double(total) : 0 }

    /// `150,016 of 22,713,218 parameters (0.66%), 600,064 B exchanged per step`.
    public var description: String {
        "\(Self.grouped(trainable)) of \(Self.grouped(total)) parameters (\(String(format: percent < 0.1 ? "%.3f" : percent < 1 ? "%.2f" : "%.1f", percent))%), "
            + (worldSize > 1 ? "\(Self.grouped(bytesPerStep)) B exchanged per step" : "nothing exchanged on 1 rank")
    }

    /// A count with thousands separators.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return (value < 0 ? "-" : "") + result
    }
}

