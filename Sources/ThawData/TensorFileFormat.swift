// TensorFileFormat: which of the weight-file formats Thaw reads a file is in, told apart by each
// format's structure and never by one byte (a safetensors header length can begin with any byte,
// 0x80 and 0x50 'P' included), and reading any of them into named tensors.
//
// Note: format detection. A file is
//  - safetensors when its first 8 bytes, little-endian, give a header length N of at least 2 that
//    fits in the file, and the N header bytes start with '{' (the JSON is then checked by the reader,
//    so a damaged header gets the parser's precise error);
//  - a torch zip checkpoint when it starts with a plausible zip local file header: PK\x03\x04, a
//    name of at least one byte, and the name and extra field inside the file (the zip reader then
//    checks the central directory, so a truncated archive gets its precise error);
//  - a legacy torch checkpoint when it starts with the pickle PROTO opcode 0x80, a protocol of 2 to 5
//    (and, from protocol 4, a FRAME), then the LONG1 pickle of torch's magic number 0x1950a86a20f9469cfc6c.
// The three are exclusive: a zip's byte 8 is its compression method (never '{'), and the length a
// legacy file's first 8 bytes would give is far larger than any file.

/// The weight-file formats Thaw reads.
public enum TensorFileFormat: String, Sendable {
    /// A safetensors file (Hugging Face).
    case safetensors
    /// A PyTorch checkpoint in the zip layout of torch >= 1.6.
    case torchZip = "torch-zip"
    /// A PyTorch checkpoint in the legacy layout (consecutive pickles).
    case torchLegacy = "torch-legacy"

    /// The format whose structure `bytes` (a whole file) has, or nil if none fits (see "Note: format detection").
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> TensorFileFormat? {
        if safetensorsMismatch(bytes) == nil { return .safetensors }
        if isZipArchive(bytes) { return .torchZip }
        if isLegacyTorch(bytes) { return .torchLegacy }
        return nil
    }

    /// The format of a whole file held in memory, or nil if none fits.
    public static func detect(_ bytes: some Collection<UInt8>) -> TensorFileFormat? {
        Array(bytes).withUnsafeBytes { detect($0) }
    }

    /// The format of mapped file bytes.
    /// - Throws: ``DataError`` `.badMagic` naming the file, and why it is not safetensors, when no format fits.
    static func detect(_ storage: MappedFile, file: String) throws(DataError) -> TensorFileFormat {
        if let format = detect(storage.bytes) { return format }
        let reason = safetensorsMismatch(storage.bytes) ?? "unknown"
        throw DataError(file: file, kind: .badMagic,
                        detail: "not a weight file Thaw reads: not safetensors (\(reason)), not a PyTorch zip archive and not a legacy PyTorch checkpoint",
                        hint: "expected a .safetensors file or a file written by torch.save")
    }

    /// Reads every tensor of a weight file in any of the formats, converted to Float.
    /// - Throws: ``DataError`` naming the file when no format fits or the file is damaged.
    public static func readTensors(_ path: String) throws(DataError) -> [String: SafeTensor] {
        let storage = try MappedFile(path: path)
        switch try detect(storage, file: path) {
        case .safetensors: return try SafeTensorsFile(storage: storage, file: path).allTensors()
        case .torchZip, .torchLegacy: return try TorchCheckpoint.load(storage, file: path).tensors
        }
    }

    /// Why `bytes` is not a safetensors file, or nil when its structure is one.
    static func safetensorsMismatch(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard bytes.count >= 10 else { return "\(bytes.count) bytes is too short" }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLength >= 2, headerLength <= UInt64(bytes.count - 8) else {
            return "header length \(headerLength) does not fit in the \(bytes.count - 8) bytes after it"
        }
        guard bytes[8] == UInt8(ascii: "{") else { return "the \(headerLength)-byte header does not start with '{'" }
        return nil
    }

    /// A plausible local file header at the start: the signature, then a non-empty name that, with
    /// the extra field, lies inside the file.
    static func isZipArchive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 30, ZipArchive.u32(bytes, 0) == 0x0403_4B50 else { return false }
        let nameLength = Int(ZipArchive.u16(bytes, 26)), extraLength = Int(ZipArchive.u16(bytes, 28))
        return nameLength > 0 && 30 + nameLength + extraLength <= bytes.count
    }

    /// PROTO 2...5, an optional FRAME, then LONG1 of the 10 bytes of torch's legacy magic number.
    static func isLegacyTorch(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 2, bytes[0] == 0x80, (2...5).contains(bytes[1]) else { return false }
        var position = 2
        if bytes[1] >= 4, bytes.count > position, bytes[position] == 0x95 { position += 9 }  // FRAME and its 8-byte length
        let magic = [0x8A, 0x0A] + TorchCheckpoint.legacyMagic
        guard bytes.count - position >= magic.count else { return false }
        return magic.indices.allSatisfy { bytes[position + $0] == magic[$0] }
    }
}
