// Median: the one summary statistic the benchmarks report (shared machines are noisy, so means are not).

/// The median of `values`: the middle value, or the mean of the two middle values (NaN when empty).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}
