// Builders for hand-made hostile weight files: a pickle writer for state dicts (strings, integers,
// tensors as torch's persistent ids and `_rebuild_tensor_v2` calls), legacy and zip PyTorch
// checkpoints around such a pickle, and a zip writer that can declare sizes its data does not have.
import CZlib
import Foundation
@testable import ThawData

/// Appends pickle opcodes (protocol 2, as torch.save writes them) to a byte array.
struct PickleBuilder {
    /// The pickle so far.
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        if utf8.count < 256 {
            bytes += [0x8C, UInt8(utf8.count)] + utf8
        } else {
            bytes += [0x58] + FormatTestSupport.bytes(UInt32(utf8.count)) + utf8
        }
    }

    mutating func int(_ value: Int) {
        bytes += [0x4A] + FormatTestSupport.bytes(Int32(value))
    }

    mutating func global(_ module: String, _ name: String) {
        bytes += [0x63] + Array("\(module)\n\(name)\n".utf8)
    }

    mutating func mark() { bytes.append(0x28) }

    /// A float32 tensor of `shape` (contiguous, offset 0) viewing storage `key` of `elements` floats.
    /// Legacy checkpoints add a sixth entry (None) to the persistent id.
    mutating func tensor(key: String, elements: Int, shape: [Int], legacy: Bool = false) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark()                                  // the persistent id
        string("storage")
        global("torch", "FloatStorage")
        string(key)
        string("cpu")
        int(elements)
        if legacy { bytes.append(0x4E) }
        bytes += [0x74, 0x51]                   // TUPLE, BINPERSID
        int(0)                                  // storage offset
        mark()
        for extent in shape { int(extent) }
        bytes.append(0x74)                      // size
        mark()
        var stride = 1
        var strides: [Int] = []
        for extent in shape.reversed() { strides.insert(stride, at: 0); stride *= extent }
        for step in strides { int(step) }
        bytes.append(0x74)                      // stride
        bytes.append(0x89)                      // requires_grad False
        global("collections", "OrderedDict")
        bytes += [0x29, 0x52]                   // OrderedDict()
        bytes += [0x74, 0x52]                   // TUPLE, REDUCE
    }

    /// A whole state-dict pickle: `{name: value}` in one SETITEMS, where `value` writes each entry's
    /// value. With `memoize`, each key is stored in the memo (LONG_BINPUT), as Python's pickler does.
    static func stateDict(_ names: [String], memoize: Bool = false, value: (inout PickleBuilder, Int) -> Void) -> [UInt8] {
        var builder = PickleBuilder()
        builder.bytes += [0x7D, 0x28]           // EMPTY_DICT, MARK
        for (index, name) in names.enumerated() {
            builder.string(name)
            if memoize { builder.bytes += [0x72] + FormatTestSupport.bytes(UInt32(index)) }
            value(&builder, index)
        }
        builder.bytes += [0x75, 0x2E]           // SETITEMS, STOP
        return builder.bytes
    }
}

/// One entry of a hand-built zip archive.
struct ZipBuilderEntry {
    var name: String
    /// The bytes written to the archive (already deflated when `method` is 8).
    var data: [UInt8]
    /// 0 stored, 8 deflated.
    var method: UInt16 = 0
    /// The uncompressed size the headers declare.
    var declaredSize: UInt64
    /// The CRC-32 the headers declare.
    var crc: UInt32

    /// A stored entry with honest headers.
    static func stored(_ name: String, _ data: [UInt8]) -> ZipBuilderEntry {
        ZipBuilderEntry(name: name, data: data, declaredSize: UInt64(data.count), crc: crc32(data))
    }

    /// A deflated entry of `plain` with honest headers.
    static func deflated(_ name: String, _ plain: [UInt8]) -> ZipBuilderEntry {
        ZipBuilderEntry(name: name, data: deflate(plain), method: 8, declaredSize: UInt64(plain.count), crc: crc32(plain))
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        data.withUnsafeBytes { ZipArchive.crc32($0) }
    }

    /// Raw deflate (no zlib header) of `plain`.
    static func deflate(_ plain: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        _ = deflateInit2_(&stream, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(plain.count))) + 64)
        var input = plain
        let produced = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = UInt32(inBuffer.count)
                stream.next_out = outBuffer.baseAddress
                stream.avail_out = UInt32(outBuffer.count)
                _ = CZlib.deflate(&stream, Z_FINISH)
                return outBuffer.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(produced))
    }
}

enum HostileFiles {
    typealias Support = FormatTestSupport

