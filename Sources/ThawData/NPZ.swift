// NPZ: numpy's `np.savez` archives: a zip of `.npy` members, read with the same checks as NPY.
/// Reads `.npz` archives (stored or deflated, as `np.savez` and `np.savez_compressed` write them).
public enum NPZReader {
    /// Every array in the archive, by name (the member name without `.npy`).
    /// - Throws: ``DataError`` naming the archive and, for a bad member, the member.
    public static func read(_ path: String) throws(DataError) -> [String: NPYArray] {
        let archive = try ZipArchive(storage: try MappedFile(path: path), file: path)
        var arrays: [String: NPYArray] = [:]
        for entry in archive.entries where entry.name.hasSuffix(".npy") {
            let bytes = try archive.withContents(of: entry) { (raw: UnsafeRawBufferPointer) throws(DataError) -> [UInt8] in Array(raw) }
            arrays[String(entry.name.dropLast(4))] = try NPYReader.parse(bytes, file: "\(path) (\(entry.name))")
        }
        guard !arrays.isEmpty else { throw DataError(file: path, kind: .badHeader, detail: "the archive holds no .npy members") }
        return arrays
    }
}
