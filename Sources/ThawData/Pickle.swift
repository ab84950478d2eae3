// Pickle: a restricted unpickler for PyTorch state dicts. It interprets only the opcodes a state
// dict needs and resolves only an allow-list of globals (OrderedDict, the tensor and parameter
// rebuild functions, the typed storage classes), so it never runs anything a file asks for.
// Any other opcode or global is refused with an error naming it, its byte offset and the file.
//
// Note: restricted pickle. A pickle is a program for a stack machine; here the "calls" (REDUCE)
// are evaluated by Thaw itself for the allowed globals only, building plain values: dicts, lists,
// tuples, numbers, strings, storage references (from persistent ids) and tensor references.
// Every read is bounds-checked, every opcode consumes at least one byte (so it always ends), and
// collection sizes are bounded by the input's length.
//
// Note: bounded nesting. Values nest at most `maximumDepth` deep, so that neither walking nor freeing
// them can exhaust the stack. A list or dict is sealed when it is put inside another container and
// may not change afterwards (pickle fills a container before nesting it; only self-referencing
// structures, which state dicts never contain, would need more), so each container's depth is known
// when it is nested and no cycles can form.

/// A mutable list shared between the stack and the memo, as in Python.
final class PickleList {
    var items: [PickleValue] = []
    /// Nesting depth (see "Note: bounded nesting").
    var depth = 1
    /// Set once the list is inside another container; it may not change after that.
    var sealed = false
}

/// A mutable dict shared between the stack and the memo; entries keep their insertion order.
final class PickleDict {
    var entries: [(key: PickleValue, value: PickleValue)] = []
    /// Nesting depth (see "Note: bounded nesting").
    var depth = 1
    /// Set once the dict is inside another container; it may not change after that.
    var sealed = false
}

/// The globals the unpickler accepts.
enum PickleGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2, rebuildTensor, rebuildParameter, rebuildParameterWithState
    case storageType(ElementType)

    /// Resolves `module.name`, or nil if it is not on the allow-list.
    init?(module: String, name: String) {
        switch (module, name) {
        case ("collections", "OrderedDict"): self = .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor"): self = .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): self = .rebuildParameterWithState
        case ("torch", _):
            let storages: [String: ElementType] = [
                "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16, "DoubleStorage": .float64,
                "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
                "ByteStorage": .uint8, "BoolStorage": .bool,
            ]
            guard let type = storages[name] else { return nil }
            self = .storageType(type)
        default: return nil
        }
    }
}

