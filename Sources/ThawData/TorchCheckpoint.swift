// TorchCheckpoint: reads PyTorch state dicts (`torch.save(model.state_dict(), ...)`) without PyTorch.
//
// Two layouts exist:
//  - zip (torch >= 1.6, the default): a zip archive `<prefix>/data.pkl` (the pickled dict, tensors
//    as persistent ids ('storage', type, key, location, numel)), `<prefix>/data/<key>` (each storage's
//    raw little-endian bytes) and optionally `<prefix>/byteorder`.
//  - legacy (`_use_new_zipfile_serialization=False`, and every file before torch 1.6): consecutive
//    pickles of the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a sys-info dict,
//    the object (persistent ids with a sixth entry, view metadata), the list of storage keys; then
//    for each key in that order an 8-byte element count and the storage's raw bytes.
// The pickles are run by ``RestrictedUnpickler``, which refuses anything but plain state-dict content.
// Tensors are views (offset, shape, strides) into storages; contiguous ones are decoded in one pass
// from the mapped file, strided ones are gathered element by element. Integer tensors (a batch norm's
// `num_batches_tracked`) are kept, converted to Float like everything else.

/// A PyTorch checkpoint's tensors, converted to Float.
public struct TorchCheckpoint: Sendable {
    /// The two serialization layouts of `torch.save`.
    public enum Format: String, Sendable {
        /// The zip archive of torch >= 1.6.
        case zip
        /// The sequence of pickles before it (`_use_new_zipfile_serialization=False`).
        case legacy
    }

    /// Which layout the file used.
    public var format: Format
    /// Tensor names in the order the file lists them. Nested dicts are flattened with dots
    /// (`{"model": {"fc.weight": t}}` gives `model.fc.weight`).
    public var names: [String]
    /// The tensors by name; `dtype` is the source element type in safetensors spelling (`F32`, `I64`, ...).
    public var tensors: [String: SafeTensor]
    /// Names of entries that are not tensors (numbers, strings, lists, None), which are left out.
    public var skipped: [String]

