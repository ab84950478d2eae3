// Tests that `thaw bench exchange` runs under mpirun with 2 ranks and prints, for every bucket size of
// its sweep, a row with the bucket count and both ratios, the fastest size, and a clear error for a
// bad size; and that the benchmark's bucket counts follow the sizes asked for.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawTesting

@Suite struct ExchangeBenchmarkTests {
    @Test func sweepPrintsARowPerBucketSize() throws {
        let thaw = try #require(thawExecutablePath(), "no thaw executable next to the test binary")
        let result = try spawnProcessGroup(localMPIRun + ["-np", "2", thaw, "bench", "exchange", "--repetitions", "2",
                                                          "--bucket-megabytes", "0.25", "4", "--synthetic-millions", "0.4",
                                                          "--batch", "4"], hangGuardSeconds: 180)
        #expect(result.exitCode == 0, "\(result.output)")
        let rows: [[Substring]] = result.output.split(separator: "\n").map { line in line.split(separator: " ") }
            .filter { (fields: [Substring]) in fields.count == 6 && Double(fields[0]) != nil && Int(fields[1]) != nil }
        // Two models (small CNN and the synthetic one) × two bucket sizes.
        #expect(rows.count == 4, "expected 4 sweep rows:\n\(result.output)")
        // The small CNN's 1.69 MB of gradients make several 0.25 MB buckets and one 4 MB bucket.
        if rows.count == 4 {
            #expect(Double(rows[0][0]) == 0.25 && Double(rows[1][0]) == 4)
            #expect((Int(rows[0][1]) ?? 0) > (Int(rows[1][1]) ?? 0), "smaller buckets, more of them:\n\(result.output)")
            let figures: [Double] = rows.flatMap { row in row[2...].map { Double($0) ?? -1 } }
            #expect(figures.allSatisfy { $0 > 0 }, "\(result.output)")
        }
        #expect(result.output.components(separatedBy: "fastest overlapped step").count == 3, "\(result.output)")

        let bad = try spawnProcessGroup([thaw, "bench", "exchange", "--bucket-megabytes", "0"], hangGuardSeconds: 60)
        #expect(bad.exitCode != 0 && bad.output.contains("--bucket-megabytes"), "\(bad.output)")
    }
}
