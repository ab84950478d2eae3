// ElementType: the element types of weight files (safetensors dtypes, PyTorch storage types) and
// their conversion to Float, decoded straight from raw little-endian bytes.
//
// Integers and booleans convert exactly up to 2^24 and round beyond; F64 rounds to nearest Float.

/// An element type Thaw can decode to Float, named as safetensors names it.
enum ElementType: String, Sendable, CaseIterable {
    case float32 = "F32", float16 = "F16", bfloat16 = "BF16", float64 = "F64"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8"
    case uint64 = "U64", uint32 = "U32", uint16 = "U16", uint8 = "U8", bool = "BOOL"

    /// Bytes per element of every safetensors dtype, including those Thaw cannot decode (8-bit floats),
    /// so that their sizes can still be validated.
    static let safetensorsByteCounts: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E5M2": 1, "F8_E4M3": 1,
        "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    ]

    /// Bytes per element.
    var byteCount: Int {
        switch self {
        case .float64, .int64, .uint64: return 8
        case .float32, .int32, .uint32: return 4
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// Converts `count` elements starting at `source` (any alignment, little-endian) into `destination`.
    func decode(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        decode(source, count: count, into: destination) { $0 }
    }

    /// Converts elements at the given element indices of `source` (a gather, for strided tensors).
    func decode(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>, index: (Int) -> Int) {
        let size = byteCount
        @inline(__always) func at(_ i: Int) -> UnsafeRawPointer { source + index(i) * size }
        switch self {
        case .float32:
            for i in 0..<count { destination[i] = Float(bitPattern: UInt32(littleEndian: at(i).loadUnaligned(as: UInt32.self))) }
        case .float16:
            for i in 0..<count { destination[i] = Float(Float16(bitPattern: UInt16(littleEndian: at(i).loadUnaligned(as: UInt16.self)))) }
        case .bfloat16:
            for i in 0..<count { destination[i] = Float(bitPattern: UInt32(UInt16(littleEndian: at(i).loadUnaligned(as: UInt16.self))) << 16) }
        case .float64:
            for i in 0..<count { destination[i] = Float(Double(bitPattern: UInt64(littleEndian: at(i).loadUnaligned(as: UInt64.self)))) }
        case .int64:
            for i in 0..<count { destination[i] = Float(Int64(littleEndian: at(i).loadUnaligned(as: Int64.self))) }
        case .int32:
            for i in 0..<count { destination[i] = Float(Int32(littleEndian: at(i).loadUnaligned(as: Int32.self))) }
        case .int16:
            for i in 0..<count { destination[i] = Float(Int16(littleEndian: at(i).loadUnaligned(as: Int16.self))) }
        case .int8:
            for i in 0..<count { destination[i] = Float(at(i).load(as: Int8.self)) }
        case .uint64:
            for i in 0..<count { destination[i] = Float(UInt64(littleEndian: at(i).loadUnaligned(as: UInt64.self))) }
        case .uint32:
            for i in 0..<count { destination[i] = Float(UInt32(littleEndian: at(i).loadUnaligned(as: UInt32.self))) }
        case .uint16:
            for i in 0..<count { destination[i] = Float(UInt16(littleEndian: at(i).loadUnaligned(as: UInt16.self))) }
        case .uint8:
            for i in 0..<count { destination[i] = Float(at(i).load(as: UInt8.self)) }
        case .bool:
            for i in 0..<count { destination[i] = at(i).load(as: UInt8.self) != 0 ? 1 : 0 }
        }
    }

    /// Decodes `count` contiguous elements into a new array.
    func decodeArray(_ source: UnsafeRawPointer, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0, let base = buffer.baseAddress {
                if self == .float32 {
                    // Little-endian host: the bytes are already Floats.
                    UnsafeMutableRawPointer(base).copyMemory(from: source, byteCount: count * 4)
                } else {
                    decode(source, count: count, into: base)
                }
            }
            initialized = count
        }
    }
}
