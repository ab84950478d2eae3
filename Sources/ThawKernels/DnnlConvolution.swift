// DnnlConvolution: the convolution passes of a `ConvolutionKernel` computed by oneDNN's primitives
// (Debian's libdnnl 2.6, C API), for measuring against Thaw's own paths and as an alternative path.
//
// Two layouts:
// - `plain`: the primitives are created on Thaw's own NCHW / OIHW (GOIHW with groups) f32 memory, so
//   oneDNN can only pick implementations that work on that layout, and nothing is reordered.
// - `blocked`: the primitives choose their own layouts (`format_tag_any`, typically nChw16c on
//   AVX-512), and every call reorders its operands from and back to NCHW around the primitive. The
//   reorder time is part of every call, as it would be behind Thaw's NCHW kernel interface.
//
// Threads: this oneDNN is an OpenMP build, which reads the thread count from the *calling* thread's
// OpenMP setting. Every call sets it (`omp_set_num_threads`) before creating or running a primitive.
//
// Memory: the blocked copies of the operands live in one workspace shared by every instance
// (`DnnlWorkspace`), lent to a call for its duration, so a model's depthwise layers together hold one
// pass's worth of blocked buffers rather than six activation-sized buffers each.
//
// Accumulation: oneDNN's backward primitives overwrite their outputs. With `accumulate`, every
// gradient output goes through a buffer of the primitive's own and a reorder with a sum post-op
// (target += reorder(buffer)), so `dInput`, `dWeight` and `dBias` accumulate as in the other convolution paths.
// In the blocked layout that reorder runs anyway; in the plain one it is an extra copy-add.
import CDNNL
import Synchronization

/// A oneDNN call that failed, with its name and status code.
public struct DnnlError: Error, CustomStringConvertible, Equatable {
    /// The C function that failed.
    public var call: String
    /// Its `dnnl_status_t` value.
    public var status: UInt32

    /// Creates an error.
    public init(call: String, status: UInt32) {
        self.call = call
        self.status = status
    }

    /// `oneDNN: CALL failed with status S`.
    public var description: String { "oneDNN: \(call) failed with status \(status)" }
}

/// oneDNN's forward, backward-data and backward-weights convolution primitives for one geometry.
///
/// Layouts as in `ConvolutionKernel`: input `[N, C, H, W]`, weight `[O, C / groups, kh, kw]`, bias `[O]`,
/// output `[N, O, OH, OW]`. Not thread-safe: one instance runs one call at a time.
public final class DnnlConvolution {
    /// How the primitives see memory.
    public enum Layout: String, Sendable, CaseIterable {
        /// NCHW / OIHW as Thaw stores it; no reorders.
        case plain
        /// oneDNN's preferred layouts, with reorders from and back to NCHW inside every call.
        case blocked
    }

    /// The sizes.
    public let geometry: Convolution2DGeometry
    /// Whether backward-weights computes the bias gradient. (The forward always takes a bias, zero
    /// when none is given, so a convolution with batch norm folded into it can run here too.)
    public let hasBias: Bool
    /// How the primitives see memory.
    public let layout: Layout
    /// OpenMP threads per call.
    public let threads: Int
    /// Whether the backward passes add into their outputs (as the other convolution paths) rather than overwrite them.
    public let accumulate: Bool
    /// oneDNN's name for the implementation it chose for each pass, such as `gemm:jit` or `jit:avx512_core`.
    public let implementations: (forward: String, backwardData: String, backwardWeights: String)

    private let engine: dnnl_engine_t
    private let stream: dnnl_stream_t
    private let forwardPass: Pass
    private let backwardDataPass: Pass
    private let backwardWeightsPass: Pass
    /// Where the blocked copies live during a call (the process-wide one; tests give their own).
    var workspace = DnnlWorkspace.shared
    /// `outputChannels` zeros: the forward's bias when the caller gives none.
    private let zeroBias: UnsafeMutablePointer<Float>

