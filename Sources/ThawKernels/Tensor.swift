// Tensor: a reusable, row-major Float32 buffer with a shape.
//
// Layers own their output and input-gradient tensors and reshape them every step.
// A tensor only reallocates when asked for more elements than it has ever held,
// so the steady-state training step allocates nothing. Every tensor allocation is counted
// (`allocationCount`, `liveBytes`, `peakLiveBytes`): tests check that a steady-state step makes
// none, and the memory report uses the peak as the activation term of its estimate.
import Synchronization

/// A row-major buffer of `Float` values with a shape, owned by one layer or one caller.
///
/// `Tensor` is a reference type on purpose: a layer hands its output to the next layer,
/// and keeps it for its own backward pass, without copying.
public final class Tensor {
    /// The extent of each dimension, outermost first (for images: N, C, H, W).
    public private(set) var shape: [Int]
    /// The number of elements described by `shape`.
    public private(set) var count: Int
    /// How many elements the storage can hold without reallocating.
    public private(set) var capacity: Int
    /// The element storage. Valid for `count` elements; never shared between tensors.
    public private(set) var data: UnsafeMutablePointer<Float>

    /// Creates a zero-filled tensor of the given shape.
    /// - Parameter shape: The extent of each dimension; every extent must be non-negative.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor shape \(shape) has a negative extent")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.capacity = max(count, 1)
        self.data = .allocate(capacity: capacity)
        data.initialize(repeating: 0, count: capacity)
        Tensor.allocations.wrappingAdd(1, ordering: .relaxed)
        Tensor.account(bytes: capacity * MemoryLayout<Float>.stride)
    }

    /// Creates a tensor holding a copy of `values`.
    /// - Parameters:
    ///   - shape: The extent of each dimension.
    ///   - values: Row-major values; their number must equal the product of `shape`.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "Tensor shape \(shape) needs \(count) values, got \(values.count)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit {
        data.deallocate()
        Tensor.account(bytes: -capacity * MemoryLayout<Float>.stride)
    }

    private static let allocations = Atomic<Int>(0)
    private static let liveByteCount = Atomic<Int>(0)
    private static let peakByteCount = Atomic<Int>(0)

    /// How many times a tensor's storage was allocated in this process (creation or growth).
    public static var allocationCount: Int { allocations.load(ordering: .relaxed) }

    /// Bytes held by every tensor in this process now.
    public static var liveBytes: Int { liveByteCount.load(ordering: .relaxed) }

    /// The most bytes tensors held at once in this process (activations, their gradients, scratch).
    public static var peakLiveBytes: Int { peakByteCount.load(ordering: .relaxed) }

    /// Restarts the peak from the bytes held now.
    public static func resetPeak() { peakByteCount.store(liveBytes, ordering: .relaxed) }

    private static func account(bytes: Int) {
        let live = liveByteCount.wrappingAdd(bytes, ordering: .relaxed).newValue
        _ = peakByteCount.max(live, ordering: .relaxed)
    }

    /// Changes the shape, reallocating only when the new shape needs more elements than the capacity.
    ///
    /// Contents are unspecified after a call that grows the tensor.
    /// - Parameter newShape: The new extent of each dimension.
    public func resize(to newShape: [Int]) {
        let newCount = newShape.reduce(1, *)
        if newCount > capacity {
            data.deallocate()
            Tensor.allocations.wrappingAdd(1, ordering: .relaxed)
            Tensor.account(bytes: (newCount - capacity) * MemoryLayout<Float>.stride)
            capacity = newCount
            data = .allocate(capacity: capacity)
            data.initialize(repeating: 0, count: capacity)
        }
        shape = newShape
        count = newCount
    }

    /// Sets every element to zero.
    public func zero() { data.update(repeating: 0, count: count) }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// The elements as a buffer pointer, valid until the next `resize`.
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    /// A copy of the elements, for tests and reports.
    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Copies shape and elements from another tensor, resizing as needed.
    public func copy(from other: Tensor) {
        resize(to: other.shape)
        data.update(from: other.data, count: count)
    }

    /// The element at a multi-dimensional index (slow; for tests and debugging).
    public subscript(index: Int...) -> Float {
        get { data[flatIndex(index)] }
        set { data[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) does not match shape \(shape)")
        var flat = 0
        for (i, extent) in zip(index, shape) {
            precondition(i >= 0 && i < extent, "index \(index) out of range for shape \(shape)")
            flat = flat * extent + i
        }
        return flat
    }
}
