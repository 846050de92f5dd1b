import COpenBLAS

/// The kernels' one thread count: OpenBLAS's threads, and how many parts the selective scan
/// and the small-batch GEMMs split their work into. One per process is best on small hosts,
/// where the replicas are the parallelism (`expert.threads`).
public enum Kernels {
    /// Set once at start, before any kernel runs (a plain static: the setter is not meant to
    /// race with kernels running on other threads).
    nonisolated(unsafe) private static var count = 1

    public static var threads: Int {
        get { count }
        set {
            count = max(1, newValue)
            openblas_set_num_threads(Int32(count))
        }
    }
}
