// ExchangeBenchmark: Thaw's gradient exchange against raw MPI_Allreduce on the same bytes,
// and one training step against max(compute, communication), measured in the same run.
//
// Run it under mpirun with 2 or more ranks. Every timed repetition starts after a barrier,
// and every figure is the median over repetitions, as seen by rank 0.
import Foundation
import ThawRun
import ThawTrainer
import ThawCollective
import ThawKernels
import ThawNN

/// The bucketed exchange at one bucket size.
public struct BucketSizeMeasurement: Sendable {
    /// The target bucket size in bytes.
    public var bucketBytes: Int
    /// How many buckets the trainable range made.
    public var buckets: Int
    /// Median seconds of the bucketed exchange with no computation to overlap.
    public var bucketedSeconds: Double
    /// Median seconds of forward + backward with the bucketed exchange overlapped.
    public var stepSeconds: Double
}

/// The results of the exchange benchmark.
public struct ExchangeBenchmarkResult: Sendable {
    /// Trainable parameters exchanged per step.
    public var trainableParameters: Int
    /// Median seconds of raw MPI_Allreduce of the same number of floats.
    public var rawSeconds: Double
    /// Median seconds of Thaw's plain exchange (one all-reduce of the trainable range).
    public var plainSeconds: Double
    /// Median seconds of forward + backward without any exchange.
    public var computeSeconds: Double
    /// The bucketed exchange at each bucket size asked for, in that order.
    public var bucketSizes: [BucketSizeMeasurement]

    /// Plain exchange throughput ÷ raw all-reduce throughput (goal ≥ 0.9).
    public var plainRatio: Double { rawSeconds / plainSeconds }
    /// Bucketed exchange throughput ÷ raw all-reduce throughput at `measurement`'s bucket size.
    public func bucketedRatio(_ measurement: BucketSizeMeasurement) -> Double { rawSeconds / measurement.bucketedSeconds }
    /// Step time ÷ max(compute, communication) at `measurement`'s bucket size (goal ≤ 1.15).
    public func overlapRatio(_ measurement: BucketSizeMeasurement) -> Double {
        measurement.stepSeconds / max(computeSeconds, plainSeconds)
    }
    /// The bucket size with the shortest overlapped step.
    public var fastestStep: BucketSizeMeasurement? { bucketSizes.min { $0.stepSeconds < $1.stepSeconds } }
}

/// Measures gradient exchange and overlap for one model on the current MPI job.
public enum ExchangeBenchmark {
    /// Runs the benchmark.
    /// - Parameters:
    ///   - model: The model; every group trains.
    ///   - collective: The MPI job (2 or more ranks for meaningful figures).
    ///   - batch: The per-rank batch size.
    ///   - bucketSizes: The bucket sizes in bytes to measure the bucketed path at (at least one).
    ///   - repetitions: Timed repetitions; medians are reported.
    public static func run(model: Model, collective: any Collective, batch: Int, bucketSizes: [Int],
                           repetitions: Int) throws -> ExchangeBenchmarkResult {
        precondition(!bucketSizes.isEmpty, "ExchangeBenchmark: no bucket size to measure")
        let store = model.store
        let range = model.trainableRange
        let plain = PlainExchange(collective: collective, gradients: store.gradients)
        plain.prepare(firstTrainableGroup: model.firstTrainableGroup)

        let raw = UnsafeMutableBufferPointer<Float>.allocate(capacity: range.count)
        defer { raw.deallocate() }
        raw.initialize(repeating: 0)

        func timed(_ body: () throws -> Void) throws -> Double {
            var times: [Double] = []
            try body()  // warm-up
            for _ in 0..<max(1, repetitions) {
                try collective.barrier()
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            // Rank 0's median; every rank reports its own, rank 0 prints.
            return median(times)
        }

        let rawSeconds = try timed { _ = RawMPI.allReduceSum(raw) }
        let plainSeconds = try timed { try plain.finish(trainableRange: range) }

        let input = Tensor(shape: [batch] + model.sampleShape)
        var generator = SplitMix64(seed: UInt64(collective.rank) + 1)
        for i in 0..<input.count { input.data[i] = generator.nextUniform() }
        let upstream = Tensor(shape: [batch] + model.outputSampleShape)
        upstream.fill(1 / Float(batch))
        let computeSeconds = try timed {
            _ = try model.forward(input, training: true)
            model.backward(upstream)
        }

        var measurements: [BucketSizeMeasurement] = []
        for bucketBytes in bucketSizes {
            let bucketed = BucketedExchange(collective: collective, gradients: store.gradients, groupRanges: store.groupRanges, bucketBytes: bucketBytes)
            bucketed.prepare(firstTrainableGroup: model.firstTrainableGroup)
            // With no backward to start them, `finish` starts every bucket, head first.
            let bucketedSeconds = try timed { try bucketed.finish(trainableRange: range) }
            let stepSeconds = try timed {
                _ = try model.forward(input, training: true)
                try model.backward(upstream) { try bucketed.groupFinished($0) }
                try bucketed.finish(trainableRange: range)
            }
            measurements.append(BucketSizeMeasurement(bucketBytes: bucketBytes, buckets: bucketed.buckets.count,
                                                      bucketedSeconds: bucketedSeconds, stepSeconds: stepSeconds))
        }
        return ExchangeBenchmarkResult(trainableParameters: range.count, rawSeconds: rawSeconds, plainSeconds: plainSeconds,
                                       computeSeconds: computeSeconds, bucketSizes: measurements)
    }
}
