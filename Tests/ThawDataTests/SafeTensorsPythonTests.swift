// Cross-checks of SafeTensors against Python's `safetensors` and `numpy`, both directions, plus an
// agreement check on malformed files. The tests install what they need into a venv cached at
// /tmp/thaw-test-python-venv; if that fails they fail (an Issue), they never skip.
import Foundation
import Testing
import ThawData
import ThawKernels

@Suite(.serialized) struct SafeTensorsPythonTests {
    typealias Support = FormatTestSupport

    /// Python writes F32, F16, BF16 and F64 files (the Rust writer behind safetensors.numpy; BF16
    /// through the same serializer, since numpy has no bfloat16) and the float32 bit patterns it
    /// expects Thaw to read; Thaw must read exactly those.
    static let pythonWriter = #"""
import json, os, sys
import numpy as np
import safetensors
from safetensors.numpy import save_file

out = sys.argv[1]
rng = np.random.default_rng(7)
special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 65504.0, 3.0e38, 1.0 / 3.0], dtype=np.float64)
base = {
    "layer.weight": rng.standard_normal((3, 4)) * 10,
    "layer.bias": rng.standard_normal(5),
    "scalar": np.array(2.75),
    "empty": np.zeros((0, 2)),
    "special": special,
}
expected = {}

def record(path, arrays32, dtype):
    expected[os.path.basename(path)] = {
        "dtype": dtype,
        "tensors": {k: {"shape": list(v.shape), "bits": v.astype(np.float32).reshape(-1).view(np.uint32).tolist()} for k, v in arrays32.items()},
    }

for dtype, np_type in [("F32", np.float32), ("F16", np.float16), ("F64", np.float64)]:
    arrays = {k: v.astype(np_type) for k, v in base.items()}
    path = os.path.join(out, dtype + ".safetensors")
    save_file(arrays, path, metadata={"dtype": dtype, "writer": "python"})
    record(path, {k: v.astype(np.float32) for k, v in arrays.items()}, dtype)

# BF16: the upper half of each float32 (truncation), written by the library's own serializer.
bf16 = {k: (np.ascontiguousarray(v.astype(np.float32)).view(np.uint32) >> 16).astype(np.uint16) for k, v in base.items()}
path = os.path.join(out, "BF16.safetensors")
if hasattr(safetensors, "TensorSpec"):
    specs = {k: safetensors.TensorSpec(dtype="bfloat16", shape=list(v.shape), data_ptr=v.ctypes.data, data_len=v.nbytes) for k, v in bf16.items()}
else:
    specs = {k: {"dtype": "bfloat16", "shape": list(v.shape), "data": v.tobytes()} for k, v in bf16.items()}
safetensors.serialize_file(specs, path, metadata={"dtype": "BF16", "writer": "python"})
record(path, {k: (v.astype(np.uint32) << 16).view(np.float32) for k, v in bf16.items()}, "BF16")

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
"""#

    @Test func readsWhatPythonWritesExactly() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        _ = try Support.runPython(Self.pythonWriter, arguments: [directory])
        let expectedData = try Data(contentsOf: URL(fileURLWithPath: directory + "/expected.json"))
        let expected = try #require(try JSONSerialization.jsonObject(with: expectedData) as? [String: [String: Any]])
        #expect(expected.count == 4)
        for (fileName, entry) in expected {
            let dtype = try #require(entry["dtype"] as? String)
            let tensors = try #require(entry["tensors"] as? [String: [String: Any]])
            let file = try SafeTensorsFile(path: directory + "/" + fileName)
            #expect(file.metadata == ["dtype": dtype, "writer": "python"], "\(fileName)")
            #expect(Set(file.names) == Set(tensors.keys), "\(fileName)")
            for (name, tensor) in tensors {
                let shape = try #require(tensor["shape"] as? [Int])
                let bits = try #require(tensor["bits"] as? [NSNumber]).map { $0.uint32Value }
                let info = try file.info(name)
                #expect(info.dtype == dtype && info.shape == shape, "\(fileName) \(name)")
                let values = try file.values(name)
                #expect(values.count == bits.count, "\(fileName) \(name)")
                for (value, expectedBits) in zip(values, bits) {
                    let wanted = Float(bitPattern: expectedBits)
                    // NaN payloads may differ between converters; everything else must match bit for bit.
                    #expect(value.bitPattern == expectedBits || (value.isNaN && wanted.isNaN), "\(fileName) \(name): \(value) vs \(wanted)")
                }
            }
        }
    }

    /// Python loads what Thaw writes and reports dtype, shape and float32 bit patterns.
    static let pythonReader = #"""
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

