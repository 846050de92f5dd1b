// engine-bench bounds: the two physical limits the engine's cells are compared with.
//  - memory bandwidth: a read-only pass over 1 GiB (sasum) (decode at batch 1 streams every weight
//    once per token, so weight bytes ÷ this is the fastest a decode step can be);
//  - sgemm peak: OpenBLAS on 1024³ (prefill is GEMM-shaped, so FLOPs ÷ this bounds it).
import Foundation
import COpenBLAS
import Kernels

/// Best-of-`repeats` read bandwidth in GB/s: OpenBLAS's `sasum` over 1 GiB (a vectorised
/// read-only pass, threaded like the engine's BLAS calls).
func readBandwidth(repeats: Int = 5) -> Double {
    let count = 1 << 28  // 1 GiB of floats
    let data = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { data.deallocate() }
    data.initialize(repeating: 1, count: count)  // fault every page in before timing
    var best = 0.0
    for _ in 0..<repeats {
        let start = now()
        blackHole(cblas_sasum(Int32(count), data, 1))
        best = max(best, Double(count * 4) / (now() - start) / 1e9)
    }
    return best
}

/// Best-of-`repeats` sgemm GFLOP/s on n×n×n with the BLAS threads already set.
func sgemmPeak(n: Int = 1024, repeats: Int = 5) -> Double {
    let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
    var c = [Float](repeating: 0, count: n * n)
    var best = 0.0
    for _ in 0..<repeats {
        let start = now()
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
            Blas.gemm(m: n, n: n, k: n, a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!)
        } } }
        best = max(best, 2 * Double(n * n * n) / (now() - start) / 1e9)
    }
    return best
}

@inline(never) func blackHole(_ x: Float) { if x == .infinity { print("") } }

func printBounds(threads: Int) {
    Kernels.threads = threads
    let coretype = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "default"
    print(String(format: "{\"bench\":\"bounds\",\"threads\":%d,\"openblas_coretype\":\"%@\",\"read_gb_s\":%.1f,\"sgemm_gflop_s\":%.1f}",
                 threads, coretype, readBandwidth(), sgemmPeak()))
}
