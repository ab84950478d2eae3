// Gemm: the one matrix-multiply entry point, on OpenBLAS's cblas_sgemm.
//
// Every other kernel that multiplies matrices (linear layers, im2col convolution,
// attention) goes through `Gemm.multiply`, so there is one place to measure and tune.
import CBLAS

/// Whether a GEMM operand is used as stored or transposed.
public enum Transpose: Sendable {
    /// Use the matrix as stored (row-major).
    case none
    /// Use the transpose of the stored matrix.
    case transposed

    @usableFromInline var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// Single-precision general matrix multiply on row-major operands.
public enum Gemm {
    /// Computes `C = alpha * op(A) * op(B) + beta * C` with row-major storage.
    ///
    /// - Parameters:
    ///   - transposeA: Whether `A` is transposed; `op(A)` is `m × k`.
    ///   - transposeB: Whether `B` is transposed; `op(B)` is `k × n`.
    ///   - m: Rows of `op(A)` and `C`.
    ///   - n: Columns of `op(B)` and `C`.
    ///   - k: The shared dimension.
    ///   - alpha: Scale of the product.
    ///   - a: `A`, stored `m × k` (or `k × m` when transposed).
    ///   - lda: Leading dimension (row stride) of `A` as stored.
    ///   - b: `B`, stored `k × n` (or `n × k` when transposed).
    ///   - ldb: Leading dimension of `B` as stored.
    ///   - beta: Scale of the existing `C`; 1 accumulates, 0 overwrites.
    ///   - c: `C`, stored `m × n`.
    ///   - ldc: Leading dimension of `C`.
    @inlinable
    public static func multiply(
        _ transposeA: Transpose, _ transposeB: Transpose,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transposeA.cblas, transposeB.cblas,
            blasint(m), blasint(n), blasint(k), alpha,
            a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Computes `C = alpha * op(A) * op(B) + beta * C` for densely packed operands.
    ///
    /// The leading dimensions follow from the shapes: this is the common case.
    @inlinable
    public static func multiply(
        _ transposeA: Transpose, _ transposeB: Transpose,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        beta: Float, c: UnsafeMutablePointer<Float>
    ) {
        multiply(
            transposeA, transposeB, m: m, n: n, k: k, alpha: alpha,
            a: a, lda: transposeA == .none ? k : m,
            b: b, ldb: transposeB == .none ? n : k,
            beta: beta, c: c, ldc: n)
    }

    /// Sets the number of threads OpenBLAS may use in this process.
    ///
    /// Thaw keeps `threads × ranks ≤ cores` so ranks on one machine do not fight for cores.
    public static func setThreadCount(_ threads: Int) {
        openblas_set_num_threads(Int32(max(1, threads)))
    }

    /// The number of threads OpenBLAS currently uses.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// The CPU kernel set OpenBLAS picked at run time, such as `Zen` or `SkylakeX`.
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "?" }
}
