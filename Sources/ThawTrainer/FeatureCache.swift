// FeatureCache: the output of the frozen groups below the trainable boundary, one row per sample,
// so that later epochs run only the trainable groups.
//
// Valid while the boundary stays where it is and the frozen groups are a fixed function of their
// input: no random augmentation before them, batch norm on running statistics, dropout off in
// inference mode. The trainer drops it when the boundary moves.
//
// Note: every sample on every rank. The sampler reshuffles samples across ranks each epoch (which
// is what makes 1, 2 and 3 ranks train identically), so a rank meets every training sample sooner or
// later. The training cache therefore holds all of them: each rank computes a 1/W contiguous slice
// and the slices are broadcast from their owners. Evaluation shards never move, so an evaluation
// cache fills lazily with this rank's own rows.
//
// Storage: anonymous zero pages (only the rows written become resident), or, beyond the memory
// budget, a file in the run directory that is mapped and unlinked at once (nothing is left behind,
// even after a crash; the page cache holds what fits).
import Foundation
import ThawCollective
import ThawData
import ThawKernels
import ThawNN

#if canImport(Glibc)
import Glibc
#endif

/// The frozen prefix's output for the samples of one dataset.
final class FeatureCache {
    /// Where the rows live.
    enum Backing: Equatable {
        /// Anonymous memory within the budget.
        case memory
        /// A mapped file beyond the budget (already unlinked; the path is for messages).
        case file(String)
    }

    /// The first trainable group: the rows are its input.
    let boundary: Int
    /// The shape of one row (the boundary group's input for one sample).
    let rowShape: [Int]
    /// Floats per row.
    let rowSize: Int
    /// Rows (samples of the dataset).
    let count: Int
    /// Where the rows live.
    let backing: Backing
    /// Whether each row holds its sample's features.
    private(set) var filled: [Bool]
    private let storage: UnsafeMutablePointer<Float>
    private let mappedBytes: Int

    /// Bytes of the rows.
    var byteCount: Int { count * rowSize * MemoryLayout<Float>.stride }

    /// Reserves rows for `count` samples; in anonymous memory when `byteCount` fits `budgetBytes`,
    /// else in a file under `spillDirectory`.
    init(boundary: Int, rowShape: [Int], count: Int, budgetBytes: Int, spillDirectory: String, name: String) throws {
        self.boundary = boundary
        self.rowShape = rowShape
        self.rowSize = rowShape.reduce(1, *)
        self.count = count
        self.filled = Array(repeating: false, count: count)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = max(count * rowSize * MemoryLayout<Float>.stride, 1)
        mappedBytes = (bytes + page - 1) / page * page
        if bytes <= budgetBytes {
            guard let raw = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
                throw TrainingError.io(path: "feature cache", message: "cannot map \(bytes) bytes: \(String(cString: strerror(errno)))")
            }
            storage = raw.bindMemory(to: Float.self, capacity: count * rowSize)
            backing = .memory
            return
        }
        try FileManager.default.createDirectory(atPath: spillDirectory, withIntermediateDirectories: true)
        let path = (spillDirectory as NSString).appendingPathComponent("\(name)-\(getpid()).cache")
        let descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else {
            throw TrainingError.io(path: path, message: "feature cache: cannot create the spill file: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        unlink(path)   // the mapping keeps the data; the directory never shows it
        guard ftruncate(descriptor, off_t(mappedBytes)) == 0,
              let raw = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0), raw != MAP_FAILED else {
            throw TrainingError.io(path: path, message: "feature cache: cannot size or map \(bytes) bytes: \(String(cString: strerror(errno)))")
        }
        storage = raw.bindMemory(to: Float.self, capacity: count * rowSize)
        backing = .file(path)
    }

    deinit { munmap(UnsafeMutableRawPointer(storage), mappedBytes) }

    /// Row `index`.
    func row(_ index: Int) -> UnsafeMutablePointer<Float> { storage + index * rowSize }

    /// Whether every real index of a batch is filled.
    func holds(_ indices: [Int?]) -> Bool { indices.allSatisfy { $0.map { filled[$0] } ?? true } }

    /// Copies a batch's boundary output (row r of `features` for `indices[r]`) into the cache.
    func store(_ features: Tensor, indices: [Int?]) {
        for (r, index) in indices.enumerated() {
            guard let index else { continue }
            row(index).update(from: features.data + r * rowSize, count: rowSize)
            filled[index] = true
        }
    }

    /// Fills `features` (resized to `[indices.count] + rowShape`) with the rows of a batch; padding rows are zero.
    func load(_ indices: [Int?], into features: Tensor) {
        features.resize(to: [indices.count] + rowShape)
        for (r, index) in indices.enumerated() {
            let destination = features.data + r * rowSize
            if let index { destination.update(from: row(index), count: rowSize) } else { destination.update(repeating: 0, count: rowSize) }
        }
    }

    /// Marks every row filled after the ranks exchanged their slices.
    func markAllFilled() { filled = Array(repeating: true, count: count) }

    /// Broadcasts rows `range` from `root` to every rank, in pieces small enough for one MPI call.
    func broadcast(rows range: Range<Int>, root: Int, collective: any Collective) throws {
        let piece = max(1, (256 << 20) / max(rowSize * MemoryLayout<Float>.stride, 1))
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(range.upperBound, start + piece)
            let bytes = UnsafeMutableRawBufferPointer(start: row(start), count: (end - start) * rowSize * MemoryLayout<Float>.stride)
            try collective.broadcast(bytes, root: root)
            start = end
        }
    }
}
