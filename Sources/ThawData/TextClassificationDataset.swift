// TextClassificationDataset: labelled texts tokenized once, as fixed-length token-id samples.
//
// Note: text samples. A sample is [maximumLength] token ids stored as Float (exact below 2^24):
// [CLS] tokens [SEP] then [PAD] (id 0), as WordPieceTokenizer.encode makes them. There is no
// separate mask tensor: text models derive the attention mask from the ids (id 0 = padding), so
// the vocabulary's [PAD] must be id 0, and the batch padding rows of BatchAssembler (all zeros)
// read as fully padded texts. ShardedSampler and BatchAssembler need nothing text-specific.

/// Texts and labels as [maximumLength] token-id samples (see "Note: text samples").
public struct TextClassificationDataset: Dataset, Sendable {
    /// The token ids of every text, row after row, as Float.
    public let samples: InMemoryDataset
    /// The length of every sample in tokens, [CLS] and [SEP] included.
    public let maximumLength: Int
    /// How many texts had more tokens than fit and lost their end.
    public let truncatedCount: Int

    /// Tokenizes every text once.
    /// - Parameters:
    ///   - texts: The texts and their labels.
    ///   - tokenizer: A tokenizer whose [PAD] is id 0.
    ///   - maximumLength: Tokens per sample, at least 2.
    ///   - classCount: The number of classes; nil means the largest label plus one.
    /// - Throws: ``DataError`` naming the vocabulary if [PAD] is not id 0 (or it has over 2^24 tokens), or the texts' file if a
    ///   label is not in `0..<classCount` or there are no texts.
    public init(_ texts: LabelledTexts, tokenizer: WordPieceTokenizer, maximumLength: Int, classCount: Int? = nil) throws(DataError) {
        precondition(maximumLength >= 2, "maximumLength \(maximumLength) leaves no room for [CLS] and [SEP]")
        guard tokenizer.paddingID == 0 else {
            throw DataError(file: tokenizer.file, kind: .unsupported,
                            detail: "[PAD] has id \(tokenizer.paddingID); text models read id 0 as padding",
                            hint: "use a BERT vocab.txt, whose first line is [PAD]")
        }
        guard tokenizer.vocabularySize <= 1 << 24 else {
            throw DataError(file: tokenizer.file, kind: .unsupported,
                            detail: "\(tokenizer.vocabularySize) tokens: ids above 2^24 are not exact as Float")
        }
        guard texts.count > 0 else { throw DataError(file: texts.file, kind: .badValue, detail: "no texts") }
        let classes = classCount ?? Int((texts.labels.max() ?? -1) + 1)
        if let bad = texts.labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DataError(file: texts.file, kind: .badValue, detail: "label \(texts.labels[bad]) of text \(bad + 1) is not in 0..<\(classes)")
        }
        var features = [Float](repeating: 0, count: texts.count * maximumLength)
        var truncated = 0
        features.withUnsafeMutableBufferPointer { buffer in
            for (row, text) in texts.texts.enumerated() {
                let ids = tokenizer.tokenIDs(text)
                if ids.count > maximumLength - 2 { truncated += 1 }
                let used = min(ids.count, maximumLength - 2)
                let start = row * maximumLength
                buffer[start] = Float(tokenizer.classificationID)
                for i in 0..<used { buffer[start + 1 + i] = Float(ids[i]) }
                buffer[start + 1 + used] = Float(tokenizer.separatorID)
            }
        }
        samples = InMemoryDataset(features: features, labels: texts.labels, sampleShape: [maximumLength], classCount: classes)
        self.maximumLength = maximumLength
        truncatedCount = truncated
    }

    /// The number of texts.
    public var count: Int { samples.count }
    /// [maximumLength].
    public var sampleShape: [Int] { samples.sampleShape }
    /// The number of classes.
    public var classCount: Int { samples.classCount }
    /// Copies the token ids of text `index` (as Float) into `destination`.
    public func copySample(_ index: Int, into destination: UnsafeMutablePointer<Float>) {
        samples.copySample(index, into: destination)
    }
    /// The label of text `index`.
    public func label(_ index: Int) -> Int32 { samples.label(index) }
}
