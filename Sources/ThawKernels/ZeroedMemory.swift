// ZeroedMemory: large zero-filled buffers whose pages become resident only when first written.
//
// The flat gradient buffer and the optimizer's moment buffers span every parameter, but only the
// trainable suffix is ever written. Mapped as fresh anonymous pages (mmap), which the kernel
// supplies zeroed on first write, the frozen part costs address space and no memory: a frozen
// backbone has no resident gradients or optimizer state. (calloc does not promise this: once
// glibc has raised its mmap threshold it serves large blocks from the heap.)
#if canImport(Glibc)
import Glibc
#endif

/// Zero-filled float buffers that stay non-resident until written.
public enum ZeroedMemory {
    /// Allocates `count` zeroed floats (release with ``release(_:)``).
    public static func allocate(count: Int) -> UnsafeMutableBufferPointer<Float> {
        let raw = mmap(nil, mappedLength(count), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let raw, raw != MAP_FAILED else { fatalError("out of memory mapping \(count) floats") }
        return UnsafeMutableBufferPointer(start: raw.bindMemory(to: Float.self, capacity: max(count, 1)), count: count)
    }

    /// Unmaps a buffer from ``allocate(count:)``.
    public static func release(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard let base = buffer.baseAddress else { return }
        munmap(UnsafeMutableRawPointer(base), mappedLength(buffer.count))
    }

    /// The whole pages that hold `count` floats (at least one).
    private static func mappedLength(_ count: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return max(1, (count * MemoryLayout<Float>.stride + page - 1) / page) * page
    }
}
