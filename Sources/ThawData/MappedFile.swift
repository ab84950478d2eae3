// MappedFile: the bytes of a whole weight file, memory-mapped read-only so that large files
// (safetensors, PyTorch checkpoints) are decoded straight from the page cache, never copied first.
//
// Note: a file that another process truncates while it is mapped makes reads past the new end fault
// (SIGBUS); weight files are written atomically (temporary file, then rename), which avoids that.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Read-only bytes of a file (memory-mapped) or of a copied buffer, alive as long as this object.
/// Immutable after `init`, so it may be shared across threads.
final class MappedFile: @unchecked Sendable {
    /// The bytes; empty (with a nil base address) for an empty file.
    let bytes: UnsafeRawBufferPointer
    /// Whether `bytes` is an mmap region (unmapped in deinit) or an allocation (deallocated).
    private let isMapped: Bool

    /// Maps `path` read-only.
    /// - Throws: ``DataError`` `.notFound` or `.unreadable`, naming the file.
    init(path: String) throws(DataError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError(file: path, kind: .notFound, detail: "no such file")
        }
        guard !isDirectory.boolValue else { throw DataError(file: path, kind: .unreadable, detail: "is a directory, not a file") }
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw DataError(file: path, kind: .unreadable, detail: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw DataError(file: path, kind: .unreadable, detail: "cannot stat: \(String(cString: strerror(errno)))") }
        let size = Int(status.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            isMapped = false
            return
        }
        guard let region = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), region != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw DataError(file: path, kind: .unreadable, detail: "cannot memory-map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: region, count: size)
        isMapped = true
    }

    /// Copies bytes that are already in memory (tests, fuzzing, data that came from elsewhere).
    init(copying source: some Collection<UInt8>) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: 16)
        _ = buffer.initializeMemory(as: UInt8.self, from: source)
        bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: source.count)
        isMapped = false
    }

    deinit {
        guard let base = bytes.baseAddress else { return }
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        } else {
            base.deallocate()
        }
    }
}
