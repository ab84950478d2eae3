// MemoryReport: each rank's peak resident memory against an estimate of what training needs —
// parameters and state, trainable gradients, optimizer state for the trainable groups, and the
// peak bytes held by tensors (activations, their gradients, scratch, the input batch) and oneDNN's
// workspace. Gathered
// from every rank at the end of a run, written to metrics.jsonl and printed by rank 0.
//
// The peak is the resident high-water mark of the training phase alone: Linux's VmHWM, reset just
// before the first step (/proc/self/clear_refs), so loading peaks (decompression, conversion) that
// are gone by then do not count.
//
// Frozen groups add nothing but their parameters: their gradient and optimizer pages are never
// written, so never resident (ZeroedMemory), and they keep no activations.
import Foundation
import ThawCollective
import ThawKernels
import ThawNN
import ThawOptim

/// One rank's memory at the end of a run, in bytes.
public struct RankMemory: Codable, Equatable, Sendable {
    /// The rank.
    public var rank: Int
    /// Peak resident set size of the process while it trained (from the first step to the end).
    public var peakResident: Int
    /// Resident set size just before the first training step (data, model, libraries, runtime).
    public var residentBeforeTraining: Int
    /// Parameters and batch-norm state.
    public var parameters: Int
    /// Gradients of the trainable parameters (the largest trainable set, which is the last).
    public var trainableGradients: Int
    /// Optimizer state of the trainable parameters.
    public var optimizerState: Int
    /// The most bytes tensors held at once (activations, their gradients and scratch), plus oneDNN's
    /// shared workspace for blocked-layout copies.
    public var activations: Int
    /// The most bytes the frozen-prefix feature caches held in memory at once.
    public var featureCache: Int

    /// parameters + trainable gradients + optimizer state + activations + feature cache.
    public var estimate: Int { parameters + trainableGradients + optimizerState + activations + featureCache }

    /// Peak resident ÷ estimate (the benchmark's figure; goal ≤ 1.3).
    public var ratio: Double { Double(peakResident) / Double(max(estimate, 1)) }

    /// What training added to the resident set ÷ what the estimate adds beyond the parameters
    /// (which are resident before the first step): the estimate's accuracy without the data,
    /// libraries and runtime that a run holds before it trains.
    public var growthRatio: Double {
        Double(peakResident - residentBeforeTraining) / Double(max(estimate - parameters, 1))
    }

    enum CodingKeys: String, CodingKey {
        case rank
        case peakResident = "peak_resident_bytes"
        case residentBeforeTraining = "resident_before_training_bytes"
        case parameters = "parameter_bytes"
        case trainableGradients = "trainable_gradient_bytes"
        case optimizerState = "optimizer_state_bytes"
        case activations = "activation_bytes"
        case featureCache = "feature_cache_bytes"
    }

    /// This process's figures for `model` trained by `optimizer`.
    public static func measure(rank: Int, model: Model, optimizer: Optimizer, featureCache: Int, residentBeforeTraining: Int) -> RankMemory {
        let floatBytes = MemoryLayout<Float>.stride
        let trainable = model.trainableParameterCount
        return RankMemory(rank: rank, peakResident: ResidentMemory.peak, residentBeforeTraining: residentBeforeTraining,
                          parameters: (model.store.parameterCount + model.store.state.count) * floatBytes,
                          trainableGradients: trainable * floatBytes,
                          optimizerState: optimizer.stateBuffers.filter { !$0.values.isEmpty }.count * trainable * floatBytes,
                          activations: Tensor.peakLiveBytes + DnnlConvolution.workspaceBytes, featureCache: featureCache)
    }

    /// Every rank's figures, gathered on every rank (rank order).
    public static func gather(_ mine: RankMemory, collective: any Collective) throws -> [RankMemory] {
        let fields = 8
        var table = [Double](repeating: 0, count: collective.worldSize * fields)
        let values = [mine.rank, mine.peakResident, mine.residentBeforeTraining, mine.parameters, mine.trainableGradients,
                      mine.optimizerState, mine.activations, mine.featureCache]
        for (index, value) in values.enumerated() { table[mine.rank * fields + index] = Double(value) }
        try table.withUnsafeMutableBufferPointer { try collective.allReduceSum($0) }
        return (0..<collective.worldSize).map { rank in
            let row = table[(rank * fields)..<((rank + 1) * fields)].map { Int($0) }
            let r = Array(row)
            return RankMemory(rank: r[0], peakResident: r[1], residentBeforeTraining: r[2], parameters: r[3], trainableGradients: r[4],
                              optimizerState: r[5], activations: r[6], featureCache: r[7])
        }
    }

    /// One line for people: the worst rank's ratio and what the estimate is made of.
    public static func summary(_ ranks: [RankMemory]) -> String {
        guard let worst = ranks.max(by: { $0.ratio < $1.ratio }) else { return "memory: no ranks" }
        func megabytes(_ bytes: Int) -> String { String(format: "%.0f MB", Double(bytes) / 1_048_576) }
        return "memory (rank \(worst.rank), the highest ratio): peak resident \(megabytes(worst.peakResident)) ÷ estimate "
            + "\(megabytes(worst.estimate)) = " + String(format: "%.2f", worst.ratio)
            + " (parameters \(megabytes(worst.parameters)), trainable gradients \(megabytes(worst.trainableGradients)), "
            + "optimizer state \(megabytes(worst.optimizerState)), activations \(megabytes(worst.activations))"
            + (worst.featureCache > 0 ? ", feature cache \(megabytes(worst.featureCache))" : "") + "); "
            + "\(megabytes(worst.residentBeforeTraining)) was resident before the first step (data, libraries, runtime)"
    }
}

/// This process's resident memory, from /proc/self (Linux).
public enum ResidentMemory {
    /// The resident set size now, in bytes (VmRSS), or 0 if unknown.
    public static var current: Int { field("VmRSS:") }

    /// The resident high-water mark in bytes (VmHWM) since the process started or ``resetPeak()``.
    public static var peak: Int { field("VmHWM:") }

    /// Restarts the high-water mark from the current resident set (writes 5 to /proc/self/clear_refs).
    /// Returns false where the kernel does not allow it; the peak then covers the whole process.
    @discardableResult
    public static func resetPeak() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// A "Name:   123 kB" line of /proc/self/status, in bytes.
    /// (Read with stdio: /proc files report a size of 0, which Foundation's whole-file reads trust.)
    private static func field(_ name: String) -> Int {
        guard let file = fopen("/proc/self/status", "r") else { return 0 }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard line.hasPrefix(name) else { continue }
            let number = line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? ""
            return (Int(number) ?? 0) * 1024
        }
        return 0
    }
}
