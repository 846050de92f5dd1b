import COpenBLAS

/// Thin, typed wrappers over OpenBLAS. Every matrix is row-major f32.
public enum Blas {
    /// C[m×n] = alpha · A[m×k] · B[k×n] + beta · C (row-major, no transposes).
    @inlinable
    public static func gemm(
        m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
        alpha: Float = 1, beta: Float = 0
    ) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(k), b, Int32(n), beta, c, Int32(n))
    }

    /// Threads OpenBLAS uses in this process.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }
}