    /// Creates the three primitives.
    /// - Parameters:
    ///   - geometry: The sizes.
    ///   - bias: Whether backward-weights computes a bias gradient.
    ///   - layout: Thaw's layout, or oneDNN's with reorders.
    ///   - threads: OpenMP threads per call (1 to match single-threaded OpenBLAS).
    ///   - accumulate: Whether backward adds into `dInput`, `dWeight` and `dBias` (true) or overwrites them.
    /// - Throws: `DnnlError` when oneDNN rejects the geometry or cannot create a primitive.
    public init(geometry g: Convolution2DGeometry, bias: Bool, layout: Layout, threads: Int, accumulate: Bool = false) throws(DnnlError) {
        self.geometry = g
        self.hasBias = bias
        self.layout = layout
        self.threads = max(1, threads)
        self.accumulate = accumulate
        zeroBias = .allocate(capacity: g.outputChannels)
        zeroBias.initialize(repeating: 0, count: g.outputChannels)
        omp_set_num_threads(Int32(self.threads))
        var engine: dnnl_engine_t?
        try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
        guard let engine else {
            zeroBias.deallocate()
            throw DnnlError(call: "dnnl_engine_create", status: 0)
        }
        var stream: dnnl_stream_t?
        let streamStatus = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue)
        guard streamStatus == dnnl_success, let stream else {
            dnnl_engine_destroy(engine)
            zeroBias.deallocate()
            throw DnnlError(call: "dnnl_stream_create", status: streamStatus.rawValue)
        }
        self.engine = engine
        self.stream = stream

        // Plain descriptors: Thaw's layouts. `any` lets oneDNN choose (blocked layout).
        let plainInput = try Self.descriptor([g.batch, g.inputChannels, g.inputHeight, g.inputWidth], dnnl_nchw)
        let plainOutput = try Self.descriptor([g.batch, g.outputChannels, g.outputHeight, g.outputWidth], dnnl_nchw)
        let weightDims = g.groups == 1
            ? [g.outputChannels, g.inputChannelsPerGroup, g.kernel.height, g.kernel.width]
            : [g.groups, g.outputChannelsPerGroup, g.inputChannelsPerGroup, g.kernel.height, g.kernel.width]
        let plainWeight = try Self.descriptor(weightDims, g.groups == 1 ? dnnl_oihw : dnnl_goihw)
        let biasDescriptor = try Self.descriptor([g.outputChannels], dnnl_a)
        let chosen = layout == .plain ? nil : dnnl_format_tag_any
        let input = try chosen.map { tag throws(DnnlError) in try Self.descriptor([g.batch, g.inputChannels, g.inputHeight, g.inputWidth], tag) } ?? plainInput
        let output = try chosen.map { tag throws(DnnlError) in try Self.descriptor([g.batch, g.outputChannels, g.outputHeight, g.outputWidth], tag) } ?? plainOutput
        let weight = try chosen.map { tag throws(DnnlError) in try Self.descriptor(weightDims, tag) } ?? plainWeight

        // oneDNN's dilation counts the gaps (PyTorch's dilation − 1); padding is symmetric.
        let strides = [Int64(g.stride.height), Int64(g.stride.width)]
        let dilations = [Int64(g.dilation.height - 1), Int64(g.dilation.width - 1)]
        let padding = [Int64(g.padding.height), Int64(g.padding.width)]

        var forwardDescriptor = dnnl_convolution_desc_t()
        var backwardDataDescriptor = dnnl_convolution_desc_t()
        var backwardWeightsDescriptor = dnnl_convolution_desc_t()
        var (forwardStatus, backwardDataStatus, backwardWeightsStatus) = (dnnl_success, dnnl_success, dnnl_success)
        withUnsafePointer(to: input) { input in
            withUnsafePointer(to: output) { output in
                withUnsafePointer(to: weight) { weight in
                    withUnsafePointer(to: biasDescriptor) { biasPointer in
                        let biasOrNil = bias ? biasPointer : nil
                        forwardStatus = dnnl_dilated_convolution_forward_desc_init(
                            &forwardDescriptor, dnnl_forward_training, dnnl_convolution_direct, input, weight, biasPointer, output,
                            strides, dilations, padding, padding)
                        backwardDataStatus = dnnl_dilated_convolution_backward_data_desc_init(
                            &backwardDataDescriptor, dnnl_convolution_direct, input, weight, output, strides, dilations, padding, padding)
                        backwardWeightsStatus = dnnl_dilated_convolution_backward_weights_desc_init(
                            &backwardWeightsDescriptor, dnnl_convolution_direct, input, weight, biasOrNil, output,
                            strides, dilations, padding, padding)
                    }
                }
            }
        }
        try check(forwardStatus, "dnnl_dilated_convolution_forward_desc_init")
        try check(backwardDataStatus, "dnnl_dilated_convolution_backward_data_desc_init")
        try check(backwardWeightsStatus, "dnnl_dilated_convolution_backward_weights_desc_init")