/// A storage named by a persistent id: its key in the file, element type and element count.
struct TorchStorageReference: Equatable {
    var key: String
    var type: ElementType
    var elementCount: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view into a storage.
struct TorchTensorReference {
    var storage: TorchStorageReference
    var offset: Int
    var shape: [Int]
    var strides: [Int]
}

/// A value on the unpickler's stack.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for Int: its little-endian two's-complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case tuple([PickleValue], depth: Int)
    case list(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(TorchStorageReference)
    case tensor(TorchTensorReference)

    /// How deeply containers nest in this value (0 for a scalar).
    var depth: Int {
        switch self {
        case .tuple(_, let depth): return depth
        case .list(let list): return list.depth
        case .dict(let dict): return dict.depth
        default: return 0
        }
    }

    /// A short name of the value's kind, for errors.
    var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global: return "global"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// Runs one pickle (up to its STOP opcode) from `bytes[position...]`.
///
/// Note: linear time. The unpickler is a class so that its stack and memo are never copied. As a
/// struct, a call of one of its own non-mutating methods (`top()`, `tuple(_:)`, `resolve`, ...) in an
/// expression that then changed the stack or memo could hold a copy of the struct (a debug build always
/// did), so that change copied the whole stack or memo: a pickle of N tensors took O(N²) time.
final class RestrictedUnpickler {
    /// The whole input; the pickle starts at `position`.
    let bytes: UnsafeRawBufferPointer
    /// The next byte to read; after `load()`, the byte after STOP.
    var position: Int
    /// The file, for errors.
    let file: String
    /// Turns a persistent id (the tuple BINPERSID pops) into a value.
    let persistentLoad: (PickleValue) throws(DataError) -> PickleValue

    /// The deepest nesting of containers accepted.
    static let maximumDepth = 64

    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private var opcodeOffset = 0

    init(bytes: UnsafeRawBufferPointer, position: Int, file: String, persistentLoad: @escaping (PickleValue) throws(DataError) -> PickleValue) {
        self.bytes = bytes
        self.position = position
        self.file = file
        self.persistentLoad = persistentLoad
    }

    /// An error about the pickle at the current opcode.
    func error(_ detail: String, _ kind: DataError.Kind = .badHeader) -> DataError {
        DataError(file: file, kind: kind, detail: "pickle byte \(opcodeOffset): \(detail)")
    }

    private func read(_ count: Int) throws(DataError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else { throw error("ends early (needs \(count) more bytes)", .truncated) }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    private func readUnsigned(_ count: Int) throws(DataError) -> Int {
        let raw = try read(count)
        var value = 0
        for (i, byte) in raw.enumerated() { value |= Int(byte) << (8 * i) }
        return value
    }

    private func readLine() throws(DataError) -> String {
        var end = position
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else { throw error("ends inside a text line", .truncated) }
        let line = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
        position = end + 1
        return line
    }

    private func readString(lengthBytes: Int) throws(DataError) -> String {
        let length = try readUnsigned(lengthBytes)
        let raw = try read(length)
        guard let text = String(validating: raw, as: UTF8.self) else { throw error("string is not valid UTF-8") }
        return text
    }

    private func pop() throws(DataError) -> PickleValue {
        guard let value = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw error("stack underflow") }
        return value
    }

    private func popToMark() throws(DataError) -> [PickleValue] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw error("no MARK to pop to") }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    private func top() throws(DataError) -> PickleValue {
        guard let value = stack.last, stack.count > (marks.last ?? 0) else { throw error("stack underflow") }
        return value
    }

    /// Runs opcodes until STOP and returns the value left on the stack.
    func load() throws(DataError) -> PickleValue {
        while true {
            opcodeOffset = position
            let opcode = try read(1)[0]
            switch opcode {
            case 0x80:  // PROTO
                let version = try read(1)[0]
                guard version <= 5 else { throw error("pickle protocol \(version) is not supported", .unsupported) }
            case 0x95: _ = try read(8)  // FRAME: a length hint only
            case 0x2E:  // STOP
                guard stack.count == 1, marks.isEmpty else { throw error("STOP with \(stack.count) values on the stack") }
                return stack[0]
            case 0x7D: stack.append(.dict(PickleDict()))  // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList()))  // EMPTY_LIST
            case 0x29: stack.append(.tuple([], depth: 1))  // EMPTY_TUPLE
            case 0x28: marks.append(stack.count)  // MARK
            case 0x58: stack.append(.string(try readString(lengthBytes: 4)))  // BINUNICODE
            case 0x8C: stack.append(.string(try readString(lengthBytes: 1)))  // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try readString(lengthBytes: 8)))  // BINUNICODE8
            case 0x71: memo[try readUnsigned(1)] = try top()  // BINPUT
            case 0x72: memo[try readUnsigned(4)] = try top()  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let key = try readUnsigned(opcode == 0x68 ? 1 : 4)
                guard let value = memo[key] else { throw error("memo key \(key) was never stored") }
                stack.append(value)
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try readUnsigned(4)))))  // BININT
            case 0x4B: stack.append(.int(try readUnsigned(1)))  // BININT1
            case 0x4D: stack.append(.int(try readUnsigned(2)))  // BININT2
            case 0x8A:  // LONG1: little-endian two's complement
                let length = try readUnsigned(1)
                let raw = Array(try read(length))
                if raw.count <= 8 {
                    var value: UInt64 = 0
                    for (i, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
                    if let last = raw.last, last & 0x80 != 0, raw.count < 8 { value |= ~0 << (8 * UInt64(raw.count)) }
                    stack.append(.int(Int(Int64(bitPattern: value))))
                } else {
                    stack.append(.bigInt(raw))
                }
            case 0x47:  // BINFLOAT: big-endian double
                var bits: UInt64 = 0
                for byte in try read(8) { bits = bits << 8 | UInt64(byte) }
                stack.append(.float(Double(bitPattern: bits)))
            case 0x4E: stack.append(.none)  // NONE
            case 0x88: stack.append(.bool(true))  // NEWTRUE
            case 0x89: stack.append(.bool(false))  // NEWFALSE
            case 0x74: stack.append(try tuple(try popToMark()))  // TUPLE
            case 0x85: stack.append(try tuple([try pop()]))  // TUPLE1
            case 0x86:  // TUPLE2
                let second = try pop(), first = try pop()
                stack.append(try tuple([first, second]))
            case 0x87:  // TUPLE3
                let third = try pop(), second = try pop(), first = try pop()
                stack.append(try tuple([first, second, third]))
            case 0x6C:  // LIST
                let list = PickleList()
                list.items = try popToMark()
                list.depth = try nest(list.items)
                stack.append(.list(list))
            case 0x64:  // DICT
                let dict = PickleDict()
                let items = try popToMark()
                dict.depth = try nest(items)
                try Self.pairs(items, into: dict, error: error)
                stack.append(.dict(dict))
            case 0x73:  // SETITEM
                let value = try pop(), key = try pop()
                guard case .dict(let dict) = try top() else { throw error("SETITEM on a \(try top().kindName), not a dict") }
                dict.depth = max(dict.depth, try nest([key, value]))
                try checkUnsealed(dict.sealed)
                dict.entries.append((key, value))
            case 0x75:  // SETITEMS
                let items = try popToMark()
                guard case .dict(let dict) = try top() else { throw error("SETITEMS on a \(try top().kindName), not a dict") }
                dict.depth = max(dict.depth, try nest(items))
                try checkUnsealed(dict.sealed)
                try Self.pairs(items, into: dict, error: error)
            case 0x61:  // APPEND
                let value = try pop()
                guard case .list(let list) = try top() else { throw error("APPEND on a \(try top().kindName), not a list") }
                list.depth = max(list.depth, try nest([value]))
                try checkUnsealed(list.sealed)
                list.items.append(value)
            case 0x65:  // APPENDS
                let items = try popToMark()
                guard case .list(let list) = try top() else { throw error("APPENDS on a \(try top().kindName), not a list") }
                list.depth = max(list.depth, try nest(items))
                try checkUnsealed(list.sealed)
                list.items += items
            case 0x63:  // GLOBAL: "module\nname\n"
                let module = try readLine(), name = try readLine()
                stack.append(.global(try resolve(module: module, name: name)))
            case 0x93:  // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else { throw error("STACK_GLOBAL needs two strings") }
                stack.append(.global(try resolve(module: module, name: name)))
            case 0x51:  // BINPERSID
                stack.append(try persistentLoad(try pop()))
            case 0x52:  // REDUCE
                let arguments = try pop(), callable = try pop()
                guard case .global(let global) = callable, case .tuple(let items, _) = arguments else {
                    throw error("REDUCE of a \(callable.kindName) with a \(arguments.kindName); only allowed globals can be called")
                }
                stack.append(try call(global, items))
            case 0x62:  // BUILD: only OrderedDict's attributes (a state dict's `_metadata`), which Thaw ignores
                _ = try pop()
                guard case .dict = try top() else { throw error("BUILD on a \(try top().kindName) is not supported", .unsupported) }
            default:
                throw error("opcode 0x" + (opcode < 16 ? "0" : "") + String(opcode, radix: 16) + Self.opcodeName(opcode) + " is not allowed in a state dict; Thaw refuses to interpret it", .unsupported)
            }
        }
    }

    /// A tuple of `items` (sealing them), refused if it would nest too deeply.
    private func tuple(_ items: [PickleValue]) throws(DataError) -> PickleValue {
        .tuple(items, depth: try nest(items))
    }

    /// Seals the lists and dicts among `children` and returns the depth of a container holding them.
    private func nest(_ children: [PickleValue]) throws(DataError) -> Int {
        var depth = 0
        for child in children {
            if case .list(let list) = child { list.sealed = true }
            if case .dict(let dict) = child { dict.sealed = true }
            depth = max(depth, child.depth)
        }
        guard depth < Self.maximumDepth else { throw error("values nest deeper than \(Self.maximumDepth)", .unsupported) }
        return depth + 1
    }

    /// Refuses to change a container that is already inside another one (see "Note: bounded nesting").
    private func checkUnsealed(_ sealed: Bool) throws(DataError) {
        guard !sealed else { throw error("a list or dict is changed after being nested (self-referencing structures are not supported)", .unsupported) }
    }

    private static func pairs(_ items: [PickleValue], into dict: PickleDict, error: (String, DataError.Kind) -> DataError) throws(DataError) {
        guard items.count % 2 == 0 else { throw error("odd number of items for a dict", .badHeader) }
        for i in stride(from: 0, to: items.count, by: 2) { dict.entries.append((items[i], items[i + 1])) }
    }

    private func resolve(module: String, name: String) throws(DataError) -> PickleGlobal {
        guard let global = PickleGlobal(module: module, name: name) else {
            throw error("global '\(module).\(name)' is not on Thaw's allow-list (state dicts need only OrderedDict, tensor rebuilders and storage types); refusing to load it", .unsupported)
        }
        return global
    }

    /// Evaluates an allowed global applied to its arguments.
    private func call(_ global: PickleGlobal, _ arguments: [PickleValue]) throws(DataError) -> PickleValue {
        switch global {
        case .orderedDict:
            let dict = PickleDict()
            if let first = arguments.first {
                // OrderedDict(iterable of pairs)
                guard arguments.count == 1, case .list(let list) = first else { throw error("OrderedDict called with unexpected arguments") }
                dict.depth = list.depth
                for item in list.items {
                    guard case .tuple(let pair, _) = item, pair.count == 2 else { throw error("OrderedDict item is not a pair") }
                    dict.entries.append((pair[0], pair[1]))
                }
            }
            return .dict(dict)
        case .rebuildTensorV2, .rebuildTensor:
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            let allowedCounts = global == .rebuildTensor ? [4] : [6, 7]
            guard allowedCounts.contains(arguments.count), case .storage(let storage) = arguments[0], case .int(let offset) = arguments[1],
                  case .tuple(let sizes, _) = arguments[2], case .tuple(let strides, _) = arguments[3] else {
                throw error("tensor rebuild called with unexpected arguments")
            }
            let shape = try integers(sizes, "size"), steps = try integers(strides, "stride")
            guard shape.count == steps.count, offset >= 0 else { throw error("tensor has size \(shape), stride \(steps) and offset \(offset)") }
            return .tensor(TorchTensorReference(storage: storage, offset: offset, shape: shape, strides: steps))
        case .rebuildParameter, .rebuildParameterWithState:
            guard arguments.count == (global == .rebuildParameter ? 3 : 4), case .tensor = arguments[0] else { throw error("parameter rebuild called with unexpected arguments") }
            return arguments[0]
        case .storageType:
            throw error("a storage type cannot be called", .unsupported)
        }
    }

    private func integers(_ items: [PickleValue], _ what: String) throws(DataError) -> [Int] {
        var values: [Int] = []
        for item in items {
            guard case .int(let value) = item, value >= 0 else { throw error("tensor \(what) entries must be non-negative integers") }
            values.append(value)
        }
        return values
    }

    /// The standard name of an opcode Thaw refuses, for the error message.
    private static func opcodeName(_ opcode: UInt8) -> String {
        let names: [UInt8: String] = [
            0x69: "INST", 0x6F: "OBJ", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x50: "PERSID", 0x53: "STRING", 0x54: "BINSTRING",
            0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8E: "BINBYTES8", 0x96: "BYTEARRAY8",
            0x46: "FLOAT", 0x49: "INT", 0x4C: "LONG", 0x8B: "LONG4", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x67: "GET",
            0x70: "PUT", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
            0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
        ]
        return names[opcode].map { " (\($0))" } ?? ""
    }
}
