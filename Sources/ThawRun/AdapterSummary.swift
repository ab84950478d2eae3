// AdapterSummary: one line naming a run's adapters, for its first lines.
import Foundation

extension TrainingConfig {
    /// `adapters lora (rank 8, alpha 16) on query, value`, or `adapters bias (BitFit)`, or nil without adapters.
    var adapterSummary: String? {
        switch model.adapters?.method {
        case nil: nil
        case .lowRank(let lora):
            "adapters lora (rank \(lora.rank), alpha \(String(format: "%g", lora.alpha)), dropout \(String(format: "%g", lora.dropout))) on "
                + lora.targets.map(\.rawValue).joined(separator: ", ")
        case .bias: "adapters bias (BitFit: biases and LayerNorms)"
        }
    }
}