tensors = load_file(sys.argv[1])
with safe_open(sys.argv[1], framework="np") as f:
    metadata = f.metadata()
    order = list(f.keys())
print(json.dumps({
    "metadata": metadata,
    "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape), "bits": v.reshape(-1).view(np.uint32).tolist()} for k, v in tensors.items()},
}))
"""#

    @Test func pythonLoadsWhatThawWritesIdentically() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        let path = directory + "/thaw.safetensors"
        var random = SplitMix64(state: 11)
        let tensors: [(name: String, tensor: SafeTensor)] = [
            ("body.conv.weight", SafeTensor(shape: [2, 3, 2, 2], values: (0..<24).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next()) & 0xBFFF_FFFF) })),
            ("head.fc.bias", SafeTensor(shape: [7], values: [0, -0.0, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .nan])),
            ("scalar", SafeTensor(shape: [], values: [1.25])),
            ("empty", SafeTensor(shape: [3, 0], values: [])),
            ("ünïcode \"name\"", SafeTensor(shape: [1], values: [5])),
        ]
        let metadata = ["format": "thaw", "groups": "body,head", "quote": "a \"b\" \\ c"]
        try SafeTensors.write(tensors, metadata: metadata, to: path)
        let output = try Support.runPython(Self.pythonReader, arguments: [path])
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        #expect(parsed["metadata"] as? [String: String] == metadata)
        let loaded = try #require(parsed["tensors"] as? [String: [String: Any]])
        #expect(Set(loaded.keys) == Set(tensors.map(\.name)))
        for (name, tensor) in tensors {
            let entry = try #require(loaded[name], "\(name)")
            #expect(entry["dtype"] as? String == "float32", "\(name)")
            #expect(entry["shape"] as? [Int] == tensor.shape, "\(name)")
            #expect((entry["bits"] as? [NSNumber])?.map(\.uint32Value) == Support.bits(tensor.values), "\(name)")
        }
    }

    /// The reference implementation must reject every file Thaw rejects, so that Thaw's rules are
    /// no stricter than the format except where the note in SafeTensors.swift says so.
    static let pythonValidator = #"""
import json, sys
from safetensors.numpy import load_file
results = []
for path in sys.argv[1:]:
    try:
        load_file(path)
        results.append("ok")
    except Exception as error:
        results.append("error")
print(json.dumps(results))
"""#

    @Test func pythonRejectsTheFilesThawRejects() throws {
        let directory = try Support.temporaryDirectory()
        defer { Support.removeDirectory(directory) }
        // Thaw is deliberately stricter in two ways: unknown keys inside a tensor entry, and duplicate
        // names (the reference keeps the last of them silently).
        let cases = SafeTensorsTests.malformed.filter { !["unknown key", "duplicate name"].contains($0.label) }
        var paths: [String] = []
        for (index, item) in cases.enumerated() {
            let path = directory + "/case\(index).safetensors"
            try Data(item.bytes).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        let good = directory + "/good.safetensors"
        try SafeTensors.write([("t", SafeTensor(shape: [1], values: [1]))], to: good)
        let output = try Support.runPython(Self.pythonValidator, arguments: paths + [good])
        let verdicts = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String])
        #expect(verdicts.count == cases.count + 1)
        for (item, verdict) in zip(cases, verdicts) {
            #expect(verdict == "error", "Python accepted '\(item.label)', which Thaw rejects")
        }
        #expect(verdicts.last == "ok")
    }
}