    /// A zip archive of `entries` (zip64 extra fields where a declared size needs them).
    static func zip(_ entries: [ZipBuilderEntry]) -> [UInt8] {
        var archive: [UInt8] = []
        var directory: [UInt8] = []
        for entry in entries {
            let offset = archive.count
            let name = Array(entry.name.utf8)
            let wide = entry.declaredSize >= 0xFFFF_FFFF
            let extra: [UInt8] = wide ? Support.bytes(UInt16(1)) + Support.bytes(UInt16(8)) + Support.bytes(entry.declaredSize) : []
            let size32 = wide ? UInt32(0xFFFF_FFFF) : UInt32(entry.declaredSize)
            func common() -> [UInt8] {
                Support.bytes(UInt16(45)) + Support.bytes(UInt16(0)) + Support.bytes(entry.method) + Support.bytes(UInt32(0))
                    + Support.bytes(entry.crc) + Support.bytes(UInt32(entry.data.count)) + Support.bytes(size32)
                    + Support.bytes(UInt16(name.count))
            }
            archive += Support.bytes(UInt32(0x0403_4B50)) + common() + Support.bytes(UInt16(0)) + name + entry.data
            directory += Support.bytes(UInt32(0x0201_4B50)) + Support.bytes(UInt16(45)) + common() + Support.bytes(UInt16(extra.count))
                + Support.bytes(UInt16(0)) + Support.bytes(UInt16(0)) + Support.bytes(UInt16(0)) + Support.bytes(UInt32(0))
                + Support.bytes(UInt32(offset)) + name + extra
        }
        let directoryOffset = archive.count
        archive += directory
        archive += Support.bytes(UInt32(0x0605_4B50)) + Support.bytes(UInt16(0)) + Support.bytes(UInt16(0))
            + Support.bytes(UInt16(entries.count)) + Support.bytes(UInt16(entries.count))
            + Support.bytes(UInt32(directory.count)) + Support.bytes(UInt32(directoryOffset)) + Support.bytes(UInt16(0))
        return archive
    }

    /// A torch zip checkpoint `archive/data.pkl` + `archive/data/<key>` entries.
    static func torchZip(pickle: [UInt8], storages: [ZipBuilderEntry]) -> [UInt8] {
        zip([.stored("archive/data.pkl", pickle), .stored("archive/byteorder", Array("little".utf8))]
            + storages.map { var entry = $0; entry.name = "archive/data/" + entry.name; return entry })
    }

    /// A legacy torch checkpoint around `objectPickle` (a whole pickle, with PROTO and STOP) and the
    /// storages it names, each `(key, float values)`.
    static func torchLegacy(objectPickle: [UInt8], storages: [(key: String, values: [Float])]) -> [UInt8] {
        var builder = PickleBuilder()
        builder.bytes += [0x8A, 0x0A] + TorchCheckpoint.legacyMagic + [0x2E]
        var file = builder.bytes
        file += [0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E]                           // 1001
        file += [0x80, 0x02, 0x7D, 0x2E]                                       // {}
        file += objectPickle
        var keys = PickleBuilder()
        keys.bytes += [0x5D, 0x28]
        for storage in storages { keys.string(storage.key) }
        keys.bytes += [0x65, 0x2E]                                             // APPENDS, STOP
        file += keys.bytes
        for storage in storages {
            file += Support.bytes(Int64(storage.values.count)) + storage.values.flatMap { Support.bytes($0.bitPattern) }
        }
        return file
    }

    /// Raw deflate of `count` zero bytes, made in 1 MiB chunks (so the whole is never in memory), with
    /// the CRC-32 of those zeros.
    static func deflatedZeros(_ count: Int) -> (data: [UInt8], crc: UInt32) {
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var stream = z_stream()
        _ = deflateInit2_(&stream, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var crc = CZlib.crc32(0, nil, 0)
        var remaining = count
        repeat {
            let piece = min(remaining, chunk.count)
            remaining -= piece
            chunk.withUnsafeBufferPointer { input in
                crc = CZlib.crc32(crc, input.baseAddress, uInt(piece))
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                stream.avail_in = UInt32(piece)
                var code = Z_OK
                repeat {
                    buffer.withUnsafeMutableBufferPointer { out in
                        stream.next_out = out.baseAddress
                        stream.avail_out = UInt32(out.count)
                        code = CZlib.deflate(&stream, remaining == 0 ? Z_FINISH : Z_NO_FLUSH)
                        output += out.prefix(out.count - Int(stream.avail_out))
                    }
                } while stream.avail_out == 0 || (remaining == 0 && code != Z_STREAM_END)
            }
        } while remaining > 0
        return (output, UInt32(truncatingIfNeeded: crc))
    }
}

/// How a measured child process ended.
struct MeasuredRun {
    /// The exit status.
    var status: Int32
    /// Standard output and error.
    var output: String
    /// The child's peak resident set size, in bytes.
    var peakResidentBytes: Int
}

/// Runs a program to completion under a small Python parent that reports the program's peak resident
/// memory (RUSAGE_CHILDREN). Measured from this test process directly, the figure would start at this
/// process's own peak: Linux carries the parent's high-water mark into a vfork()ed child at exec.
func runMeasuringMemory(_ arguments: [String]) throws -> MeasuredRun {
    let script = """
        import resource, subprocess, sys
        code = subprocess.run(sys.argv[1:], stderr=subprocess.STDOUT).returncode
        print("peak-kilobytes", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        sys.exit(code)
        """
    let result = try FormatTestSupport.run("/usr/bin/env", ["python3", "-c", script] + arguments)
    var lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
    while lines.last == "" { lines.removeLast() }
    guard let last = lines.popLast(), last.hasPrefix("peak-kilobytes "), let kilobytes = Int(last.dropFirst("peak-kilobytes ".count)) else {
        throw SetupFailure(description: "python3 did not report the peak memory of \(arguments):\n\(result.output)")
    }
    return MeasuredRun(status: result.status, output: lines.joined(separator: "\n"), peakResidentBytes: kilobytes * 1024)
}