        var forwardHint: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&forwardHint, &forwardDescriptor, nil, engine, nil), "dnnl_primitive_desc_create (forward)")
        defer { dnnl_primitive_desc_destroy(forwardHint) }
        forwardPass = try Pass(descriptor: forwardHint, engine: engine, name: "forward", arguments: [
            (DNNL_ARG_SRC, plainInput, .read), (DNNL_ARG_WEIGHTS, plainWeight, .read),
            (DNNL_ARG_DST, plainOutput, .write), (DNNL_ARG_BIAS, biasDescriptor, .read),
        ], ownsDescriptor: false, accumulateWrites: false)
        var backwardData: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&backwardData, &backwardDataDescriptor, nil, engine, forwardHint),
                  "dnnl_primitive_desc_create (backward data)")
        backwardDataPass = try Pass(descriptor: backwardData, engine: engine, name: "backward data", arguments: [
            (DNNL_ARG_DIFF_DST, plainOutput, .read), (DNNL_ARG_WEIGHTS, plainWeight, .read),
            (DNNL_ARG_DIFF_SRC, plainInput, .write),
        ], ownsDescriptor: true, accumulateWrites: accumulate)
        var backwardWeights: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&backwardWeights, &backwardWeightsDescriptor, nil, engine, forwardHint),
                  "dnnl_primitive_desc_create (backward weights)")
        backwardWeightsPass = try Pass(descriptor: backwardWeights, engine: engine, name: "backward weights", arguments: [
            (DNNL_ARG_DIFF_DST, plainOutput, .read), (DNNL_ARG_SRC, plainInput, .read),
            (DNNL_ARG_DIFF_WEIGHTS, plainWeight, .write),
        ] + (bias ? [(DNNL_ARG_DIFF_BIAS, biasDescriptor, .write)] : []), ownsDescriptor: true, accumulateWrites: accumulate)
        implementations = (forwardPass.implementation, backwardDataPass.implementation, backwardWeightsPass.implementation)
    }

    deinit {
        zeroBias.deallocate()
        forwardPass.destroy()
        backwardDataPass.destroy()
        backwardWeightsPass.destroy()
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    /// output = conv(input, weight) + bias (overwrites `output`).
    /// - Parameters:
    ///   - output: `[N, outputChannels, OH, OW]`, overwritten.
    ///   - input: `[N, inputChannels, H, W]`.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    ///   - bias: `[outputChannels]`, or nil for none (whether or not `hasBias`).
    public func forward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        bias: UnsafePointer<Float>?) {
        run(forwardPass, [UnsafeMutableRawPointer(mutating: input), UnsafeMutableRawPointer(mutating: weight), UnsafeMutableRawPointer(output),
                          UnsafeMutableRawPointer(mutating: bias ?? UnsafePointer(zeroBias))])
    }

    /// dInput = convᵀ(dOutput, weight), or `+=` with `accumulate`.
    /// - Parameters:
    ///   - dInput: `[N, inputChannels, H, W]`, overwritten or accumulated into.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - weight: `[outputChannels, inputChannels / groups, kh, kw]`.
    public func backwardData(dInput: UnsafeMutablePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>) {
        run(backwardDataPass, [UnsafeMutableRawPointer(mutating: dOutput), UnsafeMutableRawPointer(mutating: weight), UnsafeMutableRawPointer(dInput)])
    }

    /// dWeight = dOutput ⋆ input and dBias = Σ dOutput, or `+=` with `accumulate`.
    /// - Parameters:
    ///   - dWeight: `[outputChannels, inputChannels / groups, kh, kw]`, overwritten or accumulated into.
    ///   - dBias: `[outputChannels]`, likewise; must be given exactly when `hasBias`.
    ///   - dOutput: `[N, outputChannels, OH, OW]`.
    ///   - input: `[N, inputChannels, H, W]`, the forward input.
    public func backwardWeights(dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
                                dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>) {
        precondition((dBias != nil) == hasBias, "DnnlConvolution: dBias given \(dBias != nil), created with bias \(hasBias)")
        var pointers = [UnsafeMutableRawPointer(mutating: dOutput), UnsafeMutableRawPointer(mutating: input), UnsafeMutableRawPointer(dWeight)]
        if let dBias { pointers.append(UnsafeMutableRawPointer(dBias)) }
        run(backwardWeightsPass, pointers)
    }

    /// Points the plain memories at `pointers` (in the pass's argument order) and the blocked ones into
    /// a workspace lent for the call, then runs the reorders into the primitive's layouts, the
    /// primitive, and the reorders back.
    private func run(_ pass: Pass, _ pointers: [UnsafeMutableRawPointer]) {
        precondition(pointers.count == pass.arguments.count, "DnnlConvolution: \(pointers.count) buffers for \(pass.arguments.count) arguments")
        workspace.withBuffer(bytes: pass.workspaceBytes) { workspace in
            omp_set_num_threads(Int32(threads))
            for (argument, pointer) in zip(pass.arguments, pointers) {
                mustSucceed(dnnl_memory_set_data_handle(argument.plain, pointer), "dnnl_memory_set_data_handle")
                if let inner = argument.inner {
                    mustSucceed(dnnl_memory_set_data_handle(inner, workspace + argument.innerOffset), "dnnl_memory_set_data_handle (inner)")
                }
            }
            // The handles stay pointed at these buffers afterwards, but are set again before any use.
            execute(pass)
        }
    }

    /// The reorders into the primitive's layouts, the primitive, the reorders back, and the wait.
    private func execute(_ pass: Pass) {
        for argument in pass.arguments where argument.direction == .read {
            if let reorder = argument.reorder { execute(reorder, [(DNNL_ARG_FROM, argument.plain), (DNNL_ARG_TO, argument.primitiveMemory)]) }
        }
        execute(pass.primitive, pass.arguments.map { ($0.kind, $0.primitiveMemory) })
        for argument in pass.arguments where argument.direction == .write {
            if let reorder = argument.reorder { execute(reorder, [(DNNL_ARG_FROM, argument.primitiveMemory), (DNNL_ARG_TO, argument.plain)]) }
        }
        mustSucceed(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }

    private func execute(_ primitive: dnnl_primitive_t, _ arguments: [(Int32, dnnl_memory_t)]) {
        let list = arguments.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1) }
        mustSucceed(dnnl_primitive_execute(primitive, stream, Int32(list.count), list), "dnnl_primitive_execute")
    }

    /// Limits oneDNN to AVX2 code (as OpenBLAS's Zen kernels), to tell the instruction set's share of
    /// a difference from the algorithm's. Only takes effect before the first primitive is created.
    /// - Throws: `DnnlError` when oneDNN refuses (for example, after a primitive was created).
    public static func limitToAVX2() throws(DnnlError) {
        try check(dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2), "dnnl_set_max_cpu_isa")
    }

    /// The instruction set oneDNN's code uses on this machine, such as `avx512_core` or `avx2`.
    public static var instructionSet: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case let other: return "isa 0x" + String(other.rawValue, radix: 16)
        }
    }

    /// oneDNN's version, such as `2.6.3`.
    public static var version: String {
        guard let v = dnnl_version() else { return "?" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    /// The workspace bytes the largest of this instance's passes borrows for a call.
    public var workspaceBytesPerCall: Int {
        max(forwardPass.workspaceBytes, backwardDataPass.workspaceBytes, backwardWeightsPass.workspaceBytes)
    }

    /// The bytes of blocked buffers the shared workspace holds now (the largest single call so far).
    public static var workspaceBytes: Int { DnnlWorkspace.shared.retainedBytes }

    /// A memory descriptor of f32 `dims` in layout `tag`.
    private static func descriptor(_ dims: [Int], _ tag: dnnl_format_tag_t) throws(DnnlError) -> dnnl_memory_desc_t {
        var descriptor = dnnl_memory_desc_t()
        let sizes = dims.map(Int64.init)
        try check(dnnl_memory_desc_init_by_tag(&descriptor, Int32(sizes.count), sizes, dnnl_f32, tag), "dnnl_memory_desc_init_by_tag")
        return descriptor
    }
}

/// Whether a primitive reads or writes an argument (so which way its reorder runs).
private enum Direction { case read, write }

/// One primitive argument: Thaw's plain memory (pointed at the caller's buffer on each call) and,
/// when the primitive wants another layout, its own memory and the reorder between the two.
private struct Argument {
    var kind: Int32
    var direction: Direction
    var plain: dnnl_memory_t
    var reorder: dnnl_primitive_t?
    /// The buffer in the primitive's layout; created without storage, pointed into the workspace per call.
    var inner: dnnl_memory_t?
    /// Where `inner` starts in the workspace.
    var innerOffset = 0
    var primitiveMemory: dnnl_memory_t { inner ?? plain }
}

/// One primitive with its arguments.
private struct Pass {
    var primitive: dnnl_primitive_t
    var arguments: [Argument]
    var implementation: String
    /// The workspace bytes a call needs: every blocked buffer, each at a 64-byte-aligned offset.
    var workspaceBytes = 0

    /// Creates the primitive from `descriptor` and, for each argument whose layout differs from the
    /// plain one (and each written one when `accumulateWrites`), a buffer in oneDNN's layout and the
    /// reorder between them (for written arguments with `accumulateWrites`, one that adds).
    init(descriptor: dnnl_primitive_desc_t?, engine: dnnl_engine_t, name: String,
         arguments specs: [(Int32, dnnl_memory_desc_t, Direction)], ownsDescriptor: Bool, accumulateWrites: Bool) throws(DnnlError) {
        defer { if ownsDescriptor { dnnl_primitive_desc_destroy(descriptor) } }
        var implementationName: UnsafePointer<CChar>?
        try check(dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &implementationName), "dnnl_primitive_desc_query (\(name))")
        implementation = implementationName.map { String(cString: $0) } ?? "?"
        var created: dnnl_primitive_t?
        try check(dnnl_primitive_create(&created, descriptor), "dnnl_primitive_create (\(name))")
        guard let created else { throw DnnlError(call: "dnnl_primitive_create (\(name))", status: 0) }
        primitive = created
        arguments = []
        for (kind, plainDescriptor, direction) in specs {
            var plainDescriptor = plainDescriptor
            var plain: dnnl_memory_t?
            try check(dnnl_memory_create(&plain, &plainDescriptor, engine, nil), "dnnl_memory_create (\(name))")
            guard let plain else { throw DnnlError(call: "dnnl_memory_create (\(name))", status: 0) }
            var argument = Argument(kind: kind, direction: direction, plain: plain, reorder: nil, inner: nil)
            arguments.append(argument)
            let adds = accumulateWrites && direction == .write
            guard let wanted = dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, kind),
                  adds || dnnl_memory_desc_equal(wanted, &plainDescriptor) == 0 else { continue }
            var inner: dnnl_memory_t?
            try check(dnnl_memory_create(&inner, wanted, engine, nil), "dnnl_memory_create (\(name), inner)")
            argument.inner = inner
            argument.innerOffset = workspaceBytes
            workspaceBytes += (dnnl_memory_desc_get_size(wanted) + 63) / 64 * 64
            arguments[arguments.count - 1] = argument
            var reorderDescriptor: dnnl_primitive_desc_t?
            let attributes = adds ? try sumAttributes() : nil
            defer { if let attributes { dnnl_primitive_attr_destroy(attributes) } }
            let status = withUnsafePointer(to: plainDescriptor) { plainPointer in
                let (source, target) = direction == .read ? (plainPointer, wanted) : (wanted, plainPointer)
                return dnnl_reorder_primitive_desc_create(&reorderDescriptor, source, engine, target, engine, attributes)
            }
            try check(status, "dnnl_reorder_primitive_desc_create (\(name))")
            defer { dnnl_primitive_desc_destroy(reorderDescriptor) }
            var reorder: dnnl_primitive_t?
            try check(dnnl_primitive_create(&reorder, reorderDescriptor), "dnnl_primitive_create (\(name), reorder)")
            argument.reorder = reorder
            arguments[arguments.count - 1] = argument
        }
    }

    func destroy() {
        for argument in arguments {
            if let reorder = argument.reorder { dnnl_primitive_destroy(reorder) }
            if let inner = argument.inner { dnnl_memory_destroy(inner) }
            dnnl_memory_destroy(argument.plain)
        }
        dnnl_primitive_destroy(primitive)
    }
}