    /// The legacy format's magic number, 0x1950a86a20f9469cfc6c, as little-endian bytes.
    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]

    /// Reads a checkpoint file in either format (memory-mapped).
    /// - Throws: ``DataError`` naming the file (and the opcode, global, entry or tensor at fault).
    public static func read(_ path: String) throws(DataError) -> TorchCheckpoint {
        try load(MappedFile(path: path), file: path)
    }

    /// Parses checkpoint bytes held in memory.
    /// - Parameters:
    ///   - bytes: The whole file.
    ///   - file: A name for errors.
    public static func parse(_ bytes: some Collection<UInt8>, file: String) throws(DataError) -> TorchCheckpoint {
        try load(MappedFile(copying: bytes), file: file)
    }

    /// Reads either layout, told apart by their structure (see ``TensorFileFormat``).
    static func load(_ storage: MappedFile, file: String) throws(DataError) -> TorchCheckpoint {
        switch TensorFileFormat.detect(storage.bytes) {
        case .torchZip: return try readZip(ZipArchive(storage: storage, file: file), file: file)
        case .torchLegacy: return try readLegacy(storage.bytes, file: file)
        case .safetensors:
            throw DataError(file: file, kind: .badMagic, detail: "is a safetensors file, not a PyTorch checkpoint",
                            hint: "Thaw reads it as it is; there is nothing to convert")
        case nil:
            throw DataError(file: file, kind: .badMagic, detail: "not a PyTorch checkpoint (neither a zip archive nor a pickle of torch's legacy magic number)",
                            hint: "expected a file written by torch.save")
        }
    }

    /// The storages a pickle's persistent ids named, by key.
    private final class StorageTable {
        var references: [String: TorchStorageReference] = [:]
        var order: [String] = []

        /// Turns a persistent id tuple into a storage value, checking it and recording it.
        func load(_ id: PickleValue, legacy: Bool, file: String) throws(DataError) -> PickleValue {
            guard case .tuple(let items, _) = id, items.count == (legacy ? 6 : 5), case .string("storage") = items[0],
                  case .global(.storageType(let type)) = items[1], case .string(let key) = items[2], case .string = items[3],
                  case .int(let count) = items[4], count >= 0, count <= Int.max / 16 else {
                throw DataError(file: file, kind: .badHeader, detail: "persistent id is not ('storage', <storage type>, key, location, element count)")
            }
            if legacy, case .none = items[5] {} else if legacy {
                throw DataError(file: file, kind: .unsupported, detail: "storage '\(key)' is a view of another storage (pre-1.0 layout), which Thaw does not read")
            }
            let reference = TorchStorageReference(key: key, type: type, elementCount: count)
            if let known = references[key] {
                guard known == reference else { throw DataError(file: file, kind: .badHeader, detail: "storage '\(key)' is described twice, differently") }
            } else {
                references[key] = reference
                order.append(key)
            }
            return .storage(reference)
        }
    }

    private static func readZip(_ archive: ZipArchive, file: String) throws(DataError) -> TorchCheckpoint {
        let pickles = archive.entries.filter { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/", omittingEmptySubsequences: false).count == 2 }
        guard pickles.count == 1, let pickle = pickles.first else {
            throw DataError(file: file, kind: .badHeader, detail: "zip archive has \(pickles.count) '<name>/data.pkl' entries; a PyTorch checkpoint has one")
        }
        let prefix = String(pickle.name.dropLast("data.pkl".count))
        if let order = archive.entry(prefix + "byteorder") {
            let text = try archive.withContents(of: order, expectation: .atMost(16, reason: "a byte order")) { raw throws(DataError) in
                String(decoding: raw, as: UTF8.self)
            }
            guard text == "little" else { throw DataError(file: file, kind: .unsupported, detail: "byte order '\(text)'; Thaw reads little-endian checkpoints") }
        }
        let table = StorageTable()
        let root = try archive.withContents(of: pickle, expectation: .atMost(pickleLimit(pickle), reason: "a pickle")) { raw throws(DataError) in
            let unpickler = RestrictedUnpickler(bytes: raw, position: 0, file: file) { id throws(DataError) in try table.load(id, legacy: false, file: file) }
            return try unpickler.load()
        }
        var checkpoint = try flatten(root, format: .zip, file: file)
        // Each storage entry must declare exactly the bytes its persistent id gave, checked before it is
        // inflated, and only the bytes its tensors read are kept (see "Note: bounded inflation" in ZipArchive).
        for key in table.order {
            guard let entry = archive.entry(prefix + "data/" + key), let storage = table.references[key] else {
                throw DataError(file: file, kind: .truncated, detail: "storage '\(key)' has no entry '\(prefix)data/\(key)' in the archive")
            }
            let size = ZipSizeExpectation.exactly(storage.elementCount * storage.type.byteCount,
                                                  reason: "storage '\(key)' (\(storage.elementCount) \(storage.type.rawValue) elements)")
            let needed = bytesRead(by: checkpoint.pending[key] ?? [], storage: storage)
            try archive.withContents(of: entry, expectation: size, prefix: needed) { raw throws(DataError) in
                try materialize(&checkpoint, key: key, storage: storage, raw: raw, file: file)
            }
        }
        return checkpoint.result
    }

    /// The most a zip checkpoint's pickle may inflate to: 100 times its compressed size plus 16 MiB.
    /// Pickles compress far less than that; only a bomb (zeros deflate about 1032:1) needs more.
    static func pickleLimit(_ entry: ZipEntry) -> Int { entry.compressedSize * 100 + (16 << 20) }

    /// How many leading bytes of a storage its views read: up to the highest element any of them
    /// touches. A view that overflows or reaches past the storage counts as all of it (``values(of:raw:name:file:)``
    /// then refuses it with the reason).
    static func bytesRead(by views: [(name: String, view: TorchTensorReference)], storage: TorchStorageReference) -> Int {
        let size = storage.type.byteCount
        var needed = 0
        for (_, view) in views {
            guard let reach = extent(of: view) else { return storage.elementCount * size }
            guard reach.count > 0 else { continue }
            guard reach.last < storage.elementCount else { return storage.elementCount * size }
            needed = max(needed, (reach.last + 1) * size)
        }
        return needed
    }

    private static func readLegacy(_ bytes: UnsafeRawBufferPointer, file: String) throws(DataError) -> TorchCheckpoint {
        var position = 0
        func next(_ persistentLoad: @escaping (PickleValue) throws(DataError) -> PickleValue) throws(DataError) -> PickleValue {
            let unpickler = RestrictedUnpickler(bytes: bytes, position: position, file: file, persistentLoad: persistentLoad)
            let value = try unpickler.load()
            position = unpickler.position
            return value
        }
        let noPersistentIds: (PickleValue) throws(DataError) -> PickleValue = { _ throws(DataError) in
            throw DataError(file: file, kind: .badHeader, detail: "unexpected persistent id in the checkpoint's preamble")
        }
        guard case .bigInt(let magic) = try next(noPersistentIds), magic == legacyMagic else {
            throw DataError(file: file, kind: .badMagic, detail: "pickle does not start with PyTorch's legacy magic number", hint: "expected a file written by torch.save")
        }
        guard case .int(let version) = try next(noPersistentIds), version == 1001 else {
            throw DataError(file: file, kind: .unsupported, detail: "legacy checkpoint protocol version is not 1001")
        }
        guard case .dict(let systemInfo) = try next(noPersistentIds) else { throw DataError(file: file, kind: .badHeader, detail: "legacy checkpoint has no sys-info dict") }
        for (key, value) in systemInfo.entries {
            if case .string("little_endian") = key, case .bool(false) = value {
                throw DataError(file: file, kind: .unsupported, detail: "checkpoint was written on a big-endian machine")
            }
        }
        let table = StorageTable()
        let root = try next { id throws(DataError) in try table.load(id, legacy: true, file: file) }
        guard case .list(let keyList) = try next(noPersistentIds) else { throw DataError(file: file, kind: .badHeader, detail: "legacy checkpoint has no storage key list") }
        var checkpoint = try flatten(root, format: .legacy, file: file)
        var listed = Set<String>()
        for item in keyList.items {
            guard case .string(let key) = item, listed.insert(key).inserted, let storage = table.references[key] else {
                throw DataError(file: file, kind: .badHeader, detail: "storage key list names a storage that is not a string, repeated or never used")
            }
            guard bytes.count - position >= 8 else { throw DataError(file: file, kind: .truncated, detail: "file ends before storage '\(key)'") }
            let count = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: Int64.self))
            guard count == Int64(storage.elementCount) else {
                throw DataError(file: file, kind: .sizeMismatch, detail: "storage '\(key)' holds \(count) elements; the pickle says \(storage.elementCount)")
            }
            let byteCount = storage.elementCount * storage.type.byteCount
            guard bytes.count - position - 8 >= byteCount else { throw DataError(file: file, kind: .truncated, detail: "file ends inside storage '\(key)'") }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[(position + 8)..<(position + 8 + byteCount)])
            position += 8 + byteCount
            try materialize(&checkpoint, key: key, storage: storage, raw: raw, file: file)
        }
        guard listed.count == table.order.count else {
            throw DataError(file: file, kind: .badHeader, detail: "storages \(table.order.filter { !listed.contains($0) }) are used but not in the storage key list")
        }
        guard position == bytes.count else {
            throw DataError(file: file, kind: .sizeMismatch, detail: "\(bytes.count - position) unexpected bytes after the last storage")
        }
        return checkpoint.result
    }

    /// A checkpoint being assembled: names known, tensors filled in storage by storage.
    private struct Assembly {
        var result: TorchCheckpoint
        /// Tensor views still to decode, grouped by storage key: (name, view).
        var pending: [String: [(name: String, view: TorchTensorReference)]]
    }

    /// Collects the tensors of a state dict (nested dicts flattened with dots).
    private static func flatten(_ root: PickleValue, format: Format, file: String) throws(DataError) -> Assembly {
        guard case .dict(let top) = root else {
            throw DataError(file: file, kind: .unsupported, detail: "the checkpoint holds a \(root.kindName), not a state dict")
        }
        var assembly = Assembly(result: TorchCheckpoint(format: format, names: [], tensors: [:], skipped: []), pending: [:])
        var seen = Set<String>()
        func walk(_ dict: PickleDict, prefix: String, depth: Int) throws(DataError) {
            guard depth < 32 else { throw DataError(file: file, kind: .unsupported, detail: "dicts nested deeper than 32 at '\(prefix)'") }
            for (key, value) in dict.entries {
                let keyText: String
                switch key {
                case .string(let text): keyText = text
                case .int(let number): keyText = String(number)
                default: throw DataError(file: file, kind: .unsupported, detail: "dict key of type \(key.kindName) under '\(prefix)'")
                }
                let name = prefix.isEmpty ? keyText : prefix + "." + keyText
                switch value {
                case .tensor(let view):
                    guard seen.insert(name).inserted else { throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' appears twice") }
                    assembly.result.names.append(name)
                    assembly.pending[view.storage.key, default: []].append((name, view))
                case .dict(let inner):
                    try walk(inner, prefix: name, depth: depth + 1)
                default:
                    assembly.result.skipped.append(name)
                }
            }
        }
        try walk(top, prefix: "", depth: 0)
        return assembly
    }

    /// Decodes every pending tensor that views storage `key` from its raw bytes (the whole storage, or
    /// at least the bytes its views read, whose size the caller has checked).
    private static func materialize(_ assembly: inout Assembly, key: String, storage: TorchStorageReference?, raw: UnsafeRawBufferPointer, file: String) throws(DataError) {
        guard let storage else { return }
        for (name, view) in assembly.pending.removeValue(forKey: key) ?? [] {
            assembly.result.tensors[name] = SafeTensor(shape: view.shape, values: try values(of: view, raw: raw, name: name, file: file), dtype: storage.type.rawValue)
        }
    }

    /// A view's element count and the highest storage element it touches (its offset when it has no
    /// elements); nil if either overflows.
    static func extent(of view: TorchTensorReference) -> (count: Int, last: Int)? {
        var count = 1
        var last = view.offset
        for (extent, stride) in zip(view.shape, view.strides) {
            let (product, o1) = count.multipliedReportingOverflow(by: extent)
            count = product
            guard !o1 else { return nil }
            if extent > 0 {
                let (step, o2) = (extent - 1).multipliedReportingOverflow(by: stride)
                let (sum, o3) = last.addingReportingOverflow(step)
                last = sum
                guard !o2, !o3 else { return nil }
            }
        }
        return (count, last)
    }

    /// The values of one tensor view, row-major, from `raw` (the storage's bytes, or at least the
    /// leading ones the view reads).
    static func values(of view: TorchTensorReference, raw: UnsafeRawBufferPointer, name: String, file: String) throws(DataError) -> [Float] {
        let storage = view.storage
        guard let (count, last) = extent(of: view) else {
            throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' has size \(view.shape) and stride \(view.strides) that overflow")
        }
        if count == 0 { return [] }
        guard last < storage.elementCount else {
            throw DataError(file: file, kind: .badHeader, detail: "tensor '\(name)' (offset \(view.offset), size \(view.shape), stride \(view.strides)) reaches past its storage of \(storage.elementCount) elements")
        }
        guard count <= storage.elementCount else {
            throw DataError(file: file, kind: .unsupported, detail: "tensor '\(name)' has more elements than its storage (an expanded view with zero strides); save it with .contiguous()")
        }
        let size = storage.type.byteCount
        guard last < raw.count / size, let base = raw.baseAddress else {
            throw DataError(file: file, kind: .truncated, detail: "tensor '\(name)' reads element \(last) of storage '\(storage.key)', past the \(raw.count) bytes read of it")
        }
        var contiguous = true
        var expected = 1
        for (extent, stride) in zip(view.shape, view.strides).reversed() {
            if extent != 1 && stride != expected { contiguous = false }
            expected *= extent
        }
        if contiguous { return storage.type.decodeArray(base + view.offset * size, count: count) }
        // Strided view: element i of the row-major result sits at offset + sum(digit_d * stride_d).
        let shape = view.shape, strides = view.strides, offset = view.offset
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let destination = buffer.baseAddress {
                storage.type.decode(base, count: count, into: destination) { i in
                    var rest = i
                    var index = offset
                    for d in stride(from: shape.count - 1, through: 0, by: -1) {
                        index += (rest % shape[d]) * strides[d]
                        rest /= shape[d]
                    }
                    return index
                }
            }
            initialized = count
        }
    }
}