/// Primitive attributes with one sum post-op (target += result), for reorders that accumulate.
private func sumAttributes() throws(DnnlError) -> dnnl_primitive_attr_t? {
    var attributes: dnnl_primitive_attr_t?
    try check(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create")
    var postOps: dnnl_post_ops_t?
    try check(dnnl_post_ops_create(&postOps), "dnnl_post_ops_create")
    defer { dnnl_post_ops_destroy(postOps) }
    try check(dnnl_post_ops_append_sum(postOps, 1), "dnnl_post_ops_append_sum")
    try check(dnnl_primitive_attr_set_post_ops(attributes, postOps), "dnnl_primitive_attr_set_post_ops")
    return attributes
}

/// Throws `DnnlError` unless `status` is success.
private func check(_ status: dnnl_status_t, _ call: String) throws(DnnlError) {
    guard status == dnnl_success else { throw DnnlError(call: call, status: status.rawValue) }
}

/// For calls on primitives that were created successfully: a failure there is a bug, not bad input.
private func mustSucceed(_ status: dnnl_status_t, _ call: String) {
    precondition(status == dnnl_success, "oneDNN: \(call) failed with status \(status.rawValue)")
}

/// The blocked-layout buffers of `DnnlConvolution` calls, shared by every instance: a call borrows a
/// buffer of the bytes it needs and gives it back, so a process holds about one call's worth (one
/// buffer per thread calling at the same time), grown to the largest call and then reused.
final class DnnlWorkspace: Sendable {
    /// The one workspace.
    static let shared = DnnlWorkspace()

    /// A 64-byte-aligned allocation.
    private struct Buffer: @unchecked Sendable {
        var pointer: UnsafeMutableRawPointer
        var bytes: Int
    }

    /// Buffers not lent out.
    private let idle = Mutex<[Buffer]>([])
    /// Bytes allocated, lent or not.
    private let allocated = Atomic<Int>(0)

    /// The bytes held now.
    var retainedBytes: Int { allocated.load(ordering: .relaxed) }

    /// Runs `body` with a buffer of at least `bytes` bytes (64-byte aligned), lent for the call only.
    func withBuffer<Result>(bytes: Int, _ body: (UnsafeMutableRawPointer) -> Result) -> Result {
        var buffer = idle.withLock { idle -> Buffer? in
            guard let largest = idle.indices.max(by: { idle[$0].bytes < idle[$1].bytes }) else { return nil }
            return idle.remove(at: largest)
        }
        if let small = buffer, small.bytes < bytes {
            small.pointer.deallocate()
            allocated.subtract(small.bytes, ordering: .relaxed)
            buffer = nil
        }
        let lent = buffer ?? {
            let size = max(bytes, 64)
            allocated.add(size, ordering: .relaxed)
            return Buffer(pointer: .allocate(byteCount: size, alignment: 64), bytes: size)
        }()
        defer { idle.withLock { $0.append(lent) } }
        return body(lent.pointer)
    }
}
